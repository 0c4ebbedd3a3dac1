"""One live analysis window: ask Prometheus for the counts of canary and stable over the same window, then judge.

Owns the Prometheus side of a window: which templates a configuration needs (llmops.canary.queries), rendering them
for each side, turning the answers into the judge's counts (the what-if input format, kept in the record so a past
canary can be replayed), and naming the query that returned nothing when a series is missing while its
Deployment serves (exit 2, not a rollback). The judging itself is llmops.canary.judge, shared with the what-if mode.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from llmops.canary import queries
from llmops.canary.judge import GAUGE_CHECKS, HISTOGRAM_CHECKS, AnalysisConfig, Limits, MissingSeries, judge
from llmops.canary.prom import Prometheus
from llmops.errors import UsageError

__all__ = ["AnalysisConfig", "Limits", "Side", "analyse", "needed_templates"]


@dataclass(frozen=True)
class Side:
    version: str
    deployment: str


def needed_templates(cfg: AnalysisConfig) -> list[str]:
    names = ["requests", "errors"]
    for check, (template, _) in HISTOGRAM_CHECKS.items():
        if cfg.limits.get(check, Limits()).enabled:
            names.append(template)
    names += [g for g in GAUGE_CHECKS if cfg.limits.get(g, Limits()).enabled]
    return names


def _count(value: float | None) -> int | None:
    return None if value is None else max(0, round(value))


def analyse(prom: Prometheus, cfg: AnalysisConfig, canary: Side, stable: Side, namespace: str, window_s: float,
            *, weight: int, evidence: dict, min_requests: int, at: float | None = None) -> dict:
    """Query and judge one window ending at ``at`` (now when None); ``evidence`` (pooled) is updated in place."""
    window = queries.duration(window_s)
    counts: dict = {"canary": {}, "stable": {}}
    promql: dict = {}
    templates = cfg.templates or queries.DEFAULTS
    for name in needed_templates(cfg):
        promql[name] = {}
        for role, side in (("canary", canary), ("stable", stable)):
            q = queries.render(templates[name], version=side.version, window=window, namespace=namespace,
                               deployment=side.deployment)
            promql[name][role] = q
            if name in queries.HISTOGRAMS:
                value = prom.query_buckets(q, at)
                if value is not None:
                    counts[role][name] = {le: max(0, round(v)) for le, v in value.items()}
            else:
                value = prom.query_value(q, at)
                if value is not None:
                    counts[role][name] = _count(value) if name in ("requests", "errors") else value
    try:
        result = judge(counts, evidence, cfg, weight, min_requests)
    except MissingSeries as exc:
        q = promql["requests"][exc.side]
        raise UsageError(f"the {exc.side}'s requests series is absent while its Deployment is serving (about "
                         f"{exc.expected:.0f} requests expected in {window}): {q!r} returned nothing",
                         f"check the {exc.side}-version / version-label and the requests template (labels must "
                         "match the metrics)") from None
    except ValueError as exc:  # a malformed histogram from a custom template
        raise UsageError(f"bad metrics from Prometheus: {exc}", "check the histogram templates (sum by (le))") from None
    return {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at or time.time())), "window": window,
            **result, "counts": counts, "queries": promql}
