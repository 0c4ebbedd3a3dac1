"""The promotion entry point: change, wait, verify, and undo by ourselves when anything goes wrong after the change.

``promote(kube, options, outcome)`` runs the chosen strategy (``rolling`` here, ``blue-green`` in ``bluegreen``);
``rollback(kube, options, outcome)`` is the one-click rollback. ``outcome`` is filled as work proceeds, so the caller
can publish outputs even when an error or a cancellation (KeyboardInterrupt) ends the run. Failures after the change
become ``PromotionFailed`` (exit 1) naming the cause and the revision restored. Shared pieces for other steps (the
canary step): ``read_target``, ``write_change``, ``restore_revision``, ``deferred_signals``.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

from llmops.errors import CheckFailed, LLMOpsError
from llmops.k8s.change import ChangeSpec, apply_to_template, build_patch, current_version, diff_text, pick_container
from llmops.k8s.client import Kube, NotFound, retrying
from llmops.k8s.health import HealthSpec, wait_healthy
from llmops.k8s.lock import LOCK, TargetLock
from llmops.k8s.rollout import read_deployment, revision, undo, wait_for_rollout


class PromotionFailed(CheckFailed):
    """The change was made, then judged bad (and undone unless --no-rollback)."""


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
    lock_ttl: float | None = None
    scale_down_delay: float = 30.0
    replicas: int | None = None  # rolling: also scale to this many (e.g. a canary Deployment left at 0)
    cancel_grace: float = 5.0
    to_revision: int = 0
    log: Callable[[str], None] = print

    @property
    def ttl(self) -> float:
        budget = self.health.budget if self.health else 0.0
        return self.lock_ttl or (2 * self.timeout + budget + self.scale_down_delay + 120.0)


@dataclass
class Outcome:
    result: str = ""
    previous_version: str = ""
    new_version: str = ""
    revision: str = ""
    rolled_back: bool = False
    message: str = ""
    diff: str = ""
    steps: list[tuple[str, str]] = field(default_factory=list)

    def step(self, name: str, detail: str) -> None:
        self.steps.append((name, detail))

    def outputs(self) -> dict[str, object]:
        return {"previous-version": self.previous_version, "new-version": self.new_version,
                "revision": self.revision, "rolled-back": self.rolled_back}


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """Hold SIGTERM/SIGINT while a rollback is written, then deliver them (a cancel must not cut it in half)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    old = {s: signal.signal(s, lambda n, f: pending.append(n)) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        if pending:
            raise KeyboardInterrupt


def read_target(kube: Kube, name: str, kind: str = "deployment") -> dict:
    """Read a Deployment/Service; a 404 says whether the namespace or the object is missing and what exists."""
    try:
        if kind == "deployment":
            return read_deployment(kube, name)
        return kube.call(kube.core.read_namespaced_service, name, kube.namespace,
                         what=f"read service {kube.namespace}/{name}")
    except NotFound:
        pass
    try:
        kube.call(kube.core.read_namespace, kube.namespace, what=f"read namespace {kube.namespace}")
    except NotFound:
        raise NotFound(f"namespace {kube.namespace!r} does not exist", "set the namespace input") from None
    except LLMOpsError:  # no right to read namespaces (normal with a Role): fall through to listing
        pass
    try:
        fn = kube.apps.list_namespaced_deployment if kind == "deployment" else kube.core.list_namespaced_service
        items = kube.call(fn, kube.namespace, what=f"list {kind}s in {kube.namespace}").get("items") or []
        names = ", ".join(i["metadata"]["name"] for i in items) or "none"
    except LLMOpsError:
        names = "unknown (no permission to list)"
    raise NotFound(f"{kind} {name!r} not found in namespace {kube.namespace!r}; {kind}s there: {names}",
                   f"set the {kind} input to one of these, or the namespace input to where it lives")


def write_change(kube: Kube, name: str, change: ChangeSpec, *, replicas: int | None = None,
                 dry_run: bool = False, first: dict | None = None) -> dict:
    """Patch the Deployment (read-compute-write, resourceVersion-guarded, retried whole on 409/5xx from a fresh
    read; ``first``: an object just read, used for the first attempt)."""
    what = f"update deployment {kube.namespace}/{name}"
    given = [first] if first else []

    def attempt() -> dict:
        dep = given.pop() if given else read_deployment(kube, name)
        patch = build_patch(dep, change, f"deployment {kube.namespace}/{name}", replicas=replicas)
        extra = {"dry_run": "All"} if dry_run else {}
        return kube.call(kube.apps.patch_namespaced_deployment, name, kube.namespace, patch, retry=False,
                         _content_type="application/strategic-merge-patch+json", what=what, **extra)

    return retrying(attempt, what=what, attempts=kube.attempts, server=kube.server)


def restore_revision(kube: Kube, name: str, to_revision: int, *, timeout: float,
                     log: Callable[[str], None]) -> tuple[int, dict]:
    """kubectl rollout undo to ``to_revision`` (0: previous), then wait for it.

    Returns the revision whose template was restored and the Deployment afterwards (where, as with kubectl, that
    template is live again under a new revision number).
    """
    with deferred_signals():
        res = undo(kube, name, to_revision=to_revision, keep_annotations=frozenset({LOCK}))
    log(f"rolled back {kube.namespace}/{name} to revision {res.revision}"
        + (" (template already matched)" if res.skipped else ""))
    final = wait_for_rollout(kube, name, timeout=timeout, start=res.deployment, on_progress=log)
    return res.revision, final


def promote(kube: Kube, opts: Options, out: Outcome) -> Outcome:
    opts.change.validate()
    if opts.strategy == "blue-green":
        from llmops.k8s.bluegreen import promote_blue_green
        return promote_blue_green(kube, opts, out)
    name, where = opts.deployment, f"deployment {kube.namespace}/{opts.deployment}"
    dep = read_target(kube, name)
    pick_container(dep["spec"]["template"], opts.change.container, where)
    out.previous_version, out.new_version = current_version(dep, opts.change.container), opts.change.new_version
    if opts.dry_run:
        after = write_change(kube, name, opts.change, dry_run=True, first=dep)
        out.diff, out.result, out.revision = diff_text(dep, after, where), "dry-run", str(revision(dep))
        out.step("dry-run", "server-side dry run accepted the change; nothing was written")
        return out
    lock = TargetLock(kube, "deployment", name, ttl=opts.ttl, wait=opts.lock_wait, run=opts.change.run_url)
    dep = lock.acquire(first=dep)
    try:
        out.step("lock", f"took the lock on {where}")
        before = revision(dep)
        out.previous_version = current_version(dep, opts.change.container)
        same_replicas = opts.replicas is None or (dep["spec"].get("replicas") or 0) == opts.replicas
        if same_replicas and apply_to_template(dep["spec"]["template"], opts.change, where) == dep["spec"]["template"]:
            out.revision = str(before)
            out.step("change", f"{where} already runs {out.new_version}; nothing to roll out")
            if opts.health:
                wait_healthy(opts.health, log=opts.log)
                out.step("health", f"{opts.health.url} healthy")
            out.result = "pass"
            return out
        updated = write_change(kube, name, opts.change, first=dep, replicas=opts.replicas)
        out.step("change", f"{where}: {out.previous_version} -> {out.new_version} (was revision {before})")
        try:
            final = wait_for_rollout(kube, name, timeout=opts.timeout, start=updated, on_progress=opts.log)
            out.revision = str(revision(final))
            out.step("rollout", f"revision {out.revision} rolled out")
            if opts.health:
                report = wait_healthy(opts.health, log=opts.log)
                out.step("health", f"{opts.health.url} healthy after {report.attempts} tries")
        except BaseException as exc:  # noqa: BLE001 - anything after the change (cancel included) is undone
            _undo_after_failure(kube, opts, out, before, exc)
            raise
    finally:
        lock.release()
    out.result = "pass"
    return out


def _cause(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return "the step was cancelled"
    text = exc.message if isinstance(exc, LLMOpsError) else f"{type(exc).__name__}: {exc}"
    return text.rstrip(". ")


def _undo_after_failure(kube: Kube, opts: Options, out: Outcome, before: int, exc: BaseException) -> None:
    name, cause = opts.deployment, _cause(exc)
    out.step("failed", cause)
    if not opts.auto_rollback:
        out.message = f"{cause}; left as it is (--no-rollback): run with --rollback to restore revision {before}"
        raise PromotionFailed(out.message) from None
    cancelled = isinstance(exc, KeyboardInterrupt)
    try:
        restored, final = restore_revision(kube, name, before, log=opts.log,
                                           timeout=opts.cancel_grace if cancelled else opts.timeout)
    except (LLMOpsError, KeyboardInterrupt) as undo_exc:
        if cancelled and isinstance(undo_exc, CheckFailed):  # out of grace time: the undo is written, still going
            out.rolled_back, out.revision = True, str(before)
            out.step("rollback", f"revision {before} written; still rolling out when the step was cancelled")
            return
        out.message = (f"{cause}; the rollback to revision {before} ALSO failed: {_cause(undo_exc)}. The deployment "
                       f"is left mid-change: run kubectl-promote with --rollback")
        raise PromotionFailed(out.message) from None
    out.rolled_back, out.revision = True, str(revision(final))
    out.step("rollback", f"restored revision {restored} ({out.previous_version}), live as revision {out.revision}")
    if cancelled:
        return
    out.message = f"{cause}; rolled back to revision {restored} ({out.previous_version})"
    raise PromotionFailed(out.message, "see the rollout events: kubectl describe deployment " + name) from None


def rollback(kube: Kube, opts: Options, out: Outcome) -> Outcome:
    """The one-click rollback: previous (or ``to_revision``) revision; blue-green switches the Service back."""
    if opts.strategy == "blue-green":
        from llmops.k8s.bluegreen import rollback_blue_green
        return rollback_blue_green(kube, opts, out)
    name, where = opts.deployment, f"deployment {kube.namespace}/{opts.deployment}"
    dep = read_target(kube, name)
    out.previous_version = current_version(dep, opts.change.container)
    if opts.dry_run:
        res = undo(kube, name, to_revision=opts.to_revision, keep_annotations=frozenset({LOCK}), dry_run=True)
        out.diff, out.result, out.revision = diff_text(dep, res.deployment, where), "dry-run", str(res.revision)
        return out
    with TargetLock(kube, "deployment", name, ttl=opts.ttl, wait=opts.lock_wait, run=opts.change.run_url):
        out.step("lock", f"took the lock on {where}")
        restored, final = restore_revision(kube, name, opts.to_revision, timeout=opts.timeout, log=opts.log)
        out.new_version, out.revision, out.rolled_back = current_version(final, opts.change.container), \
            str(revision(final)), True
        out.step("rollback", f"{where} now runs revision {restored} ({out.new_version})")
        if opts.health:
            wait_healthy(replace(opts.health, expect_version=out.new_version or None), log=opts.log)
            out.step("health", f"{opts.health.url} healthy")
    out.result = "pass"
    return out
