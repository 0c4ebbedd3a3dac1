"""Deployment rollouts with kubectl's exact semantics: status, waiting (a watch, not a sleep loop) and undo.

- ``rollout_status(deployment)`` is kubectl's DeploymentStatusViewer.Status: generation vs observedGeneration, the
  Progressing condition's ``ProgressDeadlineExceeded`` reason, updated / old / available replica counts.
- ``wait_for_rollout`` watches the one Deployment (field selector on its name) from the resourceVersion last seen,
  re-establishes the watch when the server ends it (``timeout_seconds``) or answers 410 Gone (re-read, then watch
  from the fresh version), and stops at the first event that completes or fails the rollout.
- ``undo`` is ``kubectl rollout undo [--to-revision N]``: the chosen ReplicaSet's pod template minus the
  pod-template-hash label, and the Deployment's annotations rebuilt from that ReplicaSet's (kubectl's skip-list
  kept from the Deployment), as one JSON patch guarded by the resourceVersion it was computed from.
"""
from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from llmops.errors import CheckFailed, InputError, UsageError
from llmops.k8s.client import Kube, api_error, backoff_delay, is_connection_error

REVISION = "deployment.kubernetes.io/revision"
TIMED_OUT_REASON = "ProgressDeadlineExceeded"
HASH_LABEL = "pod-template-hash"
# kubectl rollout undo: annotations taken from the Deployment, never from the ReplicaSet (rollback.go)
SKIP_ANNOTATIONS = frozenset({
    "kubectl.kubernetes.io/last-applied-configuration", REVISION, "deployment.kubernetes.io/revision-history",
    "deployment.kubernetes.io/desired-replicas", "deployment.kubernetes.io/max-replicas",
    "deprecated.deployment.rollback.to",
})


class RolloutFailed(CheckFailed):
    """The rollout cannot finish: progress deadline exceeded, or our own timeout ran out."""

    def __init__(self, message: str, hint: str | None = None, *, reason: str = "failed"):
        super().__init__(message, hint)
        self.reason = reason


@dataclass(frozen=True)
class Status:
    done: bool
    message: str
    failed: bool = False


def revision(obj: dict) -> int:
    value = ((obj.get("metadata") or {}).get("annotations") or {}).get(REVISION, "")
    return int(value) if str(value).isdigit() else 0


def rollout_status(dep: dict) -> Status:
    """kubectl's verdict on a Deployment dict (camelCase, as the API returns it)."""
    meta, spec, st = dep.get("metadata") or {}, dep.get("spec") or {}, dep.get("status") or {}
    name = meta.get("name", "?")
    if (meta.get("generation") or 0) > (st.get("observedGeneration") or 0):
        return Status(False, "waiting for the deployment spec update to be observed")
    for cond in st.get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == TIMED_OUT_REASON:
            return Status(False, f'deployment "{name}" exceeded its progress deadline: {cond.get("message", "")}',
                          failed=True)
    want = spec.get("replicas", 1)
    updated, replicas, available = (st.get(k) or 0 for k in ("updatedReplicas", "replicas", "availableReplicas"))
    if want is not None and updated < want:
        return Status(False, f"{updated} out of {want} new replicas have been updated")
    if replicas > updated:
        return Status(False, f"{replicas - updated} old replicas are pending termination")
    if available < updated:
        return Status(False, f"{available} of {updated} updated replicas are available")
    return Status(True, f'deployment "{name}" successfully rolled out')


def read_deployment(kube: Kube, name: str) -> dict:
    return kube.call(kube.apps.read_namespaced_deployment, name, kube.namespace,
                     what=f"read deployment {kube.namespace}/{name}")


def watch_events(kube: Kube, name: str, resource_version: str, seconds: int):
    """One watch request; yields (type, object dict). Raises ApiException (410 Gone included) like any call."""
    from kubernetes.client.exceptions import ApiException
    from kubernetes.watch.watch import iter_resp_lines

    resp = kube.apps.list_namespaced_deployment(
        kube.namespace, watch=True, field_selector=f"metadata.name={name}", resource_version=resource_version,
        timeout_seconds=seconds, allow_watch_bookmarks=True, _preload_content=False,
        _request_timeout=kube.request_timeout(seconds + 15))
    try:
        for line in iter_resp_lines(resp):
            if not line.strip():
                continue
            event = json.loads(line)
            if event.get("type") == "ERROR":
                obj = event.get("object") or {}
                raise ApiException(status=obj.get("code") or 500, reason=obj.get("message") or "watch error")
            yield event.get("type"), event.get("object") or {}
    finally:
        resp.close()
        resp.release_conn()


def wait_for_rollout(kube: Kube, name: str, *, timeout: float, start: dict | None = None,
                     on_progress: Callable[[str], None] | None = None, max_watch: int = 300,
                     clock: Callable[[], float] = time.monotonic) -> dict:
    """Block until the rollout completes (returns the Deployment) or fails (raises RolloutFailed)."""
    deadline = clock() + timeout
    obj = start or read_deployment(kube, name)
    last_message, failures = "", 0
    while True:
        status = rollout_status(obj)
        if status.message != last_message and on_progress:
            on_progress(f"{kube.namespace}/{name}: {status.message}")
        last_message = status.message
        if status.failed:
            raise RolloutFailed(status.message, reason="progress-deadline")
        if status.done:
            return obj
        remaining = deadline - clock()
        if remaining <= 0:
            raise RolloutFailed(f"deployment {kube.namespace}/{name} did not finish rolling out within {timeout:g}s "
                                f"({status.message})", "raise the timeout or look at why pods are not ready",
                                reason="timeout")
        seconds = max(1, min(int(remaining + 0.999), max_watch))
        from kubernetes.client.exceptions import ApiException
        try:
            for kind, event_obj in watch_events(kube, name, obj["metadata"]["resourceVersion"], seconds):
                if kind == "DELETED":
                    raise InputError(f"deployment {kube.namespace}/{name} was deleted during the rollout")
                if kind == "BOOKMARK":
                    obj["metadata"]["resourceVersion"] = event_obj["metadata"]["resourceVersion"]
                    continue
                obj, failures = event_obj, 0
                status = rollout_status(obj)
                if status.done or status.failed or clock() >= deadline:
                    break
                if status.message != last_message and on_progress:
                    on_progress(f"{kube.namespace}/{name}: {status.message}")
                    last_message = status.message
        except ApiException as exc:
            if exc.status == 410:  # our resourceVersion is too old: read the current state, watch from there
                obj = read_deployment(kube, name)
                continue
            if exc.status not in (429, 500, 502, 503, 504):
                raise api_error(exc, f"watch deployment {kube.namespace}/{name}", kube.server) from None
            failures += 1
            time.sleep(backoff_delay(failures))
            obj = read_deployment(kube, name)  # retried within the client's budget; InfraError when it is spent
        except Exception as exc:  # noqa: BLE001 - connection drops: back off, re-read, re-watch
            if not is_connection_error(exc):
                raise
            failures += 1
            time.sleep(backoff_delay(failures))
            obj = read_deployment(kube, name)


def _selector_string(selector: dict) -> str:
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        op, key, values = expr.get("operator"), expr.get("key"), expr.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(values)})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(values)})")
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)


def replica_sets(kube: Kube, dep: dict) -> list[dict]:
    """The ReplicaSets this Deployment controls (label selector, then controller ownerReference UID)."""
    uid = dep["metadata"]["uid"]
    listing = kube.call(kube.apps.list_namespaced_replica_set, kube.namespace,
                        label_selector=_selector_string(dep["spec"].get("selector") or {}),
                        what=f"list replicasets of deployment {kube.namespace}/{dep['metadata']['name']}")
    return [rs for rs in listing.get("items") or []
            if any(o.get("controller") and o.get("uid") == uid for o in rs["metadata"].get("ownerReferences") or [])]


def template_hash(obj: dict) -> str:
    """A ReplicaSet's pod-template-hash (kept across ``rollout undo``, which only renumbers the revision)."""
    return ((obj.get("metadata") or {}).get("labels") or {}).get(HASH_LABEL, "")


def pick_revision(rss: list[dict], to_revision: int = 0, to_hash: str = "") -> dict | None:
    """kubectl's deploymentRevision: the given revision, or (0) the second-newest one; ``to_hash``: the ReplicaSet
    with that pod-template-hash, whatever its revision number is now."""
    if to_hash:
        return next((rs for rs in rss if template_hash(rs) == to_hash), None)
    if to_revision:
        return next((rs for rs in rss if revision(rs) == to_revision), None)
    ordered = sorted((rs for rs in rss if revision(rs) > 0), key=revision, reverse=True)
    return ordered[1] if len(ordered) > 1 else None


def _without_hash(template: dict) -> dict:
    template = copy.deepcopy(template)
    labels = (template.get("metadata") or {}).get("labels")
    if labels:
        labels.pop(HASH_LABEL, None)
    return template


@dataclass(frozen=True)
class UndoResult:
    revision: int  # the revision whose template was restored (its number before the undo)
    skipped: bool  # the template already matched: nothing written
    deployment: dict
    live_revision: int = 0  # the number that template is live under after the undo (kubectl renumbers it)


def undo(kube: Kube, name: str, *, to_revision: int = 0, to_hash: str = "",
         keep_annotations: frozenset[str] = frozenset(), dry_run: bool = False) -> UndoResult:
    """``kubectl rollout undo``; ``keep_annotations`` are also kept from the Deployment. ``to_hash``: restore the
    ReplicaSet with that pod-template-hash (a revision recorded before ``rollout undo`` renumbered it)."""
    if to_revision < 0:
        raise UsageError(f"--to-revision must be >= 0, got {to_revision}")
    what = f"roll back deployment {kube.namespace}/{name}"
    found: dict[str, Any] = {}

    def attempt() -> dict:
        dep = read_deployment(kube, name)
        rss = replica_sets(kube, dep)
        target = pick_revision(rss, to_revision, to_hash)
        if target is None:
            if to_hash:
                raise InputError(f"deployment {kube.namespace}/{name} no longer has the ReplicaSet "
                                 f"(pod-template-hash {to_hash}) that was live before the interrupted promotion",
                                 "pick a revision: kubectl rollout history deployment/" + name)
            if to_revision:
                raise InputError(f"deployment {kube.namespace}/{name} has no revision {to_revision}",
                                 "list revisions with: kubectl rollout history deployment/" + name)
            raise InputError(f"deployment {kube.namespace}/{name} has no previous revision to roll back to")
        if dep["spec"].get("paused"):
            raise UsageError(f"deployment {kube.namespace}/{name} is paused; a paused deployment cannot be rolled back",
                             "resume it first (kubectl rollout resume)")
        found["revision"] = revision(target)
        template = _without_hash(target["spec"]["template"])
        if template == _without_hash(dep["spec"]["template"]):
            found["skipped"], found["live"] = True, revision(dep)
            return dep
        found["live"] = max(revision(rs) for rs in rss) + 1  # the deployment controller's next revision
        current = dep["metadata"].get("annotations") or {}
        keep = SKIP_ANNOTATIONS | keep_annotations
        annotations = {k: v for k, v in current.items() if k in keep}
        annotations.update({k: v for k, v in (target["metadata"].get("annotations") or {}).items() if k not in keep})
        patch = [{"op": "replace", "path": "/metadata/resourceVersion", "value": dep["metadata"]["resourceVersion"]},
                 {"op": "replace", "path": "/spec/template", "value": template},
                 {"op": "replace", "path": "/metadata/annotations", "value": annotations}]
        kwargs = {"dry_run": "All"} if dry_run else {}
        return kube.call(kube.apps.patch_namespaced_deployment, name, kube.namespace, patch, retry=False,
                         _content_type="application/json-patch+json", what=what, **kwargs)

    result = kube.retrying(attempt, what=what)
    return UndoResult(found.get("revision", 0), bool(found.get("skipped")), result, found.get("live", 0))
