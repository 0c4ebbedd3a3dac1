"""Per-window exact one-sided tests on request and error counts: the building blocks of the pooled tests.

The judge no longer decides on one window alone (llmops.canary.sequential pools the likelihood of every window;
``worse_than``'s conditional binomial is its per-window term). These stay as the per-window baseline that
benchmarks/canary_stats.py compares against. Two questions about one analysis window, each a one-sided test that
only says "worse" when the counts make it unlikely (p < alpha) that the canary is within the limit:

``above_threshold``  canary error rate > an absolute limit?  Exact binomial test of the canary's errors against
                     Binomial(n_canary, limit). A handful of errors in a few requests no longer trips a 5% limit.
``worse_than``       canary error rate > (1 + margin) x stable's, both measured in the same window?  Conditional
                     exact test for two rates: given the total errors x = x_c + x_s, under H0 (rate_c = rho *
                     rate_s, rho = 1 + margin) the canary's share of the errors is Binomial(x, pi) with
                     pi = rho * n_c / (rho * n_c + n_s). This is the classic comparison of two Poisson rates; for
                     binomial counts it is conservative (the Poisson variance is larger), so the false-rollback
                     rate stays at or below alpha. With margin 0 it asks "is the canary worse at all".

Both take integer counts (``increase()`` over the window, rounded) and return a ``TestResult`` with the p-value and
the observed rates so the decision can be explained. ``fixed_threshold`` is the Flagger-style bare ratio check kept
for comparison (benchmarks/canary_stats.py).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class TestResult:
    """Outcome of one test: ``worse`` is True when H0 (canary within the limit) is rejected at ``alpha``."""

    test: str
    worse: bool
    p_value: float
    alpha: float
    canary_rate: float | None
    reference_rate: float | None
    detail: str

    def as_dict(self) -> dict:
        return asdict(self)


def _binom_sf(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p)."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    if p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    from scipy.stats import binom

    return float(binom.sf(k - 1, n, p))


def _check_counts(errors: int, total: int, who: str) -> None:
    if total < 0 or errors < 0 or errors > total:
        raise ValueError(f"{who}: need 0 <= errors <= total, got errors={errors} total={total}")


def rate(errors: int, total: int) -> float | None:
    """The observed ratio; None when there were no requests (no value, never 0 or NaN): the one rate helper."""
    return errors / total if total else None


def above_threshold(errors: int, total: int, limit: float, alpha: float) -> TestResult:
    """Is the canary's error rate above ``limit``? One-sided exact binomial test."""
    _check_counts(errors, total, "canary")
    p_value = _binom_sf(errors, total, limit)
    observed = rate(errors, total)
    return TestResult(
        test="binomial", worse=p_value < alpha, p_value=p_value, alpha=alpha, canary_rate=observed,
        reference_rate=limit,
        detail=f"P(>= {errors} errors in {total} requests | rate {limit:g}) = {p_value:.3g}",
    )


def worse_than(canary_errors: int, canary_total: int, stable_errors: int, stable_total: int,
               margin: float, alpha: float) -> TestResult:
    """Is the canary's error rate above (1 + margin) x the stable's? Conditional exact binomial test."""
    _check_counts(canary_errors, canary_total, "canary")
    _check_counts(stable_errors, stable_total, "stable")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    rho = 1.0 + margin
    x = canary_errors + stable_errors
    share = rho * canary_total / (rho * canary_total + stable_total) if canary_total else 0.0
    p_value = _binom_sf(canary_errors, x, share) if x else 1.0
    return TestResult(
        test="conditional-binomial", worse=p_value < alpha, p_value=p_value, alpha=alpha,
        canary_rate=rate(canary_errors, canary_total), reference_rate=rate(stable_errors, stable_total),
        detail=(f"{canary_errors} of {x} errors on the canary, expected share <= {share:.3g} "
                f"if its rate <= {rho:g} x stable's: p = {p_value:.3g}"),
    )


def fixed_threshold(canary_errors: int, canary_total: int, limit: float) -> bool:
    """Flagger-style check: the bare observed ratio above the limit counts as failed (no notion of sample size)."""
    return canary_total > 0 and canary_errors / canary_total > limit


def finite(value: float | None) -> bool:
    return value is not None and not math.isnan(value) and not math.isinf(value)
