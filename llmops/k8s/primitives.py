"""The read / write / lock / undo steps both promotion strategies (``rolling``, ``bluegreen``) are built from.

- ``read_target``: a Deployment or Service; a 404 says whether the namespace or the object is missing, and what
  exists there.
- ``write_change``: the promotion's strategic-merge patch, resourceVersion-guarded, retried whole from a fresh read.
- ``take_lock``: the Lease lock (``lock``), with the permission check done first and a takeover reported.
- ``Base`` / ``base_for``: what a failed promotion returns to: the revision live before it, or, after an
  interrupted run (the Lease's journal), the revision live before *that* run, found by pod-template-hash since
  ``rollout undo`` renumbers revisions.
- ``restore``: ``kubectl rollout undo`` to a Base with signals held while it is written.
- ``verify``: the health check, recording which proof showed the new version serves.
- ``deferred_signals``, ``cause``, ``PromotionFailed``.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from llmops.errors import CheckFailed, LLMOpsError
from llmops.k8s.change import ChangeSpec, build_patch, current_version
from llmops.k8s.client import Kube, NotFound
from llmops.k8s.health import HealthSpec, wait_healthy
from llmops.k8s.lock import TargetLock
from llmops.k8s.rbac import check_access
from llmops.k8s.rollout import UndoResult, pick_revision, read_deployment, replica_sets, revision, template_hash, undo

if TYPE_CHECKING:
    from llmops.k8s.promote import Options, Outcome


class PromotionFailed(CheckFailed):
    """The change was made, then judged bad (and undone unless --no-rollback)."""


@contextlib.contextmanager
def deferred_signals() -> Iterator[list[int]]:
    """Hold SIGTERM/SIGINT while something must not be cut in half (a rollback being written); a signal that came
    meanwhile is raised as KeyboardInterrupt when the block completes (not when it raised: its error wins)."""
    if threading.current_thread() is not threading.main_thread():
        yield []
        return
    pending: list[int] = []
    old = {s: signal.signal(s, lambda n, f: pending.append(n)) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield pending
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
    if pending:
        raise KeyboardInterrupt


def cause(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return "the step was cancelled"
    text = exc.message if isinstance(exc, LLMOpsError) else f"{type(exc).__name__}: {exc}"
    return text.rstrip(". ")


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

    return kube.retrying(attempt, what=what)


def take_lock(kube: Kube, opts: Options, out: Outcome, kind: str, name: str, *,
              patient: bool = False) -> tuple[TargetLock, dict | None]:
    """Check permissions (nothing is written when a verb is missing), take the Lease; returns it and the journal an
    interrupted earlier run left. ``patient`` (rollbacks): outwait a holder that stopped renewing."""
    out.step("access", check_access(kube, opts.strategy))
    lock = TargetLock(kube, kind, name, ttl=opts.lock_ttl, wait=opts.lock_wait, run=opts.change.run_url,
                      break_lock=opts.break_lock, patient=patient)
    journal = lock.acquire()
    if lock.took_over:
        out.warn(f"{kind} {kube.namespace}/{name}: took the lock over from {lock.took_over} "
                 f"({'break-lock' if opts.break_lock else 'it had stopped renewing it'})")
    out.step("lock", f"took the lock (Lease {kube.namespace}/{lock.lease}, {lock.ttl:g}s TTL, renewed every "
                     f"{lock.ttl / 3:g}s)")
    if journal:
        out.step("resume", f"an earlier run was interrupted while {journal.get('state')} "
                           f"{journal.get('from_version')} -> {journal.get('to_version')}; finishing it")
    return lock, journal


@dataclass(frozen=True)
class Base:
    """A revision to return to: its number now, its pod-template-hash, the version it runs."""

    revision: int
    hash: str
    version: str


def base_for(kube: Kube, dep: dict, journal: dict | None, container: str | None, *, current: bool) -> Base | None:
    """The revision a failure returns to: the journal's (an interrupted run's starting point), else the live one
    (``current``: the change is still to be written) or the one before it (the template already matches)."""
    rss = replica_sets(kube, dep)
    name = dep["metadata"]["name"]
    if journal and journal.get("deployment") == name and journal.get("from_hash"):
        rs = pick_revision(rss, to_hash=journal["from_hash"])
        if rs is not None:
            return Base(revision(rs), template_hash(rs), str(journal.get("from_version") or ""))
    if current:
        rs = next((r for r in rss if revision(r) == revision(dep)), None)
        return Base(revision(dep), template_hash(rs) if rs else "", current_version(dep, container))
    rs = pick_revision(rss)
    if rs is None:
        return None
    return Base(revision(rs), template_hash(rs), current_version({"spec": rs["spec"]}, container))


def journal_entry(state: str, name: str, base: Base | None, to_version: str, run: str) -> dict:
    return {"state": state, "deployment": name, "from_revision": base.revision if base else 0,
            "from_hash": base.hash if base else "", "from_version": base.version if base else "",
            "to_version": to_version, "run": run,
            "at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}


def restore(kube: Kube, name: str, base: Base, *, dry_run: bool = False) -> tuple[UndoResult, bool]:
    """``kubectl rollout undo`` to ``base`` (by hash when known), with signals held while it is written; returns
    the result and whether a cancel came meanwhile (the caller then stops waiting, leaving the undo in place)."""
    res = None
    try:
        with deferred_signals():
            res = undo(kube, name, to_revision=base.revision, to_hash=base.hash, dry_run=dry_run)
    except KeyboardInterrupt:
        if res is None:
            raise
        return res, True
    return res, False


def verify(health: HealthSpec, opts: Options, out: Outcome) -> None:
    """Health-check the new version; records which proof showed it serves."""
    report = wait_healthy(health, log=opts.log)
    out.proof = report.proof
    out.step("health", f"healthy after {report.attempts} tries: {report.proof}")
