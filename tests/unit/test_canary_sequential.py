"""The pooled sequential tests: false rollbacks stay under alpha however often they are looked at, bad canaries are
caught, the acceptance side keeps its beta, and histograms become counts. Simulated counts, whole canaries."""
from __future__ import annotations

import math

import numpy as np
import pytest

from llmops.canary import buckets, stats
from llmops.canary.sequential import AbsoluteTest, RelativeRule, RelativeTest

RULE = RelativeRule(margin=0.2, detect=1.0, alpha=0.01, beta=0.01)
LOOKS = 40


def canaries(p_canary: float, p_stable: float, n: int, looks: int, seed: int, rule=RULE, bursty=False):
    """Yield (rejected at, accepted at) per simulated canary: a look after every window, random traffic splits."""
    rng = np.random.default_rng(seed)
    weights = rng.choice([5, 10, 25, 50, 75], size=(n, looks))
    totals = rng.integers(200, 3000, size=(n, looks))
    n_c = np.maximum(1, totals * weights // 100)
    n_s = totals - n_c
    level = np.exp(0.7 * rng.standard_normal((n, looks)) - 0.245) if bursty else np.ones((n, looks))
    e_c = rng.binomial(n_c, np.minimum(1, p_canary * level))
    e_s = rng.binomial(n_s, np.minimum(1, p_stable * level))
    for i in range(n):
        t = RelativeTest(rule)
        rejected = accepted = None
        for k in range(looks):
            t.add(int(e_c[i, k]), int(n_c[i, k]), int(e_s[i, k]), int(n_s[i, k]))
            if rejected is None and t.rejected():
                rejected = k
            if accepted is None and t.accepted():
                accepted = k
        yield rejected, accepted


@pytest.mark.parametrize("bursty", [False, True])
def test_repeated_looks_do_not_inflate_false_rollbacks(bursty):
    # The canary sits exactly on the tolerated limit (1.2 x the stable's rate): the least favourable null.
    runs = list(canaries(0.012, 0.01, 1000, LOOKS, seed=5, bursty=bursty))
    rate = np.mean([r is not None for r, _ in runs])
    assert rate <= RULE.alpha, f"{rate:.2%} of canaries falsely rejected over {LOOKS} looks"


def test_the_per_window_test_looked_at_every_window_does_inflate_them():
    # The building block alone, repeated: what the pooled test replaces (per window it keeps alpha, per canary not).
    rng = np.random.default_rng(9)
    hits = 0
    for _ in range(40):
        ec, es = rng.binomial(200, 0.01, LOOKS), rng.binomial(1800, 0.01, LOOKS)
        hits += any(stats.worse_than(int(a), 200, int(b), 1800, 0.0, 0.01).worse for a, b in zip(ec, es, strict=True))
    assert hits / 40 > 0.05


def test_bad_canaries_are_caught_and_rarely_accepted():
    runs = list(canaries(0.02, 0.01, 400, LOOKS, seed=6))
    caught = np.mean([r is not None and (a is None or r <= a) for r, a in runs])
    assert caught >= 0.95, f"2x canary rejected before accepted in only {caught:.1%}"
    # Exactly at rho_bad the acceptance side is the null: accepted at most beta of the time.
    at_bad = list(canaries(0.02, 0.01, 1000, LOOKS, seed=7, rule=RelativeRule(0.2, 1.0, 1e-9, 0.01)))
    assert np.mean([a is not None for _, a in at_bad]) <= 0.01


def test_equal_canaries_are_accepted_and_the_estimate_says_how_long():
    runs = list(canaries(0.01, 0.01, 300, LOOKS, seed=8))
    assert np.mean([a is not None for _, a in runs]) >= 0.95
    t = RelativeTest(RULE)
    t.add(1, 100, 19, 1900)
    need = t.requests_to_accept(5)
    assert need and need > 100
    rng = np.random.default_rng(1)
    served = 100
    while not t.accepted():
        t.add(int(rng.binomial(100, 0.01)), 100, int(rng.binomial(1900, 0.01)), 1900)
        served += 100
    assert need / 3 <= served - 100 <= need * 3, (need, served)


def test_nothing_to_compare_is_not_evaluable_and_100_percent_adds_no_relative_evidence():
    t = RelativeTest(RULE)
    t.add(0, 500, 0, 4500)
    assert not t.evaluable and not t.rejected() and not t.accepted()
    t.add(30, 1000, 0, 0)  # 100 %: the stable served nothing
    assert not t.evaluable and t.log_reject() <= 1e-9 and t.requests_to_accept(100) is None
    t.add(10, 500, 0, 4500)  # errors on the canary only: evidence against it
    assert t.evaluable and t.log_accept() < 0
    assert t.summary()["canary_events"] == 40


def test_state_round_trips_through_json_and_a_rule_change_starts_over():
    import json

    t = RelativeTest(RULE)
    t.add(5, 500, 20, 4500)
    again = RelativeTest(RULE, json.loads(json.dumps(t.state)))
    assert again.log_reject() == pytest.approx(t.log_reject())
    assert RelativeTest(RULE, {"loglik": [0.0]}).state["canary_requests"] == 0
    with pytest.raises(ValueError, match="margin < detect"):
        RelativeRule(0.5, 0.5, 0.01, 0.01)


def test_absolute_limit_under_repeated_looks_and_power():
    rng = np.random.default_rng(4)
    false = caught = 0
    for _ in range(1000):
        ok, bad = AbsoluteTest(0.05, 0.01), AbsoluteTest(0.05, 0.01)
        f = c = False
        for _ in range(LOOKS):
            ok.add(int(rng.binomial(100, 0.05)), 100)
            bad.add(int(rng.binomial(100, 0.1)), 100)
            f, c = f or ok.rejected(), c or bad.rejected()
        false += f
        caught += c
    assert false / 1000 <= 0.01 and caught / 1000 >= 0.99
    assert not AbsoluteTest(0.05, 0.01).rejected()
    zero = AbsoluteTest(0.0, 0.01)
    zero.add(1, 1000)
    assert zero.rejected()


def test_histograms_become_counts():
    h = buckets.parse({"0.5": 300, "1": 450, "+Inf": 480}, "canary")
    assert h == [(0.5, 300), (1.0, 450), (math.inf, 480)]
    assert buckets.above(h, 0.5) == 180 and buckets.total(h) == 480
    assert buckets.bound_at_least(h, 0.7) == 1.0 and buckets.bound_at_least(h, 2) is None
    s = buckets.parse({"0.5": 9000, "1": 9950, "+Inf": 10000}, "stable")
    # 1,180 of 10,480 above 0.5 s, only 80 (< 1 %) above 1 s: the p99 lies in (0.5, 1], counted above 0.5 s
    assert buckets.tail_bound(h, s, 0.99) == 0.5
    fast = buckets.parse({"0.5": 100, "1": 100, "+Inf": 100}, "fast")
    assert buckets.tail_bound(fast, fast, 0.99) == 0.5  # every request in the first bucket
    for raw, message in [({"0.5": 3}, "no .*Inf"), ({"x": 1, "+Inf": 2}, "not a number"),
                         ({"+Inf": -1}, ">= 0"), ([], "an object")]:
        with pytest.raises(ValueError, match=message):
            buckets.parse(raw, "canary")
