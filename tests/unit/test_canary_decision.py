"""Decision rules on judged windows: pooled evidence rolls back at once, steps need exposure and (before 100 %)
acceptance, low traffic accumulates instead of waiting for ever, pauses, gauges and failure-limit."""
from __future__ import annotations

import pytest

from llmops.canary.decision import Policy, Progress, decide, needs_acceptance, parse_steps
from llmops.canary.judge import AnalysisConfig, Limits, judge
from llmops.errors import UsageError

CFG = AnalysisConfig(limits={"error_rate": Limits(0.05, 0.2)})


def progress(steps=(5, 50, 100)):
    return Progress("v2", "v1", list(steps))


def window(p, policy, n_c, e_c, n_s, e_s, cfg=CFG, **extra):
    counts = {"canary": {"requests": n_c, "errors": e_c, **extra.get("canary", {})},
              "stable": {"requests": n_s, "errors": e_s, **extra.get("stable", {})}}
    return decide(p, judge(counts, p.evidence, cfg, p.weight, policy.min_requests), policy)


def test_healthy_canary_walks_the_steps_then_promotes():
    p, policy = progress(), Policy(steps=(5, 50, 100))
    actions = [window(p, policy, 4000, 40, 36000, 360) for _ in range(3)]
    assert [a.action for a in actions] == ["continue", "continue", "promote"]
    assert actions[0].advanced and "next weight 50%" in actions[0].reason
    assert "pooled evidence of 3 windows" in actions[-1].reason


def test_a_shown_worse_canary_rolls_back_at_once_whatever_failure_limit_says():
    p, policy = progress(), Policy(failure_limit=5)
    d = window(p, policy, 400, 60, 3600, 10)
    assert d.action == "rollback" and d.outcome == "fail" and "shown above 5.00%" in d.reason


def test_low_traffic_accumulates_over_windows_instead_of_waiting_for_ever():
    # 25 canary requests per window at 5 %: min-requests 50 is met over two windows, not never.
    p, policy = progress((5, 10, 25, 50, 75, 100)), Policy()
    first = window(p, policy, 25, 0, 475, 5)
    assert first.outcome == "inconclusive" and "25 more canary requests at 5%" in first.reason
    second = window(p, policy, 25, 0, 475, 5)
    assert second.advanced and p.weight == 10


def test_the_step_before_100_needs_the_canary_shown_not_worse():
    p, policy = progress((50, 100)), Policy(steps=(50, 100), inconclusive_limit=0)
    assert needs_acceptance(p)
    d = window(p, policy, 200, 2, 200, 2)  # equal, but far too little evidence to rule out 2x
    assert d.outcome == "inconclusive" and d.action == "continue"
    assert any("more canary requests at 50% to show error_rate less than 100% worse" in m for m in d.missing)
    for _ in range(60):
        d = window(p, policy, 2000, 20, 2000, 20)
        if d.advanced:
            break
    assert d.advanced and p.weight == 100


def test_no_errors_anywhere_has_nothing_to_compare_and_does_not_block():
    p, policy = progress((50, 100)), Policy(steps=(50, 100))
    assert window(p, policy, 100, 0, 100, 0).advanced
    assert window(p, policy, 100, 0, 0, 0).action == "promote"


def test_too_many_waiting_windows_pause_and_the_budget_restarts():
    p, policy = progress(), Policy(failure_limit=0, inconclusive_limit=3)
    decisions = [window(p, policy, 5, 0, 95, 1) for _ in range(5)]
    assert {d.action for d in decisions} == {"continue"}
    assert [d.paused for d in decisions] == [False, False, False, True, False]
    assert p.failures == 0 and p.weight == 5


@pytest.mark.parametrize("on_no_data", ["fail", "wait", "pass"])
def test_a_canary_with_no_requests_series_never_passes(on_no_data):
    cfg = AnalysisConfig(on_no_data=on_no_data, limits={"error_rate": Limits(0.05, 0.2)})
    p, policy = progress(), Policy()
    for _ in range(3):
        d = window(p, policy, None, None, 10, 0, cfg)  # too little stable traffic to call it a misconfiguration
        assert d.outcome == "inconclusive" and "a canary requests series" in d.reason


def test_gauges_count_failed_windows_against_failure_limit():
    cfg = AnalysisConfig(limits={"quality": Limits(0.7, None)})
    p, policy = progress(), Policy(failure_limit=1)
    bad = {"canary": {"quality": 0.5}}
    assert window(p, policy, 400, 0, 3600, 0, cfg, **bad).outcome == "fail"
    d = window(p, policy, 400, 0, 3600, 0, cfg, **bad)
    assert d.action == "rollback" and "more than failure-limit 1" in d.reason
    # A gauge from a handful of requests is not judged at all (and does not hold low traffic back).
    q = progress()
    judged = judge({"canary": {"requests": 10, "quality": 0.5}, "stable": {"requests": 3600}}, q.evidence, cfg, 5, 50)
    assert judged["checks"][0]["outcome"] == "not_judged" and "noise" in judged["checks"][0]["reason"]
    for _ in range(5):
        d = window(q, Policy(), 10, 0, 3600, 0, cfg, **bad)
    assert d.advanced and q.failures == 0


def test_progress_round_trips_with_its_evidence_and_ignores_unknown_keys():
    p = progress()
    window(p, Policy(), 400, 4, 3600, 36)
    data = p.as_dict() | {"future_field": 1}
    again = Progress.from_dict(data)
    assert again == p and again.evidence["error_rate"]["relative"]["canary_requests"] == 400


@pytest.mark.parametrize("text", ["", "10,5", "0,50", "5,5,100", "5,abc", "50,101"])
def test_bad_steps(text):
    with pytest.raises(UsageError, match="steps must be"):
        parse_steps(text)


def test_steps_parse():
    assert parse_steps("5, 10,25,50,75,100") == (5, 10, 25, 50, 75, 100)
    assert parse_steps("20\n100") == (20, 100)
