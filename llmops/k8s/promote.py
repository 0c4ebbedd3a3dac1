"""Promotion as a strategy package: the options, the outcome, and the dispatch to a strategy by name.

``promote(kube, options, outcome)`` runs the chosen strategy's promotion, ``rollback(kube, options, outcome)`` its
one-click rollback: ``rolling`` (llmops.k8s.rolling: change the Deployment, wait like ``kubectl rollout status``,
verify, ``kubectl rollout undo`` on failure) or ``blue-green`` (llmops.k8s.bluegreen: update the idle colour,
verify, switch the Service). Both are built from llmops.k8s.primitives (read, write, lock, undo) and neither imports
this module at run time. ``outcome`` is filled as work proceeds, so the caller can publish outputs even when an error
or a cancellation (KeyboardInterrupt) ends the run. Failures after the change become ``PromotionFailed`` (exit 1)
naming the cause and what is live now; an API server that stays unreachable is an InfraError (exit 3) and a re-run
of the same command resumes from the Lease's journal.

Every default here is the one the CLI and action.yml show (a test checks them against each other).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from llmops.errors import UsageError
from llmops.k8s import bluegreen, rolling
from llmops.k8s.change import ChangeSpec
from llmops.k8s.client import Kube
from llmops.k8s.health import HealthSpec
from llmops.k8s.primitives import PromotionFailed

__all__ = ["STRATEGIES", "Options", "Outcome", "PromotionFailed", "promote", "rollback"]

# name -> (promote, rollback)
STRATEGIES: dict[str, tuple[Callable, Callable]] = {
    "rolling": (rolling.promote, rolling.rollback),
    "blue-green": (bluegreen.promote, bluegreen.rollback),
}


@dataclass
class Options:
    deployment: str
    change: ChangeSpec = field(default_factory=ChangeSpec)
    strategy: str = "rolling"
    service: str | None = None
    color_label: str = "color"
    timeout: float = 600.0
    health: HealthSpec | None = None
    auto_rollback: bool = True
    dry_run: bool = False
    lock_wait: float = 0.0
    lock_ttl: float = 30.0
    break_lock: bool = False
    scale_down_delay: float = 30.0
    replicas: int | None = None  # rolling: also scale to this many (e.g. a canary Deployment left at 0)
    cancel_grace: float = 5.0
    to_revision: int = 0
    log: Callable[[str], None] = print


@dataclass
class Outcome:
    result: str = ""
    previous_version: str = ""
    new_version: str = ""
    revision: str = ""
    rolled_back: bool = False
    message: str = ""
    diff: str = ""
    proof: str = ""  # how the new version was shown to serve (health body, /v1/models, smoke) or why it was not
    steps: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def step(self, name: str, detail: str) -> None:
        self.steps.append((name, detail))

    def warn(self, text: str) -> None:
        self.warnings.append(text)

    def outputs(self) -> dict[str, object]:
        return {"previous-version": self.previous_version, "new-version": self.new_version,
                "revision": self.revision, "rolled-back": self.rolled_back}


def _strategy(opts: Options) -> tuple[Callable, Callable]:
    try:
        return STRATEGIES[opts.strategy]
    except KeyError:
        raise UsageError(f"unknown strategy {opts.strategy!r}", f"use one of {', '.join(STRATEGIES)}") from None


def promote(kube: Kube, opts: Options, out: Outcome) -> Outcome:
    opts.change.validate()
    return _strategy(opts)[0](kube, opts, out)


def rollback(kube: Kube, opts: Options, out: Outcome) -> Outcome:
    """The one-click rollback: the version live before the last (or an interrupted) promotion; ``to_revision``
    picks a revision; blue-green switches the Service back."""
    return _strategy(opts)[1](kube, opts, out)
