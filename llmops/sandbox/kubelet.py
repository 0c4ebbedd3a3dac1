"""A stand-in "kubelet" for the local control plane: makes pods look Running/Ready without running anything.

Owns: the fake node agent used by the test control plane.  There is no real
kubelet or container runtime; like KWOK, this thread lists pods (all
namespaces, every ``poll_interval`` seconds) and writes their status through
the ``pods/status`` subresource: phase Running, a loopback-range podIP,
conditions PodScheduled/Initialized/ContainersReady/Ready and one
containerStatus per container.

Tests steer it per image substring (the most recently set matching rule wins)::

    cluster.kubelet.set_behavior("model:v2", "unready")    # running, never Ready
    cluster.kubelet.set_behavior("model:v3", "crashloop")  # restartCount grows, not Ready
    cluster.kubelet.set_behavior("model:v4", "ready", ready_delay=3.0)
    cluster.kubelet.clear()                                # everything Ready again

Pods are never bound to a node, so deleting them needs no kubelet ack (the
API server deletes unscheduled pods at once); pods that nonetheless carry a
deletionTimestamp are force-deleted.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

log = logging.getLogger(__name__)

MODES = ("ready", "unready", "crashloop")
STRATEGIC = "application/strategic-merge-patch+json"


@dataclass
class _Rule:
    image_substring: str
    mode: str
    ready_delay: float


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _pod_ip(uid: str) -> str:
    # 127.64.0.0/10-ish loopback addresses: valid IPs, never routed off-host
    h = hashlib.sha256(uid.encode()).digest()
    return f"127.{64 + h[0] % 64}.{h[1]}.{1 + h[2] % 254}"


class TestKubelet:
    """Background thread marking pods Ready (or not) via the status subresource."""

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        api_client: k8s.ApiClient,
        poll_interval: float = 0.2,
        ready_delay: float = 0.0,
        crash_interval: float = 1.0,
    ):
        self._core = k8s.CoreV1Api(api_client)
        self.poll_interval = poll_interval
        self.default_ready_delay = ready_delay
        self.crash_interval = crash_interval
        self._rules: list[_Rule] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._first_seen: dict[str, float] = {}
        self._written: dict[str, tuple[Any, ...]] = {}
        self._restarts: dict[str, tuple[int, float]] = {}
        self.errors: list[str] = []  # last few API errors, for debugging

    # ---- control -------------------------------------------------------
    def set_behavior(self, image_substring: str, mode: str, ready_delay: float | None = None) -> None:
        """Pods with a container image containing ``image_substring`` behave as ``mode``."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        with self._lock:
            self._rules = [r for r in self._rules if r.image_substring != image_substring]
            delay = self.default_ready_delay if ready_delay is None else ready_delay
            self._rules.append(_Rule(image_substring, mode, delay))

    def clear(self) -> None:
        with self._lock:
            self._rules = []

    def behavior_for(self, images: list[str]) -> tuple[str, float]:
        with self._lock:
            for rule in reversed(self._rules):
                if any(rule.image_substring in img for img in images):
                    return rule.mode, rule.ready_delay
        return "ready", self.default_ready_delay

    # ---- lifecycle -----------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="test-kubelet", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sync_once()
            except Exception as exc:  # noqa: BLE001 - keep the node alive, record why
                self._record(f"sync: {exc!r}")
            self._stop.wait(self.poll_interval)

    def _record(self, msg: str) -> None:
        self.errors = (self.errors + [msg])[-20:]
        log.debug("test kubelet: %s", msg)

    # ---- one reconcile pass ---------------------------------------------
    def sync_once(self) -> None:
        pods = self._core.list_pod_for_all_namespaces(_request_timeout=10).items
        live = set()
        now = time.monotonic()
        for pod in pods:
            meta = pod.metadata
            uid = meta.uid
            live.add(uid)
            if meta.deletion_timestamp is not None:
                self._force_delete(meta.namespace, meta.name)
                continue
            self._first_seen.setdefault(uid, now)
            containers = pod.spec.containers or []
            mode, delay = self.behavior_for([c.image or "" for c in containers])
            if mode == "ready" and now - self._first_seen[uid] < delay:
                mode = "starting"
            restarts = 0
            if mode == "crashloop":
                count, last = self._restarts.get(uid, (0, now))
                if now - last >= self.crash_interval or uid not in self._restarts:
                    count, last = count + 1, now
                self._restarts[uid] = (count, last)
                restarts = count
            key = (mode, restarts, tuple(c.image for c in containers))
            if self._written.get(uid) == key:
                continue
            try:
                self._core.patch_namespaced_pod_status(
                    meta.name, meta.namespace, self._status(pod, mode, restarts),
                    _content_type=STRATEGIC, _request_timeout=10,
                )
                self._written[uid] = key
            except ApiException as exc:
                if exc.status != 404:
                    self._record(f"patch {meta.namespace}/{meta.name}: {exc.status} {exc.reason}")
        for gone in set(self._first_seen) - live:
            self._first_seen.pop(gone, None)
            self._written.pop(gone, None)
            self._restarts.pop(gone, None)

    def _force_delete(self, namespace: str, name: str) -> None:
        try:
            self._core.delete_namespaced_pod(name, namespace, grace_period_seconds=0, _request_timeout=10)
        except ApiException as exc:
            if exc.status != 404:
                self._record(f"delete {namespace}/{name}: {exc.status}")

    def _status(self, pod: Any, mode: str, restarts: int) -> dict[str, Any]:
        ready = mode == "ready"
        ts = _now()
        started = pod.status.start_time.strftime("%Y-%m-%dT%H:%M:%SZ") if pod.status and pod.status.start_time else ts
        statuses = []
        for c in pod.spec.containers or []:
            cid = hashlib.sha256(f"{pod.metadata.uid}/{c.name}/{restarts}".encode()).hexdigest()
            st: dict[str, Any] = {
                "name": c.name,
                "image": c.image,
                "imageID": f"docker-pullable://{c.image}",
                "containerID": f"containerd://{cid}",
                "ready": ready,
                "started": mode != "crashloop",
                "restartCount": restarts,
            }
            if mode == "crashloop":
                st["state"] = {"waiting": {"reason": "CrashLoopBackOff",
                                           "message": "back-off restarting failed container"}}
                st["lastState"] = {"terminated": {"exitCode": 1, "reason": "Error",
                                                  "startedAt": ts, "finishedAt": ts}}
            else:
                st["state"] = {"running": {"startedAt": started}}
            statuses.append(st)

        def cond(ctype: str, ok: bool, reason: str | None = None) -> dict[str, Any]:
            c: dict[str, Any] = {"type": ctype, "status": "True" if ok else "False",
                                 "lastProbeTime": None, "lastTransitionTime": ts}
            if not ok and reason:
                c["reason"] = reason
            return c

        reason = "ContainersNotReady"
        return {
            "status": {
                "phase": "Running",
                "hostIP": "127.0.0.1",
                "podIP": _pod_ip(pod.metadata.uid),
                "podIPs": [{"ip": _pod_ip(pod.metadata.uid)}],
                "startTime": started,
                "conditions": [
                    cond("PodScheduled", True),
                    cond("Initialized", True),
                    cond("ContainersReady", ready, reason),
                    cond("Ready", ready, reason),
                ],
                "containerStatuses": statuses,
            }
        }
