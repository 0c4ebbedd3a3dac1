"""Drives a canary: set a weight, wait one window, analyse, decide; promote or roll back; always leave traffic safe.

Modes: ``step`` analyses one window and returns (for workflows that loop or gate by hand); ``run`` walks the
weights until promote, rollback or a pause. Both resume from the progress recorded on the canary Deployment.
``abort`` (``CanaryRun.abort``) returns all traffic to stable from any state with the failed canary's rollback.

Each window is judged with the evidence pooled over the whole canary (kept on the canary Deployment with the
progress, so step-mode runs pool too). A pause (inconclusive-limit reached) ends a ``run`` in phase ``paused``: the
weight is kept (``on-pause: keep``, said in the summary: live traffic on a canary that is not validated yet) or
traffic goes back to stable (``on-pause: stable``); a later run resumes either way.

Safety: everything after the router is built runs in ``try``; any exception, a cancel (SIGTERM/SIGINT ->
KeyboardInterrupt) or Prometheus going away routes all traffic back to stable (``finalize``) before the error
propagates, and the progress is kept (phase ``interrupted``) so a re-run resumes. Rollback sets the canary weight
to 0 first, then finalizes the routing, then scales the canary down. Cleanup (rollback, promotion, returning
traffic) runs with signals held (``Signals``): GitHub sends SIGINT then SIGTERM a few ms apart, and the second
must not cut the first one's cleanup short; held signals are noted, never lost.
"""
from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from llmops.canary import state
from llmops.canary.analysis import AnalysisConfig, Side, analyse, needed_templates
from llmops.canary.decision import Decision, Policy, Progress, decide, remember
from llmops.canary.kube import Kube, NotFound, canary_version_of, promote_stable
from llmops.canary.prom import Prometheus
from llmops.canary.routers import Target, get_router
from llmops.canary.selection import Selection, pin
from llmops.errors import InfraError, UsageError


@dataclass
class CanaryConfig:
    target: Target
    provider: str
    mode: str = "run"
    interval: float = 60.0
    policy: Policy = field(default_factory=Policy)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    canary_version: str = ""
    stable_version: str = ""
    version_label: str = ""  # pod label with the version; empty: kubectl-promote's record / MODEL_VERSION env
    container: str | None = None
    weight: int | None = None  # step mode: analyse this weight instead of the recorded one
    restart: bool = False
    rollout_timeout: float = 300.0
    selection: Selection | None = None  # metrics-preset / selectors (None: the built-in llmops templates)


class Signals:
    """SIGTERM/SIGINT during a run: the first one unwinds (KeyboardInterrupt) into the cleanup; every later one,
    and any one that arrives while ``cleanup()`` is active, is held so the cleanup completes."""

    def __init__(self) -> None:
        self.fired = False
        self.cleaning = 0
        self.held: list[int] = []
        self._old: dict = {}

    def _handler(self, signum, frame) -> None:
        if self.fired or self.cleaning:
            self.held.append(signum)
            return
        self.fired = True
        raise KeyboardInterrupt

    def __enter__(self) -> Signals:  # re-entrant: the script holds it around the run and the record
        self._depth = getattr(self, "_depth", 0) + 1
        if self._depth == 1 and threading.current_thread() is threading.main_thread():
            self._old = {s: signal.signal(s, self._handler) for s in (signal.SIGTERM, signal.SIGINT)}
        return self

    def __exit__(self, *exc) -> None:
        self._depth -= 1
        if self._depth:
            return
        for s, handler in self._old.items():
            signal.signal(s, handler)
        self._old = {}

    @contextlib.contextmanager
    def cleanup(self) -> Iterator[None]:
        self.cleaning += 1
        try:
            yield
        finally:
            self.cleaning -= 1


def versions(kube: Kube | None, cfg: CanaryConfig, *, check_exists: bool = True) -> dict[str, str]:
    """The model version of each side (reads the Deployments). When no template uses ``{version}`` (pod or
    explicit selection), a side without one is named by its Deployment and revision."""
    t = cfg.target
    found = {}
    uses = cfg.selection is None or cfg.selection.uses_version(needed_templates(cfg.analysis))
    for role, name, given in (("canary", t.canary, cfg.canary_version), ("stable", t.stable, cfg.stable_version)):
        if given and not check_exists:
            found[role] = given
            continue
        obj = kube.read_deployment(t.namespace, name)  # 404 -> exit 2 naming the Deployment
        found[role] = given or canary_version_of(obj, cfg.container, cfg.version_label)
        if not found[role] and not uses:
            rev = ((obj.get("metadata") or {}).get("annotations") or {}).get("deployment.kubernetes.io/revision")
            found[role] = f"{name}@{rev or obj['metadata'].get('generation', '')}"
        if not found[role]:
            where = (f"pod label {cfg.version_label!r}" if cfg.version_label else
                     "MODEL_VERSION env (or kubectl-promote's llmops.dev/model-version annotation)")
            raise UsageError(f"no {role} version: Deployment {t.namespace}/{name} has no {where}",
                             f"pass {role}-version (the model_version label its metrics carry) or version-label")
    if uses and found["canary"] == found["stable"]:
        raise UsageError(f"canary and stable both have version {found['canary']!r}; their metrics cannot be "
                         "told apart", "deploy the canary with its new version first")
    return found


class CanaryRun:
    def __init__(self, cfg: CanaryConfig, kube: Kube, prom: Prometheus | None, *,
                 sleep: Callable[[float], None] = time.sleep, log: Callable[[str], None] | None = None,
                 promoter: Callable[..., dict] = promote_stable):
        self.cfg, self.kube, self.prom, self.sleep, self.promoter = cfg, kube, prom, sleep, promoter
        self.log = log or (lambda text: print(text, file=sys.stderr, flush=True))
        self.router = get_router(cfg.provider, kube, cfg.target)  # unknown provider: UsageError, nothing touched
        self.windows: list[dict] = []
        self.actions: list[str] = []
        self.progress: Progress | None = None
        self.decision: Decision | None = None
        self.promotion: dict | None = None
        self.final_weight: int | None = None
        self.signals = Signals()

    # ------------------------------------------------------------------ setup
    def _versions(self) -> tuple[str, str]:
        found = versions(self.kube, self.cfg)
        return found["canary"], found["stable"]

    def _select(self) -> None:
        """Pin a mid-rollout Deployment's pods to its current ReplicaSet (reads only)."""
        sel, t = self.cfg.selection, self.cfg.target
        if sel is None:
            return
        sel, notes = pin(sel, self.kube, t.namespace, t.canary, t.stable)
        self.actions += notes
        self.cfg.selection = sel
        self.cfg.analysis = sel.analysis(self.cfg.analysis)

    def _load_progress(self, canary_version: str, stable_version: str) -> Progress:
        t, steps = self.cfg.target, list(self.cfg.policy.steps)
        old = None if self.cfg.restart else state.load(self.kube, t.namespace, t.canary)
        if old is None or old.canary_version != canary_version:
            return Progress(canary_version, stable_version, steps)
        if old.steps != steps:  # steps changed between runs: continue at the first step >= the recorded weight
            old.step_index = next((i for i, s in enumerate(steps) if s >= old.weight), len(steps) - 1)
            old.steps = steps
            old.step_requests = old.successes = 0
        if old.evidence and old.evidence.get("rules") != self.cfg.analysis.key():
            self.actions.append("limits or alpha changed since the last run: the pooled evidence starts again")
        self.actions.append(f"resumed at {old.weight}% (recorded phase {old.phase}, {old.windows} windows)")
        return old

    # -------------------------------------------------------------------- run
    def execute(self) -> str:
        """Run the canary; returns the decision (promote, continue, rollback)."""
        with self.signals:
            try:
                return self._execute()
            finally:
                if self.signals.held:
                    self.actions.append(f"{len(self.signals.held)} signal(s) held until traffic was safe")

    def _execute(self) -> str:
        t = self.cfg.target
        canary_version, stable_version = self._versions()
        self._select()
        self.progress = progress = self._load_progress(canary_version, stable_version)
        if progress.phase == "promoted":
            self.decision = Decision("promote", f"version {canary_version} was already promoted; nothing to do")
            return "promote"
        if progress.phase == "rolled_back":
            self.decision = Decision("rollback", f"version {canary_version} was already rolled back; deploy a new "
                                                 "version or pass restart: true to try it again")
            return "rollback"
        try:
            self.prom.check_online()  # before any traffic moves
            self.router.reconcile()
            while True:
                weight = self.cfg.weight if self.cfg.weight is not None else progress.weight
                self.router.set_routes(weight)
                self.final_weight = weight
                progress.phase = "progressing"
                state.save(self.kube, t.namespace, t.canary, progress)
                self.log(f"canary weight {weight}%: analysing {self.cfg.interval:g}s")
                self.sleep(self.cfg.interval)
                window = analyse(self.prom, self.cfg.analysis, Side(canary_version, t.canary),
                                 Side(stable_version, t.stable), t.namespace, self.cfg.interval, weight=weight,
                                 evidence=progress.evidence, min_requests=self.cfg.policy.min_requests)
                decision = decide(progress, window, self.cfg.policy)
                remember(progress, weight, window, decision)
                self.windows.append({**window, "outcome": decision.outcome, "reason": decision.reason,
                                     "decision": decision.action, "paused": decision.paused,
                                     "missing": list(decision.missing)})
                self.log(f"  {decision.outcome}: {decision.reason} -> {decision.action}")
                if decision.action == "rollback":
                    self._rollback()
                elif decision.action == "promote":
                    self._promote()
                elif decision.paused:
                    self._pause()
                elif self.cfg.mode == "run" and self.cfg.weight is None:
                    continue
                self.decision = decision
                state.save(self.kube, t.namespace, t.canary, progress)
                return decision.action
        except BaseException:
            with self.signals.cleanup():
                self._make_safe()
            raise

    def abort(self) -> str:
        """Mode abort: all traffic back to stable now, from any state, exactly as a failed canary's rollback does
        (weight 0, finalize the routing, scale the canary down; signals held), recorded as rolled back. Idempotent.
        Returns ``rollback``, or ``promote`` when this version was already promoted (the stable serves it)."""
        with self.signals, self.signals.cleanup():
            try:
                return self._abort()
            finally:
                if self.signals.held:
                    self.actions.append(f"{len(self.signals.held)} signal(s) held until traffic was safe")

    def _abort(self) -> str:
        t = self.cfg.target
        dep = self.kube.read_deployment(t.namespace, t.canary)  # 404 -> exit 2 naming the Deployment
        canary_version = self.cfg.canary_version or _version_or_empty(dep, self.cfg)
        old = state.load(self.kube, t.namespace, t.canary)
        if old is not None and (old.canary_version == canary_version or not canary_version):
            self.progress, was = old, f"was {old.phase} after {old.windows} window(s)"
        else:
            try:
                stable = self.cfg.stable_version or _version_or_empty(self.kube.read_deployment(t.namespace, t.stable),
                                                                      self.cfg)
            except NotFound:
                stable = ""
            self.progress, was = Progress(canary_version, stable, list(self.cfg.policy.steps)), "was never started"
        if self.progress.phase == "promoted":
            self.router.finalize()
            self.final_weight = 0
            self.decision = Decision("promote", f"version {canary_version} was already promoted: the stable "
                                                "serves it and takes all traffic; nothing to abort")
            return "promote"
        before = self.router.get_routes()
        self._rollback_now()
        self.progress.phase = "rolled_back"
        state.save(self.kube, t.namespace, t.canary, self.progress)
        left = self.router.get_routes()
        if left:
            raise InfraError(f"aborted, but the {self.router.route_kind} still sends {left}% to the canary",
                             "check who else edits the traffic object, then run mode abort again")
        self.decision = Decision("rollback", f"aborted by hand ({was}, canary weight was {before}%): all "
                                             "traffic is on stable and the canary is scaled to 0")
        return "rollback"

    def _pause(self) -> None:
        self.progress.phase = "paused"
        if self.cfg.policy.on_pause == "stable":
            with self.signals.cleanup():
                self.router.set_routes(0)
            self.final_weight = 0
            self.actions.append("paused: canary weight set to 0 (on-pause: stable); a later run resumes")
        else:
            self.actions.append(f"paused at {self.final_weight}% (on-pause: keep): live traffic stays on a canary "
                                "that is not validated yet; a later run resumes")

    def _rollback(self) -> None:
        with self.signals.cleanup():
            self._rollback_now()

    def _rollback_now(self) -> None:
        t = self.cfg.target
        try:
            self.router.set_routes(0)  # traffic first
            self.actions.append("canary weight set to 0")
        except NotFound:  # no canary route (never started, or already finalized): nothing carries canary traffic
            self.actions.append("canary weight already 0 (no canary route)")
        self.router.finalize()
        self.actions.append(f"{self.router.name} routing finalized (all traffic to stable)")
        self.kube.scale_deployment(t.namespace, t.canary, 0)
        self.actions.append(f"Deployment {t.canary} scaled to 0")
        self.final_weight = 0
        self.progress.phase = "rolled_back"

    def _promote(self) -> None:
        with self.signals.cleanup():
            self._promote_now()

    def _promote_now(self) -> None:
        t = self.cfg.target
        self.promotion = self.promoter(self.kube, t.namespace, t.stable, t.canary, container=self.cfg.container,
                                       timeout=self.cfg.rollout_timeout, log=self.log)
        self.actions.append(f"Deployment {t.stable} promoted to {self.progress.canary_version} through "
                            f"kubectl-promote ({self.promotion.get('image')})")
        self.router.finalize()
        self.actions.append(f"{self.router.name} routing finalized (all traffic to the promoted stable)")
        self.kube.scale_deployment(t.namespace, t.canary, 0)
        self.actions.append(f"Deployment {t.canary} scaled to 0")
        self.final_weight = 0
        self.progress.phase = "promoted"

    def _make_safe(self) -> None:
        """Route everything to stable and keep the progress for a re-run; never mask the original error."""
        t = self.cfg.target
        # Always, even when this run moved nothing yet: an earlier run may have left the canary at a weight, and
        # with the replicas provider a canary that is merely up already takes a share of the requests.
        try:
            self.router.finalize()
            self.final_weight = 0
            self.actions.append("interrupted: all traffic returned to stable")
        except BaseException as exc:  # noqa: BLE001 - report, then let the original error propagate
            self.actions.append(f"interrupted, and returning traffic to stable FAILED: {exc}")
            self.log(f"could not return traffic to stable: {exc}")
            return
        if self.progress is not None and self.progress.phase in ("progressing", "paused"):
            self.progress.phase = "interrupted"
            try:
                state.save(self.kube, t.namespace, t.canary, self.progress)
            except BaseException as exc:  # noqa: BLE001
                self.log(f"could not record the progress: {exc}")


def _version_or_empty(dep: dict, cfg: CanaryConfig) -> str:
    try:
        return canary_version_of(dep, cfg.container, cfg.version_label)
    except UsageError:  # abort works on a canary whatever its pods say
        return ""
