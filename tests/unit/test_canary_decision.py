"""Decision rules (Argo-like): failure limit, consecutive successes, inconclusive windows never roll back."""
from __future__ import annotations

import pytest

from llmops.canary.decision import Policy, Progress, decide, parse_steps
from llmops.errors import UsageError


def progress(steps=(5, 50, 100)):
    return Progress("v2", "v1", list(steps))


def test_passes_walk_the_steps_then_promote():
    p, policy = progress(), Policy(steps=(5, 50, 100))
    actions = [decide(p, "pass", policy) for _ in range(3)]
    assert [a.action for a in actions] == ["continue", "continue", "promote"]
    assert actions[0].advanced and "next weight 50%" in actions[0].reason
    assert p.weight == 100


def test_failure_limit_counts_failed_windows():
    p, policy = progress(), Policy(failure_limit=1)
    assert decide(p, "fail", policy).action == "continue"
    assert p.weight == 5  # stays at the weight
    d = decide(p, "fail", policy)
    assert d.action == "rollback" and "2 failed windows, more than failure-limit 1" in d.reason
    assert decide(progress(), "fail", Policy(failure_limit=0)).action == "rollback"


def test_consecutive_successes_reset_by_a_failure():
    p, policy = progress(), Policy(successes=2, failure_limit=5)
    decide(p, "pass", policy)
    decide(p, "fail", policy)
    assert decide(p, "pass", policy).action == "continue" and p.weight == 5
    assert decide(p, "pass", policy).advanced and p.weight == 50


def test_inconclusive_never_rolls_back_and_pauses_after_the_limit():
    p, policy = progress(), Policy(failure_limit=0, inconclusive_limit=3)
    decisions = [decide(p, "inconclusive", policy) for _ in range(4)]
    assert {d.action for d in decisions} == {"continue"}
    assert [d.paused for d in decisions] == [False, False, False, True]
    assert p.failures == 0 and p.weight == 5


def test_progress_round_trips_and_ignores_unknown_keys():
    p = progress()
    decide(p, "pass", Policy())
    data = p.as_dict() | {"future_field": 1}
    assert Progress.from_dict(data) == p


@pytest.mark.parametrize("text", ["", "10,5", "0,50", "5,5,100", "5,abc", "50,101"])
def test_bad_steps(text):
    with pytest.raises(UsageError, match="steps must be"):
        parse_steps(text)


def test_steps_parse():
    assert parse_steps("5, 10,25,50,75,100") == (5, 10, 25, 50, 75, 100)
    assert parse_steps("20\n100") == (20, 100)
