"""Real HTTP servers that expose what each model server / router really exposes, for tests against real Prometheus.

Owns: one ``Exporter`` per pod (127.0.0.1, port 0, always shut down) with the EXACT metric names, label names and
histogram bucket bounds of a server, a ``record()`` that turns one finished request into the samples that server
writes, and a small OpenAI-style API on the same port (``/v1/models``, ``/v1/chat/completions``,
``/v1/completions`` and the server's health path) so the same process is the "real local server" for
bin/integration_test.py. ``scrape_configs`` gives the Prometheus jobs that attach ``pod``/``namespace`` target
labels the way Kubernetes service discovery does.

Sources read (names, labels, buckets; code read for facts, not copied):

* vLLM ``vllm/v1/metrics/loggers.py`` at 005a810bc40f (v0.10 line): ``vllm:e2e_request_latency_seconds`` (buckets
  0.3 ... 7680), ``vllm:time_to_first_token_seconds`` (0.001 ... 2560), ``vllm:time_per_output_token_seconds``
  and its successor ``vllm:inter_token_latency_seconds`` (0.01 ... 80, same bounds; newer loggers.py emit both),
  ``vllm:request_success_total{finished_reason=stop|length|abort}`` (pre-created), ``vllm:prompt_tokens_total``,
  ``vllm:generation_tokens_total``; every series labelled ``model_name`` (= ``--served-model-name``) and
  ``engine``. HTTP counts come from prometheus-fastapi-instrumentator on the API server:
  ``http_requests_total{handler, method, status="2xx|4xx|5xx"}`` (grouped status codes, created lazily).
* TGI ``router/src/server.rs`` at db931fcf42da (v3.3.6-dev0, metrics-exporter-prometheus 0.15): unlabelled
  counters without ``_total`` (``tgi_request_count``, ``tgi_request_success``), ``tgi_request_failure{err}`` with
  err = validation | overloaded | template | incomplete | generation | dropped, histograms
  ``tgi_request_duration`` etc. in seconds on 35 geometric buckets 0.0001 x 1.5^k (k = 1..35, 0.00015 ... 145.6),
  ``tgi_request_generated_tokens``. No TTFT histogram.
* SGLang ``python/sglang/srt/metrics/collector.py`` at 00ae9c1590d2: ``sglang:num_requests_total``,
  ``sglang:num_aborted_requests_total``, ``sglang:prompt_tokens_total``, ``sglang:generation_tokens_total``,
  ``sglang:e2e_request_latency_seconds`` (0.1 ... 2400), ``sglang:time_to_first_token_seconds`` (0.1 ... 400),
  ``sglang:inter_token_latency_seconds`` (0.002 ... 8); labels ``model_name``, ``engine_type`` (tokenizer manager).
* Triton ``docs/user_guide/metrics.md`` at e1db8a603d86 (2.73.0dev): ``nv_inference_request_success``,
  ``nv_inference_request_failure{reason=REJECTED|CANCELED|BACKEND|OTHER}``, ``nv_inference_count``,
  cumulative ``nv_inference_request_duration_us`` / ``nv_inference_queue_duration_us`` counters and (with
  ``--metrics-config histogram_latencies=true``) ``nv_inference_first_response_histogram_ms`` on buckets
  100, 500, 2000, 5000; labels ``model``, ``version``.
* Istio standard metrics (Envoy stats): ``istio_requests_total`` and ``istio_request_duration_milliseconds``
  on Envoy's default buckets 0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000,
  600000, 1800000, 3600000; labels reporter, destination_workload, destination_workload_namespace,
  response_code, source_workload, ... .
* ingress-nginx ``internal/ingress/metric/collectors/socket.go`` and ``rootfs/etc/nginx/lua/monitor.lua`` at
  038b023dd00c: ``nginx_ingress_controller_requests`` (client_golang counter, no ``_total``) and
  ``nginx_ingress_controller_request_duration_seconds`` (default ``--time-buckets`` = client_golang DefBuckets
  .005 ... 10) labelled status, method, path, namespace, ingress, service, canary (the alternative upstream
  ``<namespace>-<service>-<port>`` when the canary served the request, else empty) plus controller_* labels.
* llmops: the reference server's own registry (llmops.monitoring.metrics), used as is.
"""
from __future__ import annotations

import json
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.infra.exposition import Text

VLLM_E2E = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0,
            960.0, 1920.0, 7680.0)
VLLM_TTFT = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0,
             80.0, 160.0, 640.0, 2560.0)
VLLM_ITL = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0)
SGLANG_E2E = (0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8, 10, 20, 40, 60, 80, 100, 200, 400, 600, 1200, 1800, 2400)
SGLANG_TTFT = (0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8, 10, 20, 40, 60, 80, 100, 200, 400)
SGLANG_ITL = (0.002, 0.004, 0.006, 0.008, 0.010, 0.015, 0.020, 0.025, 0.030, 0.035, 0.040, 0.060, 0.080, 0.100,
              0.200, 0.400, 0.600, 0.800, 1.000, 2.000, 4.000, 6.000, 8.000)
TRITON_FIRST_RESPONSE_MS = (100, 500, 2000, 5000)
ENVOY_MS = (0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000,
            3600000)
GO_DEF_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


def _tgi_buckets() -> tuple[float, ...]:
    value, out = 0.0001, []
    for _ in range(35):
        value *= 1.5
        out.append(value)
    return tuple(out)


TGI_DURATION = _tgi_buckets()
KINDS = ("llmops", "vllm", "tgi", "sglang", "triton", "istio", "nginx")
HEALTH_PATHS = {"llmops": "/health", "vllm": "/health", "tgi": "/health", "sglang": "/health",
                "triton": "/v2/health/ready", "openai": None}


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):  # a client gave up: fine
            super().handle_error(request, client_address)


class Exporter:
    """One pod of ``kind``: /metrics with that server's exposition, plus a tiny OpenAI-style API."""

    def __init__(self, kind: str, *, pod: str, namespace: str = "default", model: str = "m", deployment: str = "",
                 service: str = "", health: bool = True, error_rate: float = 0.0, seed: int = 1,
                 canary_service: str = "llm-canary"):
        if kind not in KINDS:
            raise ValueError(f"unknown exporter kind {kind!r}")
        self.kind, self.pod, self.namespace, self.model = kind, pod, namespace, model
        self.deployment = deployment or pod.rsplit("-", 2)[0]
        self.service = service or self.deployment
        self.canary_service = canary_service  # nginx: the canary Ingress's backend (error_rate applies to it)
        self.health = health
        self.error_rate = error_rate  # API requests answered 500 (and counted as the server counts a failure)
        self.rng = random.Random(seed)
        self.rng_lock = threading.Lock()
        self.text = Text()
        self.registry: Any = None
        self.m: dict[str, Any] = {}
        getattr(self, f"_init_{kind}")()
        self.server = _QuietServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.target = f"127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    # -------------------------------------------------------------- lifecycle
    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    def __enter__(self) -> Exporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def exposition(self) -> bytes:
        if self.registry is not None:
            from prometheus_client import generate_latest
            return generate_latest(self.registry)
        return self.text.render()

    # -------------------------------------------------------------- per-server instruments
    def _pc(self):
        from prometheus_client import CollectorRegistry, Counter, Histogram
        self.registry = CollectorRegistry()
        return Counter, Histogram

    def _init_llmops(self) -> None:
        from llmops.monitoring.metrics import ServerMetrics
        self.sm = ServerMetrics(self.model)
        self.sm.set_quality(0.9)  # as with --quality-score
        self.registry = self.sm.registry

    def _init_vllm(self) -> None:
        counter, hist = self._pc()
        r, lab = self.registry, ["model_name", "engine"]
        m = self.m
        m["success"] = counter("vllm:request_success", "Count of successfully processed requests.",
                               lab + ["finished_reason"], registry=r)
        for reason in ("stop", "length", "abort"):
            m["success"].labels(self.model, "0", reason)
        m["prompt"] = counter("vllm:prompt_tokens", "Number of prefill tokens processed.", lab, registry=r)
        m["gen"] = counter("vllm:generation_tokens", "Number of generation tokens processed.", lab, registry=r)
        m["e2e"] = hist("vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", lab,
                        buckets=VLLM_E2E, registry=r)
        m["ttft"] = hist("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", lab,
                         buckets=VLLM_TTFT, registry=r)
        m["tpot"] = hist("vllm:time_per_output_token_seconds", "Histogram of time per output token in seconds.",
                         lab, buckets=VLLM_ITL, registry=r)
        m["itl"] = hist("vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", lab,
                        buckets=VLLM_ITL, registry=r)
        for key in ("prompt", "gen", "e2e", "ttft", "tpot", "itl"):
            m[key].labels(self.model, "0")
        m["http"] = counter("http_requests_total", "Total number of requests by method, status and handler.",
                            ["handler", "method", "status"], registry=r)

    def _init_sglang(self) -> None:
        counter, hist = self._pc()
        r, lab = self.registry, ["model_name", "engine_type"]
        m = self.m
        m["n"] = counter("sglang:num_requests_total", "Number of requests processed.", lab, registry=r)
        m["aborted"] = counter("sglang:num_aborted_requests_total", "Number of requests aborted.", lab, registry=r)
        m["prompt"] = counter("sglang:prompt_tokens_total", "Number of prefill tokens processed.", lab, registry=r)
        m["gen"] = counter("sglang:generation_tokens_total", "Number of generation tokens processed.", lab,
                           registry=r)
        m["e2e"] = hist("sglang:e2e_request_latency_seconds", "Histogram of End-to-end request latency in seconds",
                        lab, buckets=SGLANG_E2E, registry=r)
        m["ttft"] = hist("sglang:time_to_first_token_seconds", "Histogram of time to first token in seconds.", lab,
                         buckets=SGLANG_TTFT, registry=r)
        m["itl"] = hist("sglang:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", lab,
                        buckets=SGLANG_ITL, registry=r)
        # SGLang creates each series on its first observation (labels() at record time).

    def _init_tgi(self) -> None:
        pass  # the metrics crate registers each series on its first increment / record

    def _init_triton(self) -> None:
        lab = {"model": self.model, "version": "1"}
        for name in ("nv_inference_request_success", "nv_inference_count", "nv_inference_exec_count",
                     "nv_inference_request_duration_us", "nv_inference_queue_duration_us"):
            self.text.counter(name, lab, 0)
        for reason in ("REJECTED", "CANCELED", "BACKEND", "OTHER"):
            self.text.counter("nv_inference_request_failure", {**lab, "reason": reason}, 0)
        self.text.histogram("nv_inference_first_response_histogram_ms", TRITON_FIRST_RESPONSE_MS, lab, None)

    def _init_istio(self) -> None:
        pass  # Envoy creates each label combination on its first request

    def _init_nginx(self) -> None:
        pass  # client_golang vectors: a series appears on its first request

    # -------------------------------------------------------------- traffic
    def record(self, n: int = 1, *, ok: bool = True, latency: float = 0.5, ttft: float = 0.1,
               output_tokens: int = 10, input_tokens: int = 20, canary_upstream: str = "") -> None:
        """``n`` finished requests as the server counts them (``ok=False``: a server-side failure, HTTP 5xx)."""
        for _ in range(n):
            getattr(self, f"_record_{self.kind}")(ok, latency, ttft, output_tokens, input_tokens, canary_upstream)

    def _record_llmops(self, ok, latency, ttft, out, inp, _c) -> None:
        from llmops.monitoring.metrics import RequestSample
        self.sm.record_request(RequestSample("chat", 200 if ok else 500, latency, inp if ok else 0,
                                             out if ok else 0, ttft if ok else None, latency if ok else None,
                                             cost=0.001 * out if ok else 0.0))

    def _record_vllm(self, ok, latency, ttft, out, inp, _c) -> None:
        m, v = self.m, (self.model, "0")
        m["http"].labels("/v1/chat/completions", "POST", "2xx" if ok else "5xx").inc()
        if not ok:
            return
        m["success"].labels(*v, "stop").inc()
        m["e2e"].labels(*v).observe(latency)
        m["ttft"].labels(*v).observe(ttft)
        per_token = max(0.0, (latency - ttft) / max(1, out - 1))
        m["tpot"].labels(*v).observe(per_token)
        m["itl"].labels(*v).observe(per_token)
        m["prompt"].labels(*v).inc(inp)
        m["gen"].labels(*v).inc(out)

    def _record_sglang(self, ok, latency, ttft, out, inp, _c) -> None:
        m, v = self.m, (self.model, "unified")
        if not ok:
            m["aborted"].labels(*v).inc()
            return
        m["n"].labels(*v).inc()
        m["e2e"].labels(*v).observe(latency)
        m["ttft"].labels(*v).observe(ttft)
        m["prompt"].labels(*v).inc(inp)
        m["gen"].labels(*v).inc(out)

    def _record_tgi(self, ok, latency, ttft, out, inp, _c) -> None:
        t = self.text
        t.counter("tgi_request_count", {})
        if not ok:
            t.counter("tgi_request_failure", {"err": "generation"})
            return
        t.counter("tgi_request_success", {})
        t.histogram("tgi_request_duration", TGI_DURATION, {}, latency)
        t.histogram("tgi_request_inference_duration", TGI_DURATION, {}, max(0.0, latency - ttft / 2))
        t.histogram("tgi_request_queue_duration", TGI_DURATION, {}, ttft / 2)
        t.histogram("tgi_request_generated_tokens", tuple(float(20.48 * (i + 1)) for i in range(100)), {}, out)

    def _record_triton(self, ok, latency, ttft, out, inp, _c) -> None:
        t, lab = self.text, {"model": self.model, "version": "1"}
        if not ok:
            t.counter("nv_inference_request_failure", {**lab, "reason": "BACKEND"})
            return
        t.counter("nv_inference_request_success", lab)
        t.counter("nv_inference_count", lab)
        t.counter("nv_inference_exec_count", lab)
        t.counter("nv_inference_request_duration_us", lab, round(latency * 1e6))
        t.counter("nv_inference_queue_duration_us", lab, round(ttft * 1e5))
        t.histogram("nv_inference_first_response_histogram_ms", TRITON_FIRST_RESPONSE_MS, lab, ttft * 1000)

    def _record_istio(self, ok, latency, ttft, out, inp, _c) -> None:
        lab = {"reporter": "destination", "source_workload": "istio-ingressgateway",
               "source_workload_namespace": "istio-system", "destination_workload": self.deployment,
               "destination_workload_namespace": self.namespace, "destination_service": f"{self.service}."
               f"{self.namespace}.svc.cluster.local", "destination_service_name": self.service,
               "destination_version": "unknown", "request_protocol": "http", "response_code": "200" if ok else "503",
               "response_flags": "-", "connection_security_policy": "mutual_tls"}
        self.text.counter("istio_requests_total", lab)
        self.text.histogram("istio_request_duration_milliseconds", ENVOY_MS, lab, latency * 1000)

    def _record_nginx(self, ok, latency, ttft, out, inp, canary_upstream) -> None:
        lab = {"controller_class": "k8s.io/ingress-nginx", "controller_namespace": "ingress-nginx",
               "controller_pod": self.pod, "status": "200" if ok else "502", "method": "POST",
               "path": "/", "namespace": self.namespace, "ingress": "llm", "service": self.service,
               "canary": canary_upstream}
        self.text.counter("nginx_ingress_controller_requests", lab)
        self.text.histogram("nginx_ingress_controller_request_duration_seconds", GO_DEF_BUCKETS, lab, latency)

    # -------------------------------------------------------------- HTTP
    def _handler(self):
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_a: object) -> None:
                pass

            def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802 - http.server API
                path = self.path.split("?")[0]
                if path == "/metrics":
                    return self._send(200, exporter.exposition(), "text/plain; version=0.0.4; charset=utf-8")
                if exporter.health and path == HEALTH_PATHS.get(exporter.kind):
                    return self._send(200, b"")
                if path == "/v1/models":
                    body = {"object": "list", "data": [{"id": exporter.model, "object": "model"}]}
                    return self._send(200, json.dumps(body).encode())
                return self._send(404, json.dumps({"detail": "Not Found"}).encode())

            def do_POST(self) -> None:  # noqa: N802 - http.server API
                start = time.perf_counter()
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    req = json.loads(self.rfile.read(length) or b"{}")
                except ValueError:
                    return self._send(400, b'{"error": "bad json"}')
                path, upstream, error_rate = self.path.split("?")[0], "", exporter.error_rate
                if exporter.kind == "nginx":  # the controller: /canary/... to the canary upstream, /stable/...
                    side, _, rest = path.lstrip("/").partition("/")
                    path = "/" + rest
                    if side == "canary":
                        upstream = f"{exporter.namespace}-{exporter.canary_service}-80"
                    else:
                        error_rate = 0.0
                if path not in ("/v1/chat/completions", "/v1/completions"):
                    return self._send(404, json.dumps({"detail": "Not Found"}).encode())
                if req.get("model") not in (None, exporter.model):
                    err = {"error": {"message": f"The model `{req.get('model')}` does not exist.",
                                     "type": "NotFoundError", "code": 404}}
                    return self._send(404, json.dumps(err).encode())
                with exporter.rng_lock:
                    fail = exporter.rng.random() < error_rate
                if fail:
                    exporter.record(ok=False, latency=time.perf_counter() - start, ttft=0.001,
                                    canary_upstream=upstream)
                    return self._send(500, json.dumps({"error": "injected fault", "error_type": "generation"})
                                      .encode())
                text = "Hello from " + exporter.model
                if path == "/v1/chat/completions":
                    choice = {"index": 0, "message": {"role": "assistant", "content": text},
                              "finish_reason": "stop"}
                else:
                    choice = {"index": 0, "text": text, "finish_reason": "stop"}
                exporter.record(ok=True, latency=time.perf_counter() - start, ttft=0.001, output_tokens=3,
                                canary_upstream=upstream)
                body = {"id": "x", "object": "chat.completion", "model": exporter.model, "choices": [choice],
                        "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}}
                return self._send(200, json.dumps(body).encode())

        return Handler


def scrape_configs(exporters: list[Exporter], job: str = "pods", honor_labels: bool = False) -> list[dict]:
    """Prometheus scrape jobs with per-target ``pod``/``namespace`` labels, as Kubernetes SD relabelling adds them
    (ingress-nginx's own ``namespace`` label needs ``honor_labels``, as in its chart's ServiceMonitor)."""
    static = [{"targets": [e.target], "labels": {"pod": e.pod, "namespace": e.namespace}} for e in exporters]
    return [{"job_name": job, "honor_labels": honor_labels, "static_configs": static}]
