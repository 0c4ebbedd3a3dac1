"""Blue-green promotion: two Deployments ``<name>-blue`` / ``<name>-green`` behind one Service whose selector picks
the live colour by a label (default ``color``).

Promote: update the idle colour's Deployment (new version, as many replicas as the live one), wait for its rollout,
health-check it (``{color}`` in the health URL is replaced by the idle colour), then switch the Service selector.
The old colour stays scaled for ``scale-down-delay`` seconds while the new one keeps being probed: a failure there
switches the Service straight back. A failure before the switch never touches the Service; the idle Deployment is
restored (template revision and replica count). Rollback mode switches the Service to the other colour, scaling it
up first when it was scaled down; after an interrupted promotion that never switched (the Lease's journal says so
and the Service still selects the colour that was live) it restores the idle colour instead and leaves the Service
as it is. The lock is the Service's Lease.
"""
from __future__ import annotations

import dataclasses
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from llmops.errors import InputError, UsageError
from llmops.k8s.annotations import ACTIVE_COLOR, MODEL_VERSION, PREVIOUS_COLOR, SWITCHED_AT
from llmops.k8s.change import current_version, diff_text, pick_container
from llmops.k8s.client import Kube
from llmops.k8s.health import HealthSpec, check_once
from llmops.k8s.primitives import PromotionFailed, cause, deferred_signals, read_target, take_lock, verify, write_change
from llmops.k8s.rollout import read_deployment, replica_sets, revision, template_hash, undo, wait_for_rollout

if TYPE_CHECKING:
    from llmops.k8s.promote import Options, Outcome

COLORS = ("blue", "green")
MERGE = "application/merge-patch+json"


def _health(opts: Options, color: str) -> HealthSpec | None:
    return dataclasses.replace(opts.health, url=opts.health.url.replace("{color}", color)) if opts.health else None


def _layout(kube: Kube, opts: Options) -> tuple[dict, str, str]:
    """(Service, live colour, idle colour), checked."""
    svc_name = opts.service or opts.deployment
    svc = read_target(kube, svc_name, "service")
    selector = (svc.get("spec") or {}).get("selector") or {}
    live = selector.get(opts.color_label)
    if live not in COLORS:
        raise UsageError(f"service {kube.namespace}/{svc_name} selects {opts.color_label}={live!r}; blue-green needs "
                         f"{opts.color_label}=blue or {opts.color_label}=green in its selector",
                         "set up the Service and the two Deployments as in deploy/bluegreen.yaml")
    idle = COLORS[1 - COLORS.index(live)]
    return svc, live, idle


def _deployment(kube: Kube, opts: Options, color: str) -> dict:
    name = f"{opts.deployment}-{color}"
    dep = read_target(kube, name)
    labels = ((dep["spec"]["template"].get("metadata") or {}).get("labels")) or {}
    if labels.get(opts.color_label) != color:
        raise UsageError(f"deployment {kube.namespace}/{name}'s pods are labelled {opts.color_label}="
                         f"{labels.get(opts.color_label)!r}, not {color}: the Service could not tell colours apart",
                         "label the pod template as in deploy/bluegreen.yaml")
    return dep


def _scale(kube: Kube, name: str, replicas: int, dry_run: bool = False) -> dict:
    return kube.call(kube.apps.patch_namespaced_deployment, name, kube.namespace, {"spec": {"replicas": replicas}},
                     _content_type=MERGE, what=f"scale deployment {kube.namespace}/{name} to {replicas}",
                     **({"dry_run": "All"} if dry_run else {}))


def switch_service(kube: Kube, svc_name: str, label: str, to: str, frm: str, version: str,
                   dry_run: bool = False) -> dict:
    """Point the Service at colour ``to`` (resourceVersion-guarded, retried whole on 409)."""
    what = f"switch service {kube.namespace}/{svc_name} to {to}"

    def attempt() -> dict:
        svc = kube.call(kube.core.read_namespaced_service, svc_name, kube.namespace,
                        what=f"read service {kube.namespace}/{svc_name}")
        body = {"metadata": {"resourceVersion": svc["metadata"]["resourceVersion"], "annotations": {
                    ACTIVE_COLOR: to, PREVIOUS_COLOR: frm, MODEL_VERSION: version,
                    SWITCHED_AT: datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}},
                "spec": {"selector": {label: to}}}
        extra = {"dry_run": "All"} if dry_run else {}
        return kube.call(kube.core.patch_namespaced_service, svc_name, kube.namespace, body, retry=False,
                         _content_type=MERGE, what=what, **extra)

    with deferred_signals():
        return kube.retrying(attempt, what=what)


def _watch_after_switch(opts: Options, health: HealthSpec | None) -> str | None:
    """Keep probing the new colour during the scale-down delay; a problem seen twice in a row is returned."""
    if opts.scale_down_delay <= 0:
        return None
    end = time.monotonic() + opts.scale_down_delay
    if health is None:
        time.sleep(opts.scale_down_delay)
        return None
    import requests

    failures = 0
    with requests.Session() as session:
        while time.monotonic() < end:
            problem, _ = check_once(session, health)
            failures = failures + 1 if problem else 0
            if failures >= 2:
                return problem
            time.sleep(max(0.0, min(health.interval, end - time.monotonic())))
    return None


def _restore_idle(kube: Kube, opts: Options, name: str, before_rev: int, before_replicas: int,
                  before_hash: str = "") -> str:
    with deferred_signals():
        res = undo(kube, name, to_revision=before_rev, to_hash=before_hash) if before_rev else None
        dep = _scale(kube, name, before_replicas)
    wait_for_rollout(kube, name, timeout=min(opts.timeout, 60.0), start=dep, on_progress=opts.log)
    return f"{name} restored to revision {res.revision if res else before_rev}, {before_replicas} replicas"


def _journal(kube: Kube, dep: dict, live: str, idle: str, out: Outcome, run: str) -> dict:
    rs = next((r for r in replica_sets(kube, dep) if revision(r) == revision(dep)), None)
    return {"state": "promoting", "strategy": "blue-green", "live": live, "idle": idle,
            "deployment": dep["metadata"]["name"], "from_revision": revision(dep),
            "from_hash": template_hash(rs) if rs else "", "from_replicas": dep["spec"].get("replicas", 0),
            "from_version": out.previous_version, "to_version": out.new_version, "run": run,
            "at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}


def promote(kube: Kube, opts: Options, out: Outcome) -> Outcome:
    svc, live, idle = _layout(kube, opts)
    svc_name = svc["metadata"]["name"]
    live_dep, idle_dep = _deployment(kube, opts, live), _deployment(kube, opts, idle)
    idle_name = idle_dep["metadata"]["name"]
    pick_container(idle_dep["spec"]["template"], opts.change.container, f"deployment {idle_name}")
    replicas = live_dep["spec"].get("replicas", 1)
    out.previous_version, out.new_version = current_version(live_dep, opts.change.container), opts.change.new_version
    if opts.dry_run:
        after = write_change(kube, idle_name, opts.change, replicas=replicas, dry_run=True)
        svc_after = switch_service(kube, svc_name, opts.color_label, idle, live, out.new_version, dry_run=True)
        out.diff = diff_text(idle_dep, after, f"deployment/{idle_name}") + diff_text(svc, svc_after,
                                                                                       f"service/{svc_name}")
        out.result, out.revision = "dry-run", str(revision(idle_dep))
        return out
    lock, _ = take_lock(kube, opts, out, "service", svc_name)
    try:
        out.step("live", f"service {kube.namespace}/{svc_name} selects {live}")
        idle_dep = read_deployment(kube, idle_name)
        before_rev, before_replicas = revision(idle_dep), idle_dep["spec"].get("replicas", 0)
        journal = _journal(kube, idle_dep, live, idle, out, opts.change.run_url)
        lock.record(journal)
        updated = write_change(kube, idle_name, opts.change, replicas=replicas)
        out.step("change", f"{idle_name}: {out.new_version}, {replicas} replicas")
        health = _health(opts, idle)
        try:
            final = wait_for_rollout(kube, idle_name, timeout=opts.timeout, start=updated, on_progress=opts.log)
            out.revision = str(revision(final))
            if health:
                verify(health, opts, out)
        except BaseException as exc:  # noqa: BLE001 - undo the idle colour; the Service was never touched
            why = cause(exc)
            out.step("failed", why)
            if opts.auto_rollback:
                out.step("rollback", _restore_idle(kube, opts, idle_name, before_rev, before_replicas,
                                                   journal["from_hash"]))
                out.rolled_back = True
                lock.record(None)
            if isinstance(exc, KeyboardInterrupt):
                raise
            out.message = f"{why}; the Service still points at {live} ({out.previous_version})"
            raise PromotionFailed(out.message) from None
        switch_service(kube, svc_name, opts.color_label, idle, live, out.new_version)
        out.step("switch", f"service {svc_name} now selects {opts.color_label}={idle}")
        try:
            problem = _watch_after_switch(opts, health)
        except KeyboardInterrupt:
            switch_service(kube, svc_name, opts.color_label, live, idle, out.previous_version)
            out.rolled_back = True
            lock.record(None)
            raise
        if problem:
            switch_service(kube, svc_name, opts.color_label, live, idle, out.previous_version)
            out.rolled_back = True
            lock.record(None)
            out.message = (f"{idle} failed after the switch ({problem}); switched the Service back to {live} "
                           f"({out.previous_version})")
            raise PromotionFailed(out.message, f"{idle_name} is left scaled up for inspection")
        live_name = live_dep["metadata"]["name"]
        _scale(kube, live_name, 0)
        out.step("scale-down", f"{live_name} scaled to 0")
        lock.record(None)
    finally:
        lock.release()
    out.result = "pass"
    return out


def rollback(kube: Kube, opts: Options, out: Outcome) -> Outcome:
    if opts.to_revision:
        raise UsageError("--to-revision applies to rolling deployments; blue-green rollback switches colours",
                         "drop to-revision")
    svc, live, other = _layout(kube, opts)
    svc_name = svc["metadata"]["name"]
    live_dep, other_dep = _deployment(kube, opts, live), _deployment(kube, opts, other)
    other_name = other_dep["metadata"]["name"]
    out.previous_version, out.new_version = (current_version(live_dep, opts.change.container),
                                             current_version(other_dep, opts.change.container))
    want = live_dep["spec"].get("replicas", 1)
    scale_up = other_dep["spec"].get("replicas", 0) < want
    if opts.dry_run:
        svc_after = switch_service(kube, svc_name, opts.color_label, other, live, out.new_version, dry_run=True)
        out.diff, out.result = diff_text(svc, svc_after, f"service/{svc_name}"), "dry-run"
        if scale_up:
            out.diff += diff_text(other_dep, _scale(kube, other_name, want, dry_run=True), f"deployment/{other_name}")
        return out
    lock, journal = take_lock(kube, opts, out, "service", svc_name, patient=True)
    try:
        if journal and journal.get("strategy") == "blue-green" and journal.get("live") == live:
            # an interrupted promotion never switched: what was live still is; put the idle colour back
            idle = journal["deployment"]
            out.new_version, out.previous_version = out.previous_version, journal.get("to_version", "")
            with deferred_signals():
                lock.record(dict(journal, state="rolling-back"))
            out.step("rollback", _restore_idle(kube, opts, idle, int(journal.get("from_revision") or 0),
                                               int(journal.get("from_replicas") or 0), journal.get("from_hash", "")))
            out.step("switch", f"service {svc_name} still selects {live} ({out.new_version}); nothing to switch")
            out.rolled_back, out.revision = True, str(revision(read_deployment(kube, live_dep["metadata"]["name"])))
            lock.record(None)
            out.result = "pass"
            return out
        start = _scale(kube, other_name, want) if scale_up else None
        final = wait_for_rollout(kube, other_name, timeout=opts.timeout, start=start, on_progress=opts.log)
        if not final["spec"].get("replicas"):
            raise InputError(f"{other_name} has no replicas to switch to")
        health = _health(opts, other)
        if health:
            verify(dataclasses.replace(health, expect_version=out.new_version or None), opts, out)
        switch_service(kube, svc_name, opts.color_label, other, live, out.new_version)
        out.rolled_back, out.revision = True, str(revision(final))
        out.step("switch", f"service {svc_name} switched back to {other} ({out.new_version})")
        if opts.scale_down_delay > 0:
            time.sleep(opts.scale_down_delay)
        _scale(kube, live_dep["metadata"]["name"], 0)
        if journal:
            lock.record(None)
    finally:
        lock.release()
    out.result = "pass"
    return out
