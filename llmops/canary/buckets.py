"""Prometheus histograms as counts: cumulative buckets (``le`` -> count, ``+Inf`` = all requests) in, counts out.

A latency quantile from a few requests is noise, and a ratio of two interpolated quantiles jumps at bucket edges.
What a histogram does measure exactly is how many requests were slower than each bucket bound, so the canary's
latency checks are count tests like the error rate (llmops.canary.judge): "slow" = above a bound.

``parse``        validate one histogram (numbers, counts never decreasing with the bound, ``+Inf`` present)
``above``        requests slower than ``bound`` and all requests
``tail_bound``   the bound just below the q-quantile of both versions together (q = 0.99 for a p99 check):
                 the largest bound with at least ``1 - q`` of all requests above it. Chosen from the two
                 versions' *sum*, so under "same distribution" the choice does not depend on how the requests
                 split between them and the conditional test stays valid. Below the quantile rather than above:
                 with the usual coarse buckets the bound above holds a few tenths of a percent of the requests,
                 too few slow requests to decide at low traffic.
``bound_at_least`` the smallest bound >= a limit (an absolute p99 limit between two bounds is tested at the next
                 bound up: slower than that bound implies slower than the limit, so the test stays valid)
"""
from __future__ import annotations

import math

Histogram = list[tuple[float, int]]  # (upper bound, cumulative count), increasing bounds, last is +Inf


def parse(raw: dict, who: str) -> Histogram:
    """``{"0.5": 300, "1": 450, "+Inf": 480}`` -> [(0.5, 300), (1.0, 450), (inf, 480)]; ValueError says why not."""
    if not isinstance(raw, dict) or not raw:
        raise ValueError(f"{who}: a histogram must be an object mapping bucket bounds (le) to counts")
    items = []
    for le, count in raw.items():
        try:
            bound = math.inf if str(le).strip() in ("+Inf", "Inf", "inf", "+inf") else float(le)
        except ValueError:
            raise ValueError(f"{who}: bucket bound {le!r} is not a number or +Inf") from None
        if not isinstance(count, (int, float)) or isinstance(count, bool) or not count >= 0 or math.isinf(count):
            raise ValueError(f"{who}: bucket {le} count {count!r} must be a number >= 0")
        items.append((bound, max(0, round(count))))
    items.sort()
    if items[-1][0] != math.inf:
        raise ValueError(f"{who}: histogram has no \"+Inf\" bucket (the count of all requests)")
    # Increases of cumulative counters over a window can be a hair off (rate extrapolation); make them monotone.
    fixed, top = [], 0
    for bound, count in items:
        top = max(top, count)
        fixed.append((bound, top))
    return fixed


def total(hist: Histogram) -> int:
    return hist[-1][1]


def above(hist: Histogram, bound: float) -> int:
    """Requests slower than ``bound`` (which must be one of the histogram's bounds)."""
    for b, count in hist:
        if b == bound:
            return hist[-1][1] - count
    raise KeyError(bound)


def tail_bound(canary: Histogram, stable: Histogram, q: float) -> float | None:
    """The shared bound just below the q-quantile of both versions together: the largest bound with at least
    ``1 - q`` of all requests above it (the most slow requests to count while still in the quantile's region);
    when even the first bound has fewer (every request is fast), the first bound. None without requests."""
    shared = sorted({b for b, _ in canary} & {b for b, _ in stable} - {math.inf})
    n = total(canary) + total(stable)
    if not n or not shared:
        return None
    chosen = shared[0]
    for b in shared:
        if above(canary, b) + above(stable, b) >= (1.0 - q) * n:
            chosen = b
    return chosen


def bound_at_least(hist: Histogram, limit: float) -> float | None:
    return next((b for b, _ in hist if b >= limit and b != math.inf), None)
