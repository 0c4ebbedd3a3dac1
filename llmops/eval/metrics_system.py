"""System metrics: perplexity/loss on the references, latency percentiles, throughput, output length, cost.

Perplexity and loss need the local backend (it scores each reference given its prompt with the model). Latency
is per request: for the local backend a request's latency is the wall time of the batch it ran in (what a caller
would have waited); for an endpoint it is the server's service time, the successful HTTP attempt of the rows sent
one at a time (``run.latency_rows``; their count is the metric's n), never queueing behind other requests.
``tokens_per_s`` is generated tokens over wall time: for an endpoint, of the rows run at ``--concurrency``
(``run.throughput``: throughput under that load), otherwise of the whole generation phase.
Cost is the mean price of one request from its token counts and the prices given in the config.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from llmops.eval.metric_base import EvalRun, Metric, MetricUnavailable, MetricValue, register


def _ref_stats(run: EvalRun, name: str) -> np.ndarray:
    if run.ref_scores is None:
        raise MetricUnavailable(f"{name} needs the local model backend (it scores the references with the model); "
                                f"the {run.backend or 'current'} backend cannot provide it")
    return np.asarray(run.ref_scores, dtype=float).reshape(len(run), 2)


@register
class Loss(Metric):
    name = "loss"
    higher_is_better = False
    test = "bootstrap"
    default_min_effect = 0.01
    unit = "nats/token"

    def compute(self, run: EvalRun) -> MetricValue:
        stats = _ref_stats(run, self.name)
        return MetricValue(self.aggregate(stats), stats)

    def from_sums(self, totals: np.ndarray, counts: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return totals[:, 0] / totals[:, 1]

    def settings(self) -> dict[str, Any]:
        return {"on": "reference", "given": "prompt", "avg": "token"}


@register
class Perplexity(Loss):
    name = "perplexity"
    default_min_effect = "2%"  # type: ignore[assignment] - relative: perplexity scales differ between models
    unit = "perplexity"

    def from_sums(self, totals: np.ndarray, counts: np.ndarray) -> np.ndarray:
        return np.exp(super().from_sums(totals, counts))


def _complete(values: list | None, what: str, run: EvalRun, name: str) -> np.ndarray:
    if values is None or any(v is None for v in values) or len(values) != len(run):
        missing = len(run) if values is None else sum(v is None for v in values)
        raise MetricUnavailable(f"{name} needs {what} for every sample; {missing} of {len(run)} have none"
                                + (" (add them to the predictions file)" if run.backend == "predictions" else ""))
    return np.asarray(values, dtype=float)


class _Latency(Metric):
    higher_is_better = False
    unit = "seconds"
    q = 50.0

    def compute(self, run: EvalRun) -> MetricValue:
        if run.latency_rows is not None:  # service time: only the rows that ran alone
            lat = np.asarray([run.latencies[i] for i in run.latency_rows if run.latencies  # type: ignore[index]
                              and run.latencies[i] is not None], dtype=float)
            if not len(lat):
                raise MetricUnavailable(f"{self.name} needs at least one row sent alone (latency-sample)")
            return MetricValue(float(np.percentile(lat, self.q)), None,
                               {"mean": float(lat.mean()), "rows_measured": len(lat), "measured": "service time, "
                                "rows sent one at a time"})
        lat = _complete(run.latencies, "a latency (latency_s)", run, self.name)
        return MetricValue(float(np.percentile(lat, self.q)), None, {"mean": float(lat.mean())})

    def settings(self) -> dict[str, Any]:
        return {"q": f"p{self.q:g}", "per": "request"}


@register
class LatencyP50(_Latency):
    name = "latency_p50"
    q = 50.0


@register
class LatencyP95(_Latency):
    name = "latency_p95"
    q = 95.0


@register
class LatencyP99(_Latency):
    name = "latency_p99"
    q = 99.0


@register
class TokensPerSecond(Metric):
    name = "tokens_per_s"
    unit = "tokens/s"

    def compute(self, run: EvalRun) -> MetricValue:
        out = _complete(run.output_tokens, "output token counts", run, self.name)
        thr = run.throughput or {}
        if thr.get("output_tokens") is not None and thr.get("seconds"):
            return MetricValue(float(thr["output_tokens"] / thr["seconds"]), None,
                               {"tokens": int(thr["output_tokens"]), "seconds": thr["seconds"],
                                "concurrency": thr.get("concurrency"), "requests": thr.get("requests")})
        if run.generation_seconds is None:
            lat = _complete(run.latencies, "a latency (latency_s)", run, self.name)
            seconds = float(lat.sum())  # predictions made elsewhere: assume they ran one after another
        else:
            seconds = run.generation_seconds
        value = float(out.sum() / seconds) if seconds > 0 else float("nan")
        return MetricValue(value, None, {"tokens": int(out.sum()), "seconds": seconds})

    def settings(self) -> dict[str, Any]:
        return {"tokens": "generated", "time": "wall"}


@register
class OutputLength(Metric):
    name = "output_length"
    higher_is_better = None
    unit = "tokens"

    def compute(self, run: EvalRun) -> MetricValue:
        if run.output_tokens is not None and all(v is not None for v in run.output_tokens):
            lengths = np.asarray(run.output_tokens, dtype=float)
        else:
            raise MetricUnavailable("output_length needs output token counts (output_tokens); "
                                    f"the {run.backend} run has none")
        return MetricValue(float(lengths.mean()) if len(lengths) else float("nan"), lengths.reshape(-1, 1),
                           {"max": float(lengths.max()) if len(lengths) else 0.0})

    def settings(self) -> dict[str, Any]:
        return {"avg": "mean", "of": "output-tokens"}


@register
class Cost(Metric):
    name = "cost"
    higher_is_better = False
    unit = "price units per request"

    def compute(self, run: EvalRun) -> MetricValue:
        p_in, p_out = run.prices.get("input_per_1k_tokens"), run.prices.get("output_per_1k_tokens")
        if p_in is None and p_out is None:
            raise MetricUnavailable("cost needs prices: set prices.input_per_1k_tokens and "
                                    "prices.output_per_1k_tokens in the thresholds file (or --price-input/"
                                    "--price-output)")
        inp = _complete(run.prompt_tokens, "prompt token counts", run, self.name) if p_in else np.zeros(len(run))
        out = _complete(run.output_tokens, "output token counts", run, self.name) if p_out else np.zeros(len(run))
        per = (inp * (p_in or 0.0) + out * (p_out or 0.0)) / 1000.0
        return MetricValue(float(per.mean()) if len(per) else float("nan"), per.reshape(-1, 1),
                           {"total": float(per.sum())})

    def settings(self) -> dict[str, Any]:
        return {"per": "request", "from": "token-counts"}
