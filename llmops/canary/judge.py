"""The canary's judge: one window's counts, added to the evidence pooled over the canary's life, explained.

Pure: no Prometheus, no cluster. The live run (llmops.canary.analysis), the what-if replay (llmops.canary.whatif)
and benchmarks/canary_stats.py all call ``judge``. A window's counts (what-if input; the live run builds the same):

    {"canary": {"requests": 480, "errors": 7, "latency_seconds": {"0.5": 300, "1": 450, "+Inf": 480},
                "ttft_seconds": {...}, "cost_per_request": 0.002, "quality": 0.91}, "stable": {...}}

Counts are increases over the window; histograms are Prometheus cumulative buckets; every key but requests is
optional. Checks (each enabled by a limit; ``max`` absolute, ``relative`` vs the stable over the same windows):

=================  ==========================================================================================
error_rate         errors as counts: ``AbsoluteTest`` vs max, ``RelativeTest`` (margin = relative) vs stable
latency_p99        requests slower than a bucket bound as counts, like errors: relative at the bound just below
                   both versions' p99 (the largest with >= 1 % of their requests above it, picked from their sum;
                   llmops.canary.buckets.tail_bound), with margin = relative on the canary's share of slow
                   requests vs the stable's; absolute: more than 1 % of the canary's requests slower than the
                   first bound >= max (then its p99 is above max)
ttft_p95           the same with q = 0.95, on the time-to-first-token histogram
cost_per_request,  gauges, not counts: no sample size to test, so a gauge is judged only in windows where the
quality            canary served at least min-requests (other windows say "not judged" and do not hold the step
                   back), by its bare value vs the limits; a failed window is one that failure-limit tolerates
                   (quality: lower is worse)
=================  ==========================================================================================

The sequential tests (llmops.canary.sequential) reject = roll back at once (their alpha already covers every
look; failure-limit does not apply to them). A relative test that has seen no events on either side, or whose
input is missing, is reported ``not evaluated``, never silently dropped. A missing requests series is never a pass:
it is no traffic (the window counts nothing) or, when the other side's traffic says the canary must have served
requests, a configuration error (``MissingSeries``, exit 2 with the query).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from llmops.canary import buckets, stats
from llmops.canary.sequential import AbsoluteTest, RelativeRule, RelativeTest

NO_DATA_POLICIES = ("fail", "wait", "pass")
HISTOGRAM_CHECKS = {"latency_p99": ("latency_seconds", 0.99), "ttft_p95": ("ttft_seconds", 0.95)}
GAUGE_CHECKS = {"cost_per_request": True, "quality": False}  # name -> higher is worse
CHECKS = ("error_rate", *HISTOGRAM_CHECKS, *GAUGE_CHECKS)
EXPECTED_FOR_MISSING = 20  # the other side's traffic implies >= this many requests: an absent series is an error


class MissingSeries(Exception):
    """A side's requests series is absent although the other side's traffic says it served requests."""

    def __init__(self, side: str, expected: float):
        super().__init__(f"no requests series for the {side} although about {expected:.0f} requests were expected")
        self.side, self.expected = side, expected


@dataclass(frozen=True)
class Limits:
    max: float | None = None  # absolute limit (a minimum for quality)
    relative: float | None = None  # fraction vs stable: 0.2 = 20 % worse than stable fails

    @property
    def enabled(self) -> bool:
        return self.max is not None or self.relative is not None


@dataclass(frozen=True)
class AnalysisConfig:
    alpha: float = 0.01  # false-rollback rate of the whole canary
    beta: float = 0.01  # chance that a canary (1 + detect) x worse than stable reaches the last step
    detect: float = 1.0  # the relative increase that must be caught (1.0: twice the stable's rate)
    on_no_data: str = "fail"
    limits: dict[str, Limits] = field(default_factory=dict)
    templates: dict[str, str] = field(default_factory=dict)  # the canary's (and the stable's, unless below)
    stable_templates: dict[str, str] = field(default_factory=dict)  # explicit per-side selection
    regex_deployment: bool = False  # {deployment} sits in a regex (pod patterns): rendered regex-escaped
    histograms_optional: bool = False  # what-if input: a histogram absent on both sides is "not measured"

    def sequential_tests(self) -> int:
        """How many rejection tests share alpha (Bonferroni)."""
        n = 0
        for name in ("error_rate", *HISTOGRAM_CHECKS):
            lim = self.limits.get(name, Limits())
            n += (lim.max is not None) + (lim.relative is not None)
        return max(1, n)

    def key(self) -> str:
        """Identifies the rules the pooled evidence was computed under (a change restarts the evidence)."""
        lims = {k: (v.max, v.relative) for k, v in sorted(self.limits.items()) if v.enabled}
        return f"alpha={self.alpha} beta={self.beta} detect={self.detect} limits={lims}"


def _count(value) -> int | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return max(0, round(value))


def judge(counts: dict, evidence: dict, cfg: AnalysisConfig, weight: float, min_requests: int) -> dict:
    """Judge one window at ``weight`` %; updates ``evidence`` (the pooled state) in place; returns the result."""
    c, s = counts.get("canary") or {}, counts.get("stable") or {}
    n_c, n_s = _count(c.get("requests")), _count(s.get("requests"))
    if n_c is None and n_s and 0 < weight < 100 and n_s * weight / (100 - weight) >= EXPECTED_FOR_MISSING:
        raise MissingSeries("canary", n_s * weight / (100 - weight))
    if n_s is None and n_c and 0 < weight < 100 and n_c * (100 - weight) / weight >= EXPECTED_FOR_MISSING:
        raise MissingSeries("stable", n_c * (100 - weight) / weight)
    measured = n_c is not None
    n_c, n_s = n_c or 0, n_s or 0
    # No error series while requests exist means no errors (servers that do not pre-create the series).
    e_c, e_s = min(_count(c.get("errors")) or 0, n_c), min(_count(s.get("errors")) or 0, n_s)
    result: dict = {"weight": weight, "measured": measured,
                    "requests": {"canary": n_c if measured else None, "stable": n_s},
                    "errors": {"canary": e_c, "stable": e_s},
                    "error_rate": {"canary": stats.rate(e_c, n_c), "stable": stats.rate(e_s, n_s)},
                    "checks": []}
    if evidence.get("rules") != cfg.key():
        evidence.clear()
        evidence["rules"] = cfg.key()
    a_test = cfg.alpha / cfg.sequential_tests()
    for name in CHECKS:
        lim = cfg.limits.get(name, Limits())
        if not lim.enabled:
            continue
        if name in GAUGE_CHECKS:
            check = _gauge(name, lim, c.get(name), s.get(name), n_c, n_s, min_requests)
        else:
            ev = evidence.setdefault(name, {})
            if name == "error_rate":
                window = {"canary": (e_c, n_c), "stable": (e_s, n_s), "bound": None}
            else:
                window = _tail(name, lim, c, s, n_c, n_s)
            check = _sequential(name, lim, cfg, a_test, ev, window, weight)
        if check["outcome"] == "no_data" and cfg.histograms_optional and name in HISTOGRAM_CHECKS and \
                c.get(HISTOGRAM_CHECKS[name][0]) is None and s.get(HISTOGRAM_CHECKS[name][0]) is None:
            check["counts_as"] = "not_evaluated"
        elif check["outcome"] == "no_data":
            check["counts_as"] = {"fail": "fail", "wait": "wait", "pass": "not_evaluated"}[cfg.on_no_data]
        else:
            check["counts_as"] = check["outcome"]
        result["checks"].append(check)
    return result


def _sequential(name: str, lim: Limits, cfg: AnalysisConfig, alpha: float, ev: dict, window: dict,
                weight: float) -> dict:
    """One count check: add the window to the pooled tests, then reject / accept / wait."""
    check: dict = {"name": name, "kind": "sequential", "limits": {"max": lim.max, "relative": lim.relative},
                   "window": {k: v for k, v in window.items() if k != "missing"}, "notes": []}
    missing = window.get("missing")
    rel = abs_ = None
    if lim.relative is not None:
        rel = RelativeTest(RelativeRule(lim.relative, cfg.detect, alpha, cfg.beta), ev.get("relative"))
        if window.get("stable") is not None and window.get("canary") is not None:
            (y, n_c), (ys, n_s) = window["canary"], window["stable"]
            rel.add(y, n_c, ys, n_s)
        ev["relative"] = rel.state
    if lim.max is not None:
        limit = lim.max if name == "error_rate" else 1.0 - HISTOGRAM_CHECKS[name][1]
        abs_ = AbsoluteTest(limit, alpha, ev.get("absolute"))
        if window.get("canary_above_max") is not None:
            abs_.add(*window["canary_above_max"])
        elif name == "error_rate" and window.get("canary") is not None:
            abs_.add(*window["canary"])
        ev["absolute"] = abs_.state
    check["evidence"] = {"relative": rel.summary() if rel else None, "absolute": abs_.summary() if abs_ else None}
    reasons = []
    if abs_ is not None and abs_.rejected():
        st = abs_.state
        what = "errors" if name == "error_rate" else f"requests slower than {window.get('max_bound')}s"
        reasons.append(f"{st['events']}/{st['requests']} {what} over the canary: shown above "
                       f"{abs_.limit:.2%} (log-evidence {abs_.log_reject():.1f} >= {abs_.reject_at:.1f})")
    if rel is not None and rel.rejected():
        st = rel.state
        reasons.append(f"canary {_share_text(st['canary_events'], st['canary_requests'])} vs stable "
                       f"{_share_text(st['stable_events'], st['stable_requests'])} over the canary: shown more than "
                       f"{lim.relative:.0%} worse (log-evidence {rel.log_reject():.1f} >= {rel.reject_at:.1f})")
    check["accepted"] = rel is None or rel.accepted() or not rel.evaluable
    check["to_accept"] = None if check["accepted"] else rel.requests_to_accept(weight)
    if rel is not None and not rel.evaluable:
        check["notes"].append("relative limit not evaluated yet: " + (
            "no events on either side to compare" if rel.state["stable_requests"] else "the stable served nothing"))
    if reasons:
        check.update(outcome="fail", reason="; ".join(reasons))
    elif missing:
        check.update(outcome="no_data", reason=missing)
    elif not check["accepted"]:
        check.update(outcome="pending", reason=f"not yet shown below {rel.rule.detect:.0%} worse than stable")
    else:
        check.update(outcome="pass", reason="no significant increase")
    return check


def _share_text(events: int, requests: int) -> str:
    return f"{events}/{requests} = {events / requests:.2%}" if requests else "no requests"


def _tail(name: str, lim: Limits, c: dict, s: dict, n_c: int, n_s: int) -> dict:
    """Counts of slow requests for one histogram check in this window (``missing`` says what was not there)."""
    key, q = HISTOGRAM_CHECKS[name]
    hc = buckets.parse(c[key], f"canary {key}") if c.get(key) is not None else None
    hs = buckets.parse(s[key], f"stable {key}") if s.get(key) is not None else None
    out: dict = {"canary": None, "stable": None, "bound": None}
    if hc is None:
        if n_c:
            out["missing"] = f"no canary {key} histogram although the canary served {n_c} requests"
        return out
    if lim.max is not None:
        b = buckets.bound_at_least(hc, lim.max)
        out["max_bound"] = b
        if b is not None:
            out["canary_above_max"] = (buckets.above(hc, b), buckets.total(hc))
        else:
            out["missing"] = f"no finite bucket bound >= max {lim.max:g}s in the canary's {key} histogram"
    if lim.relative is not None:
        if hs is None:
            if n_s:
                out["missing"] = f"no stable {key} histogram although the stable served {n_s} requests"
            return out
        b = buckets.tail_bound(hc, hs, q)
        out["bound"] = b
        if b is not None:
            out["canary"] = (buckets.above(hc, b), buckets.total(hc))
            out["stable"] = (buckets.above(hs, b), buckets.total(hs))
    return out


def _gauge(name: str, lim: Limits, vc, vs, n_c: int, n_s: int, min_requests: int) -> dict:
    higher_worse = GAUGE_CHECKS[name]
    check: dict = {"name": name, "kind": "gauge", "limits": {"max" if higher_worse else "min": lim.max,
                                                             "relative": lim.relative},
                   "values": {"canary": vc, "stable": vs}, "notes": [], "accepted": True}
    bad = lambda v: v is None or (isinstance(v, float) and math.isnan(v))  # noqa: E731
    if bad(vc):
        check.update(outcome="no_data" if n_c else "pending", reason="no canary value (no series or NaN)")
        return check
    if n_c < min_requests:
        check.update(outcome="not_judged", reason=f"not judged in this window: the canary served {n_c} requests, "
                                                  f"fewer than min-requests {min_requests} (a gauge of that few "
                                                  "requests is noise)")
        return check
    reasons = []
    if lim.max is not None and (vc > lim.max if higher_worse else vc < lim.max):
        reasons.append(f"{vc:.4g} is {'above max' if higher_worse else 'below min'} {lim.max:g}")
    if lim.relative is not None:
        if bad(vs):
            if n_s:
                check.update(outcome="no_data", reason="no stable value to compare with although the stable "
                                                       f"served {n_s} requests")
                return check
            check["notes"].append("relative limit not evaluated: the stable served nothing in this window")
        else:
            bound = vs * (1 + lim.relative) if higher_worse else vs * (1 - lim.relative)
            if vc > bound if higher_worse else vc < bound:
                reasons.append(f"{vc:.4g} vs stable {vs:.4g} is more than {lim.relative:.0%} "
                               f"{'higher' if higher_worse else 'lower'}")
    check.update(outcome="fail" if reasons else "pass", reason="; ".join(reasons) or "within limits")
    return check


def evidence(window: dict) -> dict:
    """Per check, the evidence pooled over the whole canary as of ``window`` (a judged window)."""
    out = {}
    for c in window.get("checks") or []:
        out[c["name"]] = {"outcome": c["outcome"], "counts_as": c.get("counts_as"), "reason": c["reason"],
                          **({"pooled": c["evidence"]} if "evidence" in c else {"values": c.get("values")}),
                          "notes": c.get("notes") or []}
    return out
