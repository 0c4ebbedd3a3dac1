"""The rolling strategy: change the Deployment in place, wait like ``kubectl rollout status``, verify, undo on failure.

promote: read and check the container (dry run: the server-side dry run's diff, and stop), check permissions, take
the Lease, find the Base (what a failure returns to: the live revision, or the one an interrupted earlier run started
from), journal it on the Lease, write the change, wait, health-check, clear the journal. When the template already
matches (a re-run after a crash or an outage) nothing is written but the rollout is still waited for and verified,
and a failure is undone exactly as a first run would. Whatever goes wrong after the journal (a stalled rollout, a
failed check, a cancel) is undone to the Base; a second cancel while the undo rolls out leaves the undo in place and
says so. An API server that stays unreachable past the retry budget leaves everything as it is: exit 3, and the
journal lets a re-run (or ``--rollback``) finish the job.

rollback: the Base an interrupted promotion started from when the Lease has one, else ``to_revision`` or the
previous revision (kubectl rollout undo); wait; health-check the restored version.
"""
from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from llmops.errors import CheckFailed, InfraError, InputError, LLMOpsError
from llmops.k8s.change import ENV_URI, apply_to_template, current_version, diff_text, env_value, pick_container
from llmops.k8s.client import Kube
from llmops.k8s.lock import LockLost, TargetLock
from llmops.k8s.primitives import (
    Base,
    PromotionFailed,
    base_for,
    cause,
    deferred_signals,
    journal_entry,
    read_target,
    restore,
    take_lock,
    verify,
    write_change,
)
from llmops.k8s.rollout import (
    pick_revision,
    read_deployment,
    replica_sets,
    revision,
    template_hash,
    undo,
    wait_for_rollout,
)

if TYPE_CHECKING:
    from llmops.k8s.promote import Options, Outcome


def _warn_uri(dep: dict, opts: Options, out: Outcome, where: str) -> None:
    c = opts.change
    if c.model_version and not c.model_uri and c.version_via == "env":
        _, container = pick_container(dep["spec"]["template"], c.container, where)
        if env_value(container, ENV_URI):
            out.warn(f"{where} sets {ENV_URI}={env_value(container, ENV_URI)} and only --model-version changes: "
                     f"the pods keep loading that URI; pass --model-uri with the new version's")


def promote(kube: Kube, opts: Options, out: Outcome) -> Outcome:
    name, where = opts.deployment, f"deployment {kube.namespace}/{opts.deployment}"
    dep = read_target(kube, name)
    pick_container(dep["spec"]["template"], opts.change.container, where)
    out.previous_version, out.new_version = current_version(dep, opts.change.container), opts.change.new_version
    _warn_uri(dep, opts, out, where)
    if opts.dry_run:
        after = write_change(kube, name, opts.change, dry_run=True, first=dep, replicas=opts.replicas)
        out.diff, out.result, out.revision = diff_text(dep, after, where), "dry-run", str(revision(dep))
        out.step("dry-run", "server-side dry run accepted the change; nothing was written")
        return out
    lock, journal = take_lock(kube, opts, out, "deployment", name)
    try:
        dep = read_deployment(kube, name)
        same_replicas = opts.replicas is None or (dep["spec"].get("replicas") or 0) == opts.replicas
        same = same_replicas and apply_to_template(dep["spec"]["template"], opts.change, where) == \
            dep["spec"]["template"]
        base = base_for(kube, dep, journal, opts.change.container, current=not same)
        if base:
            out.previous_version = base.version
        lock.record(journal_entry("promoting", name, base, out.new_version, opts.change.run_url))
        if same:
            updated = dep
            out.step("change", f"{where} already runs {out.new_version} (revision {revision(dep)}): waiting for its "
                               "rollout and checking it as a first run would")
        else:
            updated = write_change(kube, name, opts.change, first=dep, replicas=opts.replicas)
            out.step("change", f"{where}: {out.previous_version} -> {out.new_version} (was revision {revision(dep)})")
        try:
            final = wait_for_rollout(kube, name, timeout=opts.timeout, start=updated, on_progress=opts.log)
            out.revision = str(revision(final))
            out.step("rollout", f"revision {out.revision} rolled out")
            if opts.health:
                verify(opts.health, opts, out)
        except BaseException as exc:  # noqa: BLE001 - anything after the change (cancel included) is undone
            _undo_after_failure(kube, opts, out, lock, base, exc)
            raise
        _clear(lock, out)
    finally:
        lock.release()
    out.result = "pass"
    return out


def _clear(lock: TargetLock, out: Outcome) -> None:
    try:
        with deferred_signals():
            lock.record(None)
    except LLMOpsError as exc:
        out.warn(f"could not clear the promotion journal on Lease {lock.lease}: {exc.message}")


def _undo_after_failure(kube: Kube, opts: Options, out: Outcome, lock: TargetLock, base: Base | None,
                        exc: BaseException) -> None:
    name, why = opts.deployment, cause(exc)
    out.step("failed", why)
    before = f"revision {base.revision} ({base.version})" if base else "the previous revision"
    if isinstance(exc, InfraError):
        reason = "another run holds the lock now" if isinstance(exc, LockLost) else \
            "the API server could not be reached"
        out.message = (f"{why}. Nothing was undone: {reason}. Lease {kube.namespace}/{lock.lease} remembers that "
                       f"{before} was live")
        raise InfraError(out.message, "when the API server is back, run the same command again (it waits for the "
                                      "rollout, checks it and rolls back if it is bad), or run it with rollback: "
                                      f"true to restore {before}") from None
    if not opts.auto_rollback:
        out.message = f"{why}; left as it is (--no-rollback): run with --rollback to restore {before}"
        raise PromotionFailed(out.message) from None
    if base is None:
        out.message = f"{why}; deployment {kube.namespace}/{name} has no earlier revision to roll back to"
        raise PromotionFailed(out.message) from None
    cancelled = isinstance(exc, KeyboardInterrupt)
    try:
        try:
            with deferred_signals():
                lock.record(journal_entry("rolling-back", name, base, out.new_version, opts.change.run_url))
        except KeyboardInterrupt:
            pass  # written whole; the undo below is what must happen next
        res, again = restore(kube, name, base)
    except LLMOpsError as undo_exc:
        out.message = (f"{why}; the rollback to {before} ALSO failed: {cause(undo_exc)}. Run kubectl-promote with "
                       f"rollback: true: it restores {before} (recorded on Lease {kube.namespace}/{lock.lease})")
        raise (InfraError if isinstance(undo_exc, InfraError) else PromotionFailed)(out.message) from None
    out.rolled_back, out.revision = True, str(res.live_revision)
    left = (f"the rollback to {before} is written (live as revision {out.revision}) and left in place, still "
            "rolling out")
    if again:
        out.step("rollback", left + " when the step was cancelled again")
        raise KeyboardInterrupt
    try:
        final = wait_for_rollout(kube, name, timeout=opts.cancel_grace if cancelled else opts.timeout,
                                 start=res.deployment, on_progress=opts.log)
    except KeyboardInterrupt:
        out.step("rollback", left + " when the step was cancelled again")
        raise
    except LLMOpsError as wait_exc:
        if cancelled and isinstance(wait_exc, CheckFailed):  # out of grace time: the undo is written, still going
            out.step("rollback", left + " when the step was cancelled")
            return
        out.message = f"{why}; rolled back to {before}, which did not finish rolling out either: {cause(wait_exc)}"
        raise PromotionFailed(out.message, f"kubectl describe deployment {name}; rollback: true re-checks it") \
            from None
    out.revision = str(revision(final) or out.revision)
    _clear(lock, out)
    out.step("rollback", f"rolled back to {before}, live as revision {out.revision}")
    if cancelled:
        return
    out.message = f"{why}; rolled back to {before}"
    raise PromotionFailed(out.message, "see the rollout events: kubectl describe deployment " + name) from None


def _rollback_base(kube: Kube, dep: dict, journal: dict | None, opts: Options) -> tuple[Base, str]:
    """What rollback mode restores, and why."""
    name, container = opts.deployment, opts.change.container
    rss = replica_sets(kube, dep)
    if journal and journal.get("deployment") == name and journal.get("from_hash") and not opts.to_revision:
        rs = pick_revision(rss, to_hash=journal["from_hash"])
        if rs is not None:
            return (Base(revision(rs), template_hash(rs), current_version({"spec": rs["spec"]}, container)),
                    f"the version live before the interrupted promotion to {journal.get('to_version')}")
    rs = pick_revision(rss, opts.to_revision)
    if rs is None:
        if opts.to_revision:
            raise InputError(f"deployment {kube.namespace}/{name} has no revision {opts.to_revision}",
                             "list revisions with: kubectl rollout history deployment/" + name)
        raise InputError(f"deployment {kube.namespace}/{name} has no previous revision to roll back to")
    why = f"revision {opts.to_revision}" if opts.to_revision else "the previous revision"
    return Base(revision(rs), template_hash(rs), current_version({"spec": rs["spec"]}, container)), why


def rollback(kube: Kube, opts: Options, out: Outcome) -> Outcome:
    name, where = opts.deployment, f"deployment {kube.namespace}/{opts.deployment}"
    dep = read_target(kube, name)
    out.previous_version = current_version(dep, opts.change.container)
    if opts.dry_run:
        res = undo(kube, name, to_revision=opts.to_revision, dry_run=True)
        out.diff, out.result, out.revision = diff_text(dep, res.deployment, where), "dry-run", str(res.live_revision)
        out.new_version = current_version(res.deployment, opts.change.container)
        return out
    lock, journal = take_lock(kube, opts, out, "deployment", name, patient=True)
    try:
        dep = read_deployment(kube, name)
        base, why = _rollback_base(kube, dep, journal, opts)
        with deferred_signals():
            lock.record(journal_entry("rolling-back", name, base, base.version, opts.change.run_url))
        res, again = restore(kube, name, base)
        out.new_version, out.rolled_back, out.revision = base.version, True, str(res.live_revision)
        out.step("rollback", f"{where}: restoring {why}, revision {base.revision} ({base.version})"
                 + (" (its template was already live)" if res.skipped else f", live as revision {out.revision}"))
        if again:
            raise KeyboardInterrupt
        final = wait_for_rollout(kube, name, timeout=opts.timeout, start=res.deployment, on_progress=opts.log)
        out.revision = str(revision(final))
        if opts.health:
            verify(replace(opts.health, expect_version=base.version or None), opts, out)
        _clear(lock, out)
    finally:
        lock.release()
    out.result = "pass"
    return out
