"""One analysis window: ask Prometheus about canary and stable over the same window, judge every check, explain it.

Checks (each enabled by giving it a limit; ``max`` is absolute, ``relative`` is vs the stable version measured in
the same window):

=================  ==========================================================================================
error_rate         counts from ``increase()``: exact binomial test of the canary's errors against ``max``
                   and a conditional exact test of canary vs stable with margin ``relative`` (llmops.canary.stats).
latency_p99        histogram_quantile p99 (s): fails when above ``max`` or above stable x (1 + relative).
ttft_p95           time to first token p95 (s), same rule.
cost_per_request   mean cost of a request, same rule.
quality            online quality gauge (0..1), lower is worse: fails when below ``max`` (a minimum) or below
                   stable x (1 - relative).
=================  ==========================================================================================

Quantiles come from histogram buckets, so there is no per-request sample to run a rank test (Kayenta's
Mann-Whitney) on; they are compared against the limits directly and are only as fine as the bucket bounds.

Window outcome: ``inconclusive`` when the canary served fewer than ``min_requests`` (too little traffic: wait,
never pass or fail on it); else ``fail`` when a check failed; a check with no value (no series, NaN) is the named
outcome ``no_data`` and counts as ``on_no_data`` says (fail, wait or pass); else ``pass``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from llmops.canary import queries, stats
from llmops.canary.prom import Prometheus

NO_DATA_POLICIES = ("fail", "wait", "pass")
VALUE_CHECKS = {  # name -> (higher is worse, unit)
    "latency_p99": (True, "s"),
    "ttft_p95": (True, "s"),
    "cost_per_request": (True, ""),
    "quality": (False, ""),
}


@dataclass(frozen=True)
class Limits:
    max: float | None = None  # absolute limit (a minimum for quality)
    relative: float | None = None  # fraction vs stable: 0.2 = 20 % worse than stable fails

    @property
    def enabled(self) -> bool:
        return self.max is not None or self.relative is not None


@dataclass(frozen=True)
class AnalysisConfig:
    min_requests: int = 50
    alpha: float = 0.01
    on_no_data: str = "fail"
    limits: dict[str, Limits] = field(default_factory=dict)
    templates: dict[str, str] = field(default_factory=lambda: dict(queries.DEFAULTS))


@dataclass(frozen=True)
class Side:
    version: str
    deployment: str


def _count(value: float | None) -> int | None:
    return None if value is None else max(0, round(value))


class Window:
    """Renders and runs the queries of one window, keeping every resolved query and value for the record."""

    def __init__(self, prom: Prometheus, cfg: AnalysisConfig, namespace: str, window_s: float, at: float | None):
        self.prom, self.cfg, self.namespace, self.at = prom, cfg, namespace, at
        self.window = queries.duration(window_s)

    def query(self, name: str, side: Side) -> tuple[str, float | None]:
        promql = queries.render(self.cfg.templates[name], version=side.version, window=self.window,
                                namespace=self.namespace, deployment=side.deployment)
        return promql, self.prom.query_value(promql, self.at)


def analyse(prom: Prometheus, cfg: AnalysisConfig, canary: Side, stable: Side, namespace: str, window_s: float,
            at: float | None = None) -> dict:
    """Analyse one window ending at ``at`` (now when None); returns the explained result (JSON-ready)."""
    w = Window(prom, cfg, namespace, window_s, at)
    q_nc, n_c = w.query("requests", canary)
    q_ns, n_s = w.query("requests", stable)
    q_ec, e_c = w.query("errors", canary)
    q_es, e_s = w.query("errors", stable)
    n_c, n_s, e_c, e_s = _count(n_c), _count(n_s), _count(e_c), _count(e_s)
    # No error series while requests exist means no errors (servers that do not pre-create the series).
    if n_c is not None:
        e_c = min(e_c or 0, n_c)
    if n_s is not None:
        e_s = min(e_s or 0, n_s)
    result: dict = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at or time.time())),
        "window": w.window,
        "requests": {"canary": n_c, "stable": n_s},
        "errors": {"canary": e_c, "stable": e_s},
        "error_rate": {"canary": _rate(e_c, n_c), "stable": _rate(e_s, n_s)},
        "min_requests": cfg.min_requests,
        "queries": {"requests": {"canary": q_nc, "stable": q_ns}, "errors": {"canary": q_ec, "stable": q_es}},
        "checks": [],
    }
    checks = result["checks"]
    limits = cfg.limits.get("error_rate", Limits())
    if limits.enabled:
        checks.append(_error_rate_check(cfg, limits, n_c, e_c, n_s, e_s))
    for name, (higher_worse, unit) in VALUE_CHECKS.items():
        lim = cfg.limits.get(name, Limits())
        if lim.enabled:
            (qc, vc), (qs, vs) = w.query(name, canary), w.query(name, stable)
            checks.append(_value_check(name, lim, higher_worse, unit, vc, vs, {"canary": qc, "stable": qs},
                                       stable_idle=n_s == 0))
    for check in checks:
        if check["outcome"] == "no_data":
            check["counts_as"] = {"fail": "fail", "wait": "inconclusive", "pass": "pass"}[cfg.on_no_data]
        else:
            check["counts_as"] = check["outcome"]
    failed = [c["name"] for c in checks if c["counts_as"] == "fail"]
    waiting = [c["name"] for c in checks if c["counts_as"] == "inconclusive"]
    if n_c is not None and n_c < cfg.min_requests:
        result["outcome"] = "inconclusive"
        result["reason"] = (f"too little traffic: the canary served {n_c} requests in {w.window}, fewer than "
                            f"min-requests {cfg.min_requests}; waiting for more")
    elif failed:
        result["outcome"] = "fail"
        result["reason"] = "; ".join(f"{c['name']}: {c['reason']}" for c in checks if c["counts_as"] == "fail")
    elif waiting:
        result["outcome"] = "inconclusive"
        result["reason"] = f"no data for {', '.join(waiting)} (on-no-data: wait)"
    else:
        result["outcome"] = "pass"
        result["reason"] = "all checks passed" if checks else "no checks enabled"
    return result


def _rate(errors: int | None, total: int | None) -> float | None:
    return errors / total if errors is not None and total else None


def _error_rate_check(cfg: AnalysisConfig, lim: Limits, n_c, e_c, n_s, e_s) -> dict:
    check = {"name": "error_rate", "limits": {"max": lim.max, "relative": lim.relative}, "alpha": cfg.alpha,
             "values": {"canary": _rate(e_c, n_c), "stable": _rate(e_s, n_s)},
             "samples": {"canary": n_c, "stable": n_s}, "errors": {"canary": e_c, "stable": e_s}, "tests": []}
    if not n_c:
        check.update(outcome="no_data", reason="no canary requests in the window")
        return check
    reasons = []
    if lim.max is not None:
        t = stats.above_threshold(e_c, n_c, lim.max, cfg.alpha)
        check["tests"].append(t.as_dict())
        if t.worse:
            reasons.append(f"{e_c}/{n_c} = {t.canary_rate:.2%} is above max {lim.max:.2%} (p = {t.p_value:.2g})")
    if lim.relative is not None:
        if n_s:
            t = stats.worse_than(e_c, n_c, e_s, n_s, lim.relative, cfg.alpha)
            check["tests"].append(t.as_dict())
            if t.worse:
                reasons.append(f"canary {t.canary_rate:.2%} vs stable {t.reference_rate:.2%} is more than "
                               f"{lim.relative:.0%} worse (p = {t.p_value:.2g})")
        elif n_s == 0:
            check["note"] = "stable served no requests in this window: relative limit not applied"
        elif lim.max is None:
            check.update(outcome="no_data", reason="no stable requests to compare with")
            return check
    check["outcome"] = "fail" if reasons else "pass"
    check["reason"] = "; ".join(reasons) or "no significant increase"
    return check


def _value_check(name: str, lim: Limits, higher_worse: bool, unit: str, vc: float | None, vs: float | None,
                 promql: dict, stable_idle: bool = False) -> dict:
    """``stable_idle``: stable served nothing in the window (the canary has all traffic, e.g. at 100%): the relative
    limit has nothing to compare with and is not applied; absolute limits still are."""
    check = {"name": name, "limits": {"max" if higher_worse else "min": lim.max, "relative": lim.relative},
             "values": {"canary": vc, "stable": vs}, "queries": promql, "unit": unit}
    if vc is None:
        check.update(outcome="no_data", reason="no canary value (no series or NaN)")
        return check
    reasons = []
    if lim.max is not None and (vc > lim.max if higher_worse else vc < lim.max):
        reasons.append(f"{vc:.4g}{unit} is {'above max' if higher_worse else 'below min'} {lim.max:g}{unit}")
    if lim.relative is not None:
        if vs is None:
            if stable_idle:
                check["note"] = "stable served no requests in this window: relative limit not applied"
            elif lim.max is None:
                check.update(outcome="no_data", reason="no stable value to compare with")
                return check
        else:
            bound = vs * (1 + lim.relative) if higher_worse else vs * (1 - lim.relative)
            if vc > bound if higher_worse else vc < bound:
                reasons.append(f"{vc:.4g}{unit} vs stable {vs:.4g}{unit} is more than {lim.relative:.0%} "
                               f"{'higher' if higher_worse else 'lower'}")
    check["outcome"] = "fail" if reasons else "pass"
    check["reason"] = "; ".join(reasons) or "within limits"
    return check
