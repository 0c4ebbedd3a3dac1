"""The decision after each window (Argo Rollouts' rules): promote, continue or rollback, with the reason.

``Progress`` is what survives between windows and between runs (stored on the canary Deployment, see
llmops.canary.state): the step reached, failed windows so far, consecutive successes at this step, consecutive
inconclusive windows. ``decide`` is pure:

* ``fail``: one more failure; more than ``failure_limit`` failures in this canary -> ``rollback``
  (failure_limit 0 rolls back on the first failed window), else ``continue`` at the same weight.
* ``inconclusive`` (too little traffic / no data under on-no-data: wait): ``continue`` at the same weight; never
  a rollback. More than ``inconclusive_limit`` in a row at one weight (0 = no limit) pauses a ``run``: it stops
  with ``continue``, leaving the weight as it is, for a later run to resume.
* ``pass``: one more consecutive success; ``successes`` in a row advance to the next weight, and at the last
  weight -> ``promote``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from llmops.errors import UsageError

DEFAULT_STEPS = (5, 10, 25, 50, 75, 100)
HISTORY = 40  # windows kept on the object for the chart


@dataclass(frozen=True)
class Policy:
    steps: tuple[int, ...] = DEFAULT_STEPS
    failure_limit: int = 1
    successes: int = 1
    inconclusive_limit: int = 5


@dataclass
class Progress:
    canary_version: str
    stable_version: str
    steps: list[int]
    step_index: int = 0
    failures: int = 0
    successes: int = 0
    inconclusive: int = 0
    windows: int = 0
    phase: str = "progressing"  # progressing | interrupted | promoted | rolled_back
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
    advanced: bool = False
    paused: bool = False


def parse_steps(text: str | list) -> tuple[int, ...]:
    items = text if isinstance(text, list) else [p for p in str(text).replace("\n", ",").split(",") if p.strip()]
    try:
        steps = tuple(int(str(p).strip()) for p in items)
    except ValueError:
        raise UsageError(f"steps must be whole percentages separated by commas, got {text!r}",
                         "e.g. steps: 5,10,25,50,75,100") from None
    if not steps or any(not 1 <= s <= 100 for s in steps) or list(steps) != sorted(set(steps)):
        raise UsageError(f"steps must be increasing percentages from 1 to 100, got {text!r}",
                         "e.g. steps: 5,10,25,50,75,100")
    return steps


def decide(progress: Progress, outcome: str, policy: Policy) -> Decision:
    """Update ``progress`` for one window's outcome and say what to do."""
    progress.windows += 1
    weight = progress.weight
    if outcome == "fail":
        progress.failures += 1
        progress.successes = 0
        if progress.failures > policy.failure_limit:
            return Decision("rollback", f"{progress.failures} failed windows, more than failure-limit "
                                        f"{policy.failure_limit}")
        return Decision("continue", f"failed window {progress.failures} of at most {policy.failure_limit} "
                                    f"tolerated; staying at {weight}%")
    if outcome == "inconclusive":
        progress.inconclusive += 1
        paused = 0 < policy.inconclusive_limit < progress.inconclusive
        return Decision("continue", f"inconclusive window {progress.inconclusive} in a row at {weight}%"
                        + (f", more than inconclusive-limit {policy.inconclusive_limit}: pausing" if paused else
                           "; waiting"), paused=paused)
    if outcome != "pass":
        raise ValueError(f"unknown window outcome {outcome!r}")
    progress.inconclusive = 0
    progress.successes += 1
    if progress.successes < policy.successes:
        return Decision("continue", f"{progress.successes} of {policy.successes} consecutive successes at {weight}%")
    if progress.step_index >= len(progress.steps) - 1:
        return Decision("promote", f"passed the last step ({weight}%)")
    progress.step_index += 1
    progress.successes = 0
    return Decision("continue", f"passed at {weight}%; next weight {progress.weight}%", advanced=True)


def remember(progress: Progress, weight: int, window: dict, decision: Decision) -> None:
    """Append one window to the short history kept on the object (for the chart across step-mode runs)."""
    rates = window.get("error_rate") or {}
    progress.history.append({"weight": weight, "outcome": window.get("outcome"), "decision": decision.action,
                             "canary_error_rate": rates.get("canary"), "stable_error_rate": rates.get("stable"),
                             "canary_requests": (window.get("requests") or {}).get("canary"),
                             "time": window.get("time")})
    del progress.history[:-HISTORY]
