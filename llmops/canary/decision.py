"""The decision after each window: promote, continue or rollback, with the reason, from the pooled evidence.

``Progress`` is what survives between windows and between runs (stored on the canary Deployment, see
llmops.canary.state): the step reached, the evidence pooled over every window of this canary version
(llmops.canary.sequential states, all weights), the canary requests and windows at the current step, failed gauge
windows, consecutive waiting windows. ``decide`` is pure. Given one judged window (llmops.canary.judge):

* **fail -> rollback** as soon as a pooled sequential test shows the canary worse (its alpha covers every look, so
  there is nothing to tolerate); a failed gauge window (cost, quality) or a check with no data under
  ``on-no-data: fail`` is one more failed window, and more than ``failure_limit`` of them roll back.
* **pass -> advance** when the step has what it needs: at least ``min_requests`` canary requests served at this
  weight (over as many windows as it takes), at least ``successes`` windows at it, and, to leave the step before a
  final 100 % (where the stable serves nothing to compare with) or to promote at a last step below 100 %, every
  relative test *accepted*: the canary shown less than (1 + detect) x worse than stable, or nothing to compare
  (no events on either side). At the last step: promote.
* **inconclusive -> wait** otherwise, at the same weight, saying what is missing ("about N more canary requests
  at 5 %"). More than ``inconclusive_limit`` waiting windows in a row at one weight (0 = no limit) is a *pause*:
  a ``run`` stops in phase ``paused`` (traffic kept or returned to stable, as ``on_pause`` says); the budget
  starts again when a run resumes. A step never advances on an exhausted budget: exposure without evidence is
  how a bad canary reaches everyone.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from llmops.errors import UsageError
from llmops.inputs import split_list

DEFAULT_STEPS = (5, 10, 25, 50, 75, 100)
HISTORY = 40  # windows kept on the object for the chart
PAUSE_ACTIONS = ("keep", "stable")


@dataclass(frozen=True)
class Policy:
    steps: tuple[int, ...] = DEFAULT_STEPS
    failure_limit: int = 1
    successes: int = 1
    inconclusive_limit: int = 5
    min_requests: int = 50
    on_pause: str = "keep"  # keep the weight, or return traffic to stable (progress kept for a resume)


@dataclass
class Progress:
    canary_version: str
    stable_version: str
    steps: list[int]
    step_index: int = 0
    failures: int = 0
    successes: int = 0  # windows at this step
    inconclusive: int = 0
    windows: int = 0
    step_requests: int = 0  # canary requests at this step
    phase: str = "progressing"  # progressing | paused | interrupted | promoted | rolled_back
    evidence: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)

    @property
    def weight(self) -> int:
        return self.steps[min(self.step_index, len(self.steps) - 1)]

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Progress:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


@dataclass(frozen=True)
class Decision:
    action: str  # promote | continue | rollback
    reason: str
    outcome: str = "pass"  # pass | fail | inconclusive (the window's)
    advanced: bool = False
    paused: bool = False
    missing: tuple[str, ...] = ()


def parse_steps(text: str | list) -> tuple[int, ...]:
    items = text if isinstance(text, list) else split_list(text)
    try:
        steps = tuple(int(str(p).strip()) for p in items)
    except ValueError:
        raise UsageError(f"steps must be whole percentages separated by commas, got {text!r}",
                         "e.g. steps: 5,10,25,50,75,100") from None
    if not steps or any(not 1 <= s <= 100 for s in steps) or list(steps) != sorted(set(steps)):
        raise UsageError(f"steps must be increasing percentages from 1 to 100, got {text!r}",
                         "e.g. steps: 5,10,25,50,75,100")
    return steps


def needs_acceptance(progress: Progress) -> bool:
    """Leaving this step needs every relative test accepted: the last step (promotion), or the step before a
    final 100 % (at 100 % nothing can be compared any more)."""
    last = len(progress.steps) - 1
    return progress.step_index >= last or (progress.step_index == last - 1 and progress.steps[-1] == 100)


def decide(progress: Progress, judged: dict, policy: Policy) -> Decision:
    """Update ``progress`` for one judged window and say what to do."""
    progress.windows += 1
    weight = progress.weight
    checks = judged["checks"]
    rejected = [c for c in checks if c["kind"] == "sequential" and c["outcome"] == "fail"]
    if rejected:
        return Decision("rollback", "; ".join(f"{c['name']}: {c['reason']}" for c in rejected), "fail")
    failed = [c for c in checks if c["counts_as"] == "fail"]
    if failed:
        progress.failures += 1
        why = "; ".join(f"{c['name']}: {c['reason']}" for c in failed)
        if progress.failures > policy.failure_limit:
            return Decision("rollback", f"{why}; {progress.failures} failed windows, more than failure-limit "
                                        f"{policy.failure_limit}", "fail")
        return Decision("continue", f"{why}; failed window {progress.failures} of at most "
                                    f"{policy.failure_limit} tolerated; staying at {weight}%", "fail")
    n_c = judged["requests"]["canary"] or 0
    progress.step_requests += n_c
    progress.successes += 1
    missing = []
    if not judged.get("measured", True):
        missing.append("a canary requests series (none yet: no traffic, or labels that do not match)")
    if progress.step_requests < policy.min_requests:
        missing.append(f"{policy.min_requests - progress.step_requests} more canary requests at {weight}% "
                       f"(min-requests {policy.min_requests} per step)")
    if progress.successes < policy.successes:
        missing.append(f"{policy.successes - progress.successes} more windows at {weight}% (successes)")
    missing += [f"data for {c['name']} ({c['reason']}; on-no-data: wait)" for c in checks if c["counts_as"] == "wait"]
    if needs_acceptance(progress):
        for c in checks:
            if not c.get("accepted", True):
                n = c.get("to_accept")
                more = (f"about {n} more canary requests at {weight}%" if n else
                        f"evidence that cannot be gained at {weight}%")
                missing.append(f"{more} to show {c['name']} less than {c['evidence']['relative']['detect']:.0%} "
                               "worse than stable")
    if missing:
        progress.inconclusive += 1
        paused = 0 < policy.inconclusive_limit < progress.inconclusive
        if paused:
            progress.inconclusive = 0  # a resumed run gets a fresh budget
        return Decision("continue", f"waiting at {weight}% for " + "; ".join(missing)
                        + (f"; more than inconclusive-limit {policy.inconclusive_limit} windows: pausing"
                           if paused else ""), "inconclusive", paused=paused, missing=tuple(missing))
    progress.inconclusive = 0
    if progress.step_index >= len(progress.steps) - 1:
        return Decision("promote", f"passed the last step ({weight}%) with the pooled evidence of "
                                   f"{progress.windows} windows")
    progress.step_index += 1
    progress.successes = 0
    progress.step_requests = 0
    return Decision("continue", f"passed at {weight}%; next weight {progress.weight}%", advanced=True)


def remember(progress: Progress, weight: int, window: dict, decision: Decision) -> None:
    """Append one window to the short history kept on the object (for the chart across step-mode runs)."""
    rates = window.get("error_rate") or {}
    progress.history.append({"weight": weight, "outcome": decision.outcome, "decision": decision.action,
                             "canary_error_rate": rates.get("canary"), "stable_error_rate": rates.get("stable"),
                             "canary_requests": (window.get("requests") or {}).get("canary"),
                             "time": window.get("time")})
    del progress.history[:-HISTORY]
