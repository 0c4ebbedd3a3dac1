"""The reference model server: OpenAI-compatible completions and chat, /health, /metrics, feedback, costs.

    GET  /health               200 {"status": "ok", "model_version", ...} once loaded; 503 while loading or failed
    GET  /metrics              Prometheus exposition (names and labels: see llmops.monitoring)
    GET  /v1/models            the one served model
    POST /v1/completions       {"prompt", "max_tokens", "temperature", "stop", "seed"} -> text_completion + usage
    POST /v1/chat/completions  {"messages": [{"role", "content"}], ...} -> chat.completion + usage
    POST /v1/feedback          {"score": 0..1} -> moves the online quality gauge
    GET  /v1/costs             cost totals per UTC day and per version

Every response carries ``X-Model-Version``. The model loads in a background thread so /health can answer 503
meanwhile (a readiness probe); generation runs one request at a time under a lock (batch size 1).

    with ModelServer(TransformersGenerator(path), info) as server:   # binds 127.0.0.1:0
        server.wait_ready(60)
        requests.post(server.url + "/v1/completions", json={"prompt": "hi"}, timeout=30)
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from llmops.errors import InfraError, LLMOpsError
from llmops.monitoring.cost import CostTracker, PriceTable, to_jsonable
from llmops.monitoring.logs import RequestLogger
from llmops.monitoring.metrics import CONTENT_TYPE, RequestSample, ServerMetrics
from llmops.serve import openai_api as api
from llmops.serve.faults import Faults
from llmops.serve.generators import Generation, ModelInfo

MAX_BODY = 1 << 20
ENDPOINTS = {"/v1/completions": "completions", "/v1/chat/completions": "chat"}


class ModelServer:
    def __init__(self, generator: Any, info: ModelInfo, *, host: str = "127.0.0.1", port: int = 0,
                 faults: Faults | None = None, prices: PriceTable | None = None, logger: RequestLogger | None = None,
                 default_max_tokens: int = 16, quality_score: float | None = None, quality_window: int = 100):
        self.generator = generator
        self.info = info
        self.faults = faults or Faults()
        self.metrics = ServerMetrics(info.version, quality_window=quality_window)
        self.costs = CostTracker(prices or PriceTable())
        self.log = logger or RequestLogger("llmops.serve")
        self.default_max_tokens = default_max_tokens
        self.state = "loading"
        self.load_error: str | None = None
        self.load_seconds: float | None = None
        self._load_exc: Exception | None = None
        self._loaded = threading.Event()
        self._gen_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        if self.faults.quality_score is not None:
            self.metrics.set_quality(self.faults.quality_score)
        elif quality_score is not None:
            self.metrics.set_quality(quality_score)
        handler = type("Handler", (_Handler,), {"app": self})
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.host, self.port = self.httpd.server_address[:2]

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in str(self.host) else self.host
        return f"http://{host}:{self.port}"

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> ModelServer:
        for target, name in ((self._load, "llmops-load"), (self.httpd.serve_forever, "llmops-http")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def _load(self) -> None:
        start = time.perf_counter()
        try:
            self.generator.load()
        except Exception as exc:  # noqa: BLE001 - reported by /health and wait_ready, the server keeps answering
            self._load_exc = exc
            self.load_error = exc.message if isinstance(exc, LLMOpsError) else f"{type(exc).__name__}: {exc}"
            self.state = "failed"
            self.log.event("model_load_failed", model_version=self.info.version, error=self.load_error)
        else:
            self.load_seconds = time.perf_counter() - start
            self.metrics.set_loaded(self.info.name)
            self.state = "ready"
            self.log.event("model_loaded", model_version=self.info.version, model_name=self.info.name,
                           generator=self.generator.kind, load_seconds=round(self.load_seconds, 3),
                           faults=self.faults.describe() if self.faults.active else None)
        finally:
            self._loaded.set()

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Block until the model is loaded; raise what the load raised, or InfraError on timeout."""
        if not self._loaded.wait(timeout):
            raise InfraError(f"the model did not load within {timeout:g}s")
        if isinstance(self._load_exc, LLMOpsError):
            raise self._load_exc
        if self.state == "failed":
            raise LLMOpsError(f"the model failed to load: {self.load_error}",
                              "check the model folder loads with transformers' AutoModelForCausalLM")

    def stop(self) -> None:
        if self._threads:  # shutdown() waits for serve_forever, so only call it once that was started
            self.httpd.shutdown()
        self.httpd.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> ModelServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---------------------------------------------------------------- handlers (return status, body)

    def health(self) -> tuple[int, dict[str, Any]]:
        body = {"status": {"ready": "ok"}.get(self.state, self.state), "model_version": self.info.version,
                "model_name": self.info.name, "generator": self.generator.kind}
        if self.load_error:
            body["error"] = self.load_error
        return (200 if self.state == "ready" else 503), body

    def models(self) -> tuple[int, dict[str, Any]]:
        return 200, {"object": "list", "data": [{"id": self.info.name, "object": "model", "owned_by": "llmops",
                                                 "model_version": self.info.version}]}

    def feedback(self, body: Any) -> tuple[int, dict[str, Any]]:
        score = body.get("score") if isinstance(body, dict) else None
        try:
            mean = self.metrics.record_feedback(score)  # type: ignore[arg-type]
        except ValueError as exc:
            return 400, api.error_body(str(exc), param="score")
        if self.faults.quality_score is not None:
            self.metrics.set_quality(self.faults.quality_score)
            mean = self.faults.quality_score
        return 200, {"model_version": self.info.version, "quality_score": mean}

    def cost_summary(self) -> tuple[int, dict[str, Any]]:
        return 200, {"currency": self.costs.prices.currency, "daily": to_jsonable(self.costs.daily_summary()),
                     "by_version": to_jsonable(self.costs.version_summary())}

    def infer(self, endpoint: str, body: Any, request_id: str) -> tuple[int, dict[str, Any]]:
        """One inference request, timed and counted whatever its outcome."""
        start = time.perf_counter()
        self.metrics.in_flight.labels(self.info.version).inc()
        gens: list[Generation] = []
        prompt_text: str | None = None
        queued_s = 0.0
        try:
            self.faults.delay()
            status, payload, gens, prompt_text, queued_s = self._infer(endpoint, body, start)
        finally:
            self.metrics.in_flight.labels(self.info.version).dec()
        duration = time.perf_counter() - start
        n_in = sum(g.input_tokens for g in gens)
        n_out = sum(g.output_tokens for g in gens)
        gen_s = sum(g.generation_s for g in gens)
        cost = self.costs.track(self.info.version, n_in, n_out, gen_s, model_name=self.info.name) if gens else None
        first = gens[0] if gens else None
        ttft = queued_s + first.ttft_s if first is not None and first.ttft_s is not None else None
        self.metrics.record_request(RequestSample(
            endpoint=endpoint, http_status=status, duration_s=duration, input_tokens=n_in, output_tokens=n_out,
            ttft_s=ttft, generation_s=(queued_s + gen_s) if first is not None else None,
            cost=float(cost.total) if cost else 0.0))
        self.log.request(request_id, model_version=self.info.version, prompt=prompt_text,
                         response="".join(g.text for g in gens) if gens else None, status=status,
                         latency_s=duration, input_tokens=n_in, output_tokens=n_out, endpoint=endpoint,
                         **({"error": payload["error"]["message"]} if status >= 400 else {}))
        return status, payload

    def _infer(self, endpoint: str, body: Any, start: float):
        if self.state != "ready":
            return 503, api.error_body(f"model {self.info.version} is {self.state}", "server_error"), [], None, 0.0
        if self.faults.should_fail():
            return (500, api.error_body(f"injected fault (LLMOPS_FAULT_ERROR_RATE={self.faults.error_rate:g})",
                                        "server_error"), [], None, 0.0)
        try:
            parse = api.parse_chat if endpoint == "chat" else api.parse_completion
            req = parse(body, self.default_max_tokens)
            if req.model is not None and req.model not in (self.info.name, self.info.version):
                raise api.BadRequest(f"model {req.model!r} is not served here; this server serves "
                                     f"{self.info.name!r} (version {self.info.version})", "model", 404,
                                     "model_not_found")
            prompts = [self.generator.render_chat(req.messages)] if req.messages else req.prompts
            gens = []
            with self._gen_lock:
                queued_s = time.perf_counter() - start
                for prompt in prompts:
                    gens.append(self.generator.complete(prompt, req.params, chat_messages=req.messages))
        except api.BadRequest as exc:
            return exc.status, api.error_body(exc.message, param=exc.param, code=exc.code), [], None, 0.0
        except ValueError as exc:  # the generator rejected the input (context length, no chat template)
            return 400, api.error_body(str(exc)), [], None, 0.0
        except Exception as exc:  # noqa: BLE001 - a generation failure is a 500 for this request, not a crash
            return 500, api.error_body(f"generation failed: {type(exc).__name__}: {exc}", "server_error"), [], \
                None, 0.0
        prompt_text = "\n".join(prompts)
        if endpoint == "chat":
            return 200, api.chat_response(self.info.name, gens[0]), gens, prompt_text, queued_s
        return 200, api.completion_response(self.info.name, gens), gens, prompt_text, queued_s


class _Handler(BaseHTTPRequestHandler):
    app: ModelServer
    protocol_version = "HTTP/1.1"
    server_version = "llmops-serve"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - access logs go through RequestLogger
        return None

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Model-Version", self.app.info.version)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        self._send(status, json.dumps(payload, ensure_ascii=False).encode("utf-8"))

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._send(200, self.app.metrics.exposition(), CONTENT_TYPE)
        elif path in ("/health", "/healthz"):
            self._json(*self.app.health())
        elif path == "/v1/models":
            self._json(*self.app.models())
        elif path == "/v1/costs":
            self._json(*self.app.cost_summary())
        else:
            self._json(404, api.error_body(f"no route GET {path}", code="not_found"))

    def _read_json(self) -> tuple[Any, tuple[int, dict[str, Any]] | None]:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY:
            self.close_connection = True
            return None, (413 if length > MAX_BODY else 400,
                          api.error_body(f"the request body must be JSON of at most {MAX_BODY} bytes"))
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw or b"null"), None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return None, (400, api.error_body(f"the request body is not valid JSON: {exc}"))

    def do_POST(self) -> None:  # noqa: N802
        path = self.path.split("?", 1)[0]
        body, problem = self._read_json()
        endpoint = ENDPOINTS.get(path)
        if endpoint:
            request_id = (self.headers.get("X-Request-Id") or uuid.uuid4().hex)[:128]
            if problem:
                status, payload = problem
                self.app.metrics.record_request(RequestSample(endpoint, status, 0.0))
            else:
                status, payload = self.app.infer(endpoint, body, request_id)
            self._json(status, payload)
        elif path == "/v1/feedback":
            self._json(*(problem or self.app.feedback(body)))
        else:
            self._json(404, api.error_body(f"no route POST {path}", code="not_found"))
