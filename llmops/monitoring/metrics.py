"""The Prometheus instruments of a model server, in their own CollectorRegistry (names: see llmops.monitoring).

One ``ServerMetrics`` per server process (or per test server), so two servers in one process never share or clash
over the global registry. ``record_request`` is the single place a finished request is turned into samples.
"""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
TPOT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
ENDPOINTS = ("completions", "chat")
STATUSES = ("ok", "invalid", "error")
CONTENT_TYPE = CONTENT_TYPE_LATEST
# The *_created series double the exposition and nothing here queries them (process-wide setting).
disable_created_metrics()


def status_for(http_status: int) -> str:
    """The ``status`` label for an HTTP status code: ok (2xx/3xx), invalid (4xx), error (5xx)."""
    if http_status >= 500:
        return "error"
    if http_status >= 400:
        return "invalid"
    return "ok"


@dataclass(frozen=True)
class RequestSample:
    """What one finished inference request contributes to the metrics."""

    endpoint: str
    http_status: int
    duration_s: float
    input_tokens: int = 0
    output_tokens: int = 0
    ttft_s: float | None = None
    generation_s: float | None = None
    cost: float = 0.0


class ServerMetrics:
    """All instruments of one server, labelled with its ``model_version``."""

    def __init__(self, model_version: str, *, quality_window: int = 100,
                 registry: CollectorRegistry | None = None):
        self.model_version = model_version
        self.registry = registry or CollectorRegistry()
        r = self.registry
        v = ["model_version"]
        self.requests = Counter("llm_requests", "Inference requests by endpoint and status (ok, invalid, error)",
                                v + ["endpoint", "status"], registry=r)
        self.latency = Histogram("llm_request_duration_seconds", "Whole inference request latency", v,
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.ttft = Histogram("llm_time_to_first_token_seconds", "Time from request start to the first new token",
                              v, buckets=TTFT_BUCKETS, registry=r)
        self.tpot = Histogram("llm_time_per_output_token_seconds", "Decode time per output token after the first",
                              v, buckets=TPOT_BUCKETS, registry=r)
        self.input_tokens = Counter("llm_input_tokens", "Prompt tokens processed", v, registry=r)
        self.output_tokens = Counter("llm_output_tokens", "Tokens generated", v, registry=r)
        self.cost = Counter("llm_cost_usd", "Cost of inference in the price table's currency", v, registry=r)
        self.quality = Gauge("llm_quality_score", "Online quality: mean of recent feedback scores (0..1)", v,
                             registry=r)
        self.feedback = Counter("llm_feedback", "Feedback scores received", v, registry=r)
        self.info = Gauge("llm_model_info", "1 for the model being served", v + ["model_name"], registry=r)
        self.loaded = Gauge("llm_model_loaded", "1 once the model is loaded, 0 while loading", v, registry=r)
        self.in_flight = Gauge("llm_requests_in_flight", "Inference requests being handled", v, registry=r)
        self._scores: deque[float] = deque(maxlen=max(1, int(quality_window)))
        self._lock = threading.Lock()
        # Pre-create the request series so a rate() over them exists (as 0) before the first error.
        for endpoint in ENDPOINTS:
            for status in STATUSES:
                self.requests.labels(model_version, endpoint, status)
        for metric in (self.input_tokens, self.output_tokens, self.cost, self.feedback):
            metric.labels(model_version)
        self.loaded.labels(model_version).set(0)

    def set_loaded(self, model_name: str) -> None:
        self.info.labels(self.model_version, model_name).set(1)
        self.loaded.labels(self.model_version).set(1)

    def record_request(self, sample: RequestSample) -> None:
        if sample.endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint label {sample.endpoint!r}")
        v = self.model_version
        self.requests.labels(v, sample.endpoint, status_for(sample.http_status)).inc()
        self.latency.labels(v).observe(max(0.0, sample.duration_s))
        if sample.input_tokens:
            self.input_tokens.labels(v).inc(sample.input_tokens)
        if sample.output_tokens:
            self.output_tokens.labels(v).inc(sample.output_tokens)
        if sample.cost > 0:
            self.cost.labels(v).inc(sample.cost)
        if sample.ttft_s is not None:
            self.ttft.labels(v).observe(max(0.0, sample.ttft_s))
            if sample.generation_s is not None and sample.output_tokens > 1:
                per_token = (sample.generation_s - sample.ttft_s) / (sample.output_tokens - 1)
                self.tpot.labels(v).observe(max(0.0, per_token))

    def set_quality(self, score: float) -> None:
        """Fix the quality gauge (``--quality-score``, drills); feedback moves it again."""
        check_score(score)
        self.quality.labels(self.model_version).set(score)

    def record_feedback(self, score: float) -> float:
        """Add one feedback score; the gauge becomes the mean of the last ``quality_window`` scores."""
        check_score(score)
        with self._lock:
            self._scores.append(float(score))
            mean = sum(self._scores) / len(self._scores)
        self.feedback.labels(self.model_version).inc()
        self.quality.labels(self.model_version).set(mean)
        return mean

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def value(self, name: str, **labels: str) -> float | None:
        """Current value of one sample (tests, summaries); ``model_version`` defaults to this server's."""
        labels.setdefault("model_version", self.model_version)
        return self.registry.get_sample_value(name, labels)


def check_score(score: float) -> None:
    if not isinstance(score, (int, float)) or isinstance(score, bool) or not 0.0 <= float(score) <= 1.0:
        raise ValueError(f"a quality score must be a number from 0 to 1, got {score!r}")
