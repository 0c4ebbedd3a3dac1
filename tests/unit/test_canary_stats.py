"""Statistics of the canary's error-rate tests on simulated counts: false rollbacks and detection power."""
from __future__ import annotations

import numpy as np
import pytest

from llmops.canary import stats

ALPHA = 0.01
MARGIN = 0.2  # the step's default max-error-rate-increase


def _simulate(p_canary: float, p_stable: float, n_canary: int, n_stable: int, trials: int, margin: float,
              seed: int) -> float:
    """Share of simulated windows in which the canary is judged worse than stable."""
    rng = np.random.default_rng(seed)
    ec = rng.binomial(n_canary, p_canary, trials)
    es = rng.binomial(n_stable, p_stable, trials)
    worse = [stats.worse_than(int(a), n_canary, int(b), n_stable, margin, ALPHA).worse for a, b in zip(ec, es, strict=True)]
    return float(np.mean(worse))


@pytest.mark.parametrize("margin", [0.0, MARGIN])
@pytest.mark.parametrize("p", [0.01, 0.05])
def test_equal_versions_are_rarely_rolled_back(p, margin):
    # 2,000 canary requests at a 10 % weight: 18,000 on stable in the same window.
    rate = _simulate(p, p, 2000, 18000, trials=2000, margin=margin, seed=7)
    assert rate <= 0.01, f"false-rollback rate {rate:.3%} for equal error rates {p:.0%}"


def test_one_percent_vs_five_percent_is_detected_at_2000_requests():
    power = _simulate(0.05, 0.01, 2000, 18000, trials=2000, margin=MARGIN, seed=11)
    assert power >= 0.95, f"power {power:.1%}"


def test_small_canary_traffic_keeps_false_rollbacks_low():
    # 50 canary requests vs 950 stable: the bare ratio often exceeds stable's, the test does not say "worse".
    rng = np.random.default_rng(3)
    ec, es = rng.binomial(50, 0.02, 3000), rng.binomial(950, 0.02, 3000)
    tested = np.mean([stats.worse_than(int(a), 50, int(b), 950, 0.0, ALPHA).worse for a, b in zip(ec, es, strict=True)])
    bare = np.mean([a / 50 > b / 950 for a, b in zip(ec, es, strict=True)])
    assert tested <= 0.01 < bare


def test_absolute_limit_needs_evidence_not_one_unlucky_error():
    assert not stats.above_threshold(1, 10, 0.05, ALPHA).worse  # 10 % observed, but one error in ten
    assert stats.above_threshold(30, 200, 0.05, ALPHA).worse  # 15 % over 200 requests
    assert not stats.above_threshold(0, 0, 0.05, ALPHA).worse


def test_results_explain_themselves():
    r = stats.worse_than(40, 1000, 20, 9000, 0.2, ALPHA)
    assert r.worse and r.p_value < 1e-10
    assert r.canary_rate == pytest.approx(0.04) and r.reference_rate == pytest.approx(20 / 9000)
    assert "40 of 60 errors" in r.detail
    assert r.as_dict()["test"] == "conditional-binomial"


def test_no_errors_anywhere_is_not_worse():
    r = stats.worse_than(0, 500, 0, 5000, 0.0, ALPHA)
    assert not r.worse and r.p_value == 1.0


def test_bad_counts_are_rejected():
    with pytest.raises(ValueError, match="errors <= total"):
        stats.worse_than(5, 3, 0, 10, 0.0, ALPHA)
    with pytest.raises(ValueError, match="margin"):
        stats.worse_than(0, 3, 0, 10, -0.1, ALPHA)


def test_fixed_threshold_is_a_bare_ratio():
    assert stats.fixed_threshold(1, 10, 0.05)
    assert not stats.fixed_threshold(0, 0, 0.05)
