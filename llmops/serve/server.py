"""The reference model server: OpenAI-compatible completions and chat, /health, /metrics, feedback, costs.

    GET  /health               200 {"status": "ok", "model_version", ...} once loaded; 503 while loading, failed
                               or draining
    GET  /metrics              Prometheus exposition (names and labels: see llmops.monitoring)
    GET  /v1/models            the one served model
    POST /v1/completions       {"prompt", "max_tokens", "temperature", "top_p", "n", "stop", "seed", "stream"}
    POST /v1/chat/completions  {"messages": [{"role", "content"}], ...} -> chat.completion (or its chunks) + usage
    POST /v1/feedback          {"score": 0..1} -> moves the online quality gauge
    GET  /v1/costs             cost totals per UTC day and per version

uvicorn serves the Starlette app (``llmops.serve.http``) on its own thread and event loop; the socket is bound in
the constructor, so ``port`` is known (and connections queue) before ``start()``. The model loads in a background
thread while /health answers 503 (a readiness probe). Concurrent requests are batched by the engine
(``llmops.serve.engines``). ``stream: true`` answers server-sent events; time to first token is taken when the
first token is sent (streams) or generated (whole answers), from the moment the request arrived.

``drain()`` is the SIGTERM path: /health turns 503 at once while requests keep being served (load balancers need a
moment to stop sending), then the server stops listening once nothing is in flight, lets the requests it has
(streams included) finish, and returns.

    with ModelServer(TransformersGenerator(path), info) as server:   # binds 127.0.0.1:0
        server.wait_ready(60)
        requests.post(server.url + "/v1/completions", json={"prompt": "hi"}, timeout=30)
"""
from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from typing import Any

from llmops.errors import InfraError, LLMOpsError
from llmops.monitoring.cost import CostTracker, PriceTable, to_jsonable
from llmops.monitoring.logs import RequestLogger
from llmops.monitoring.metrics import RequestSample, ServerMetrics
from llmops.serve import openai_api as api
from llmops.serve.engines import Choice, EchoEngine, RequestSink, TransformersEngine
from llmops.serve.faults import Faults
from llmops.serve.generators import ContextLengthError, ModelInfo
from llmops.serve.http import build_app, json_response

KEEP_ALIVE_S = 75  # longer than a load balancer's usual 60 s idle timeout, so the server is never the one to race


def _bind(host: str, port: int) -> socket.socket:
    """The listening socket. Created with proto=IPPROTO_TCP (``socket.create_server`` leaves it 0), because asyncio
    only sets TCP_NODELAY on accepted sockets whose proto says TCP: without it every keep-alive response whose
    headers and body go out in two writes waits ~40 ms for the client's delayed ACK (Nagle)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.listen(1024)
    except OSError:
        sock.close()
        raise
    return sock


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, ensure_ascii=False).encode("utf-8") + b"\n\n"


class ModelServer:
    def __init__(self, generator: Any, info: ModelInfo, *, host: str = "127.0.0.1", port: int = 0,
                 faults: Faults | None = None, prices: PriceTable | None = None, logger: RequestLogger | None = None,
                 default_max_tokens: int = 16, quality_score: float | None = None, quality_window: int = 100,
                 max_batch: int = 16, shutdown_timeout: float = 30.0):
        self.generator = generator
        self.info = info
        self.faults = faults or Faults()
        self.metrics = ServerMetrics(info.version, quality_window=quality_window)
        self.costs = CostTracker(prices or PriceTable())
        self.log = logger or RequestLogger("llmops.serve")
        self.default_max_tokens = default_max_tokens
        self.max_batch = max_batch
        self.shutdown_timeout = shutdown_timeout
        self.state = "loading"
        self.draining = False
        self.load_error: str | None = None
        self.load_seconds: float | None = None
        self.engine: Any = None
        self._load_exc: Exception | None = None
        self._loaded = threading.Event()
        self._threads: list[threading.Thread] = []
        self._uvicorn: Any = None
        self._active = 0  # requests being handled, streams included (changed on the event loop only)
        self._last_arrival = time.monotonic()
        self._created = int(time.time())
        if self.faults.quality_score is not None:
            self.metrics.set_quality(self.faults.quality_score)
        elif quality_score is not None:
            self.metrics.set_quality(quality_score)
        self._sock = _bind(host, port)
        self.host, self.port = self._sock.getsockname()[:2]
        self.app = build_app(self)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in str(self.host) else self.host
        return f"http://{host}:{self.port}"

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> ModelServer:
        import uvicorn

        config = uvicorn.Config(self.app, log_config=None, access_log=False, lifespan="off", ws="none",
                                server_header=False, timeout_keep_alive=KEEP_ALIVE_S,
                                timeout_graceful_shutdown=self.shutdown_timeout)
        self._uvicorn = uvicorn.Server(config)
        for target, name in ((self._load, "llmops-load"), (self._serve, "llmops-http")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def _serve(self) -> None:
        self._uvicorn.run(sockets=[self._sock])

    def _load(self) -> None:
        start = time.perf_counter()
        try:
            self.generator.load()
            self.engine = (EchoEngine(self.generator) if self.generator.kind == "echo"
                           else TransformersEngine(self.generator, max_batch=self.max_batch))
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

    def wait_loaded(self, timeout: float) -> bool:
        """True once loading has ended (loaded or failed)."""
        return self._loaded.wait(timeout)

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Block until the model is loaded; raise what the load raised, or InfraError on timeout."""
        if not self._loaded.wait(timeout):
            raise InfraError(f"the model did not load within {timeout:g}s")
        if isinstance(self._load_exc, LLMOpsError):
            raise self._load_exc
        if self.state == "failed":
            raise LLMOpsError(f"the model failed to load: {self.load_error}",
                              "check the model folder loads with transformers' AutoModelForCausalLM")

    def drain(self, max_wait_s: float = 2.0, idle_s: float = 0.5) -> None:
        """Readiness 503 now; keep serving until nothing is in flight and no request came for ``idle_s`` (at most
        ``max_wait_s``), then stop listening and let the requests already received finish."""
        self.draining = True
        self.log.event("draining", model_version=self.info.version, in_flight=self._active)
        deadline = time.monotonic() + max_wait_s
        while time.monotonic() < deadline:
            if self._active == 0 and time.monotonic() - self._last_arrival >= idle_s:
                break
            time.sleep(0.02)
        self.stop()

    def stop(self) -> None:
        http = self._threads[1] if len(self._threads) > 1 else None
        if http is not None and http.is_alive():
            self._uvicorn.should_exit = True  # graceful: stop accepting, finish what is in flight
            http.join(timeout=self.shutdown_timeout + 5)
        self._sock.close()
        if self._threads:
            self._threads[0].join(timeout=5)
        if self.engine is not None:
            self.engine.close()

    def __enter__(self) -> ModelServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---------------------------------------------------------------- simple handlers (return status, body)

    def health(self) -> tuple[int, dict[str, Any]]:
        status = "draining" if self.draining else {"ready": "ok"}.get(self.state, self.state)
        body = {"status": status, "model_version": self.info.version, "model_name": self.info.name,
                "generator": self.generator.kind}
        if self.load_error:
            body["error"] = self.load_error
        return (200 if status == "ok" else 503), body

    def models(self) -> tuple[int, dict[str, Any]]:
        return 200, {"object": "list", "data": [{"id": self.info.name, "object": "model", "created": self._created,
                                                 "owned_by": "llmops", "model_version": self.info.version}]}

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

    # ---------------------------------------------------------------- inference

    async def infer(self, endpoint: str, body: Any, request_id: str) -> Any:
        """One inference request (on the event loop), timed and counted whatever its outcome."""
        call = _Call(endpoint, request_id)
        self._last_arrival = time.monotonic()
        self._active += 1
        self.metrics.in_flight.labels(self.info.version).inc()
        streaming = False
        try:
            if self.faults.latency_ms > 0:
                await asyncio.sleep(self.faults.latency_ms / 1000.0)
            problem = self._prepare(call, body)
            if problem:
                return self._done(call, *problem)
            if call.req.stream:
                from starlette.responses import StreamingResponse

                streaming = True
                return StreamingResponse(self._stream(call), media_type="text/event-stream",
                                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
            pending = len(call.choices)
            while pending:
                _, kind, value = await call.sink.events.get()
                if kind in ("done", "error"):
                    pending -= 1
            failed = next((c.error for c in call.choices if c.error), None)
            if failed:
                return self._done(call, 500, api.error_body(failed, "server_error"))
            build = api.chat_response if endpoint == "chat" else api.completion_response
            return self._done(call, 200, build(self.info.name, call.prompt_tokens, call.outputs()))
        except asyncio.CancelledError:
            call.cancel()
            raise
        finally:
            if not streaming:
                self._release()

    def _release(self) -> None:
        self._active -= 1
        self.metrics.in_flight.labels(self.info.version).dec()

    def _prepare(self, call: _Call, body: Any) -> tuple[int, dict[str, Any]] | None:
        """Validate and submit the request's choices; (status, error body) when it cannot be served."""
        if self.state != "ready":
            return 503, api.error_body(f"model {self.info.version} is {self.state}", "server_error")
        if self.faults.should_fail():
            return 500, api.error_body(f"injected fault (LLMOPS_FAULT_ERROR_RATE={self.faults.error_rate:g})",
                                       "server_error")
        chat = call.endpoint == "chat"
        try:
            req = (api.parse_chat if chat else api.parse_completion)(body, self.default_max_tokens)
            if req.model is not None and req.model not in (self.info.name, self.info.version):
                raise api.BadRequest(f"model {req.model!r} is not served here; this server serves "
                                     f"{self.info.name!r} (version {self.info.version})", "model", 404,
                                     "model_not_found")
            prompts = [self.generator.render_chat(req.messages)] if chat else req.prompts
            call.req, call.prompt_text = req, "\n".join(prompts)
            call.sink = RequestSink(asyncio.get_running_loop())
            gen, echo = self.generator, self.generator.kind == "echo"
            for prompt in prompts:
                ids = prompt if echo else gen.encode(prompt, req.params.max_tokens, chat=chat)
                n_tokens = gen.prompt_tokens(prompt) if echo else len(ids)
                call.prompt_tokens += n_tokens
                for _ in range(req.n):
                    call.choices.append(Choice(len(call.choices), ids, n_tokens, req.params, call.sink, gen.decode,
                                               chat=req.messages))
        except api.BadRequest as exc:
            return exc.status, api.error_body(exc.message, param=exc.param, code=exc.code)
        except ContextLengthError as exc:
            return 400, api.error_body(str(exc), param="messages" if chat else "prompt",
                                       code="context_length_exceeded")
        except ValueError as exc:  # the generator rejected the input (no chat template, nothing to start from)
            return 400, api.error_body(str(exc))
        except Exception as exc:  # noqa: BLE001 - a tokenizer failure is a 500 for this request, not a crash
            return 500, api.error_body(f"could not prepare the prompt: {type(exc).__name__}: {exc}", "server_error")
        self.engine.submit(call.choices)
        return None

    async def _stream(self, call: _Call):
        chat = call.endpoint == "chat"
        rid, created, model = api.new_id(call.endpoint), int(time.time()), self.info.name
        status, error = 200, None
        try:
            if chat:
                for c in call.choices:
                    yield _sse(api.chat_chunk(rid, created, model, c.index, {"role": "assistant", "content": ""}))
            pending = len(call.choices)
            while pending:
                index, kind, value = await call.sink.events.get()
                if kind == "delta":
                    if call.first_sent is None:
                        call.first_sent = time.perf_counter()
                    yield _sse(api.chat_chunk(rid, created, model, index, {"content": value}) if chat
                               else api.completion_chunk(rid, created, model, index, value))
                elif kind == "done":
                    pending -= 1
                    yield _sse(api.chat_chunk(rid, created, model, index, {}, value) if chat
                               else api.completion_chunk(rid, created, model, index, "", value))
                else:
                    status, error = 500, value
                    yield _sse(api.error_body(value, "server_error"))
                    break
            if status == 200 and call.req.include_usage:
                yield _sse(api.usage_chunk(call.endpoint, rid, created, model, call.prompt_tokens, call.outputs()))
            yield b"data: [DONE]\n\n"
        finally:
            call.cancel()
            self._done(call, status, api.error_body(error, "server_error") if error else {})
            self._release()

    def _done(self, call: _Call, status: int, payload: dict[str, Any]) -> Any:
        """Count, cost and log a finished request; the JSON response for it."""
        now = time.perf_counter()
        ok = status < 400
        n_in = call.prompt_tokens if ok and call.choices else 0
        n_out = sum(c.tracker.output_tokens for c in call.choices) if ok else 0
        firsts = [c.first_token_at for c in call.choices if c.first_token_at is not None]
        first = call.first_sent if call.req is not None and call.req.stream else min(firsts, default=None)
        ends = [c.done_at for c in call.choices if c.done_at is not None]
        gen_s = (max(ends, default=now) - call.start) if ok and call.choices else None
        cost = self.costs.track(self.info.version, n_in, n_out, gen_s or 0.0, model_name=self.info.name) \
            if ok and call.choices else None
        self.metrics.record_request(RequestSample(
            endpoint=call.endpoint, http_status=status, duration_s=now - call.start, input_tokens=n_in,
            output_tokens=n_out, ttft_s=(first - call.start) if ok and first is not None and n_out else None,
            generation_s=gen_s, cost=float(cost.total) if cost else 0.0))
        self.log.request(call.request_id, model_version=self.info.version, prompt=call.prompt_text,
                         response="".join(c.tracker.text for c in call.choices) if ok and call.choices else None,
                         status=status, latency_s=now - call.start, input_tokens=n_in, output_tokens=n_out,
                         endpoint=call.endpoint, **({"error": payload["error"]["message"]} if not ok else {}))
        return json_response(status, payload)


class _Call:
    """What one inference request accumulates on its way through the server."""

    def __init__(self, endpoint: str, request_id: str):
        self.endpoint = endpoint
        self.request_id = request_id
        self.start = time.perf_counter()
        self.req: api.ParsedRequest | None = None
        self.prompt_text: str | None = None
        self.prompt_tokens = 0
        self.choices: list[Choice] = []
        self.sink: RequestSink | None = None
        self.first_sent: float | None = None

    def outputs(self) -> list[api.Output]:
        return [api.Output(c.tracker.text, c.tracker.finish_reason or "stop", c.tracker.output_tokens)
                for c in self.choices]

    def cancel(self) -> None:
        for choice in self.choices:
            if not choice.done:
                choice.cancelled = True
