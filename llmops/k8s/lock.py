"""A lease annotation on the target object, so two pipelines never promote the same Deployment (or Service) at once.

The annotation ``llmops-actions/lock`` holds JSON ``{"holder", "expires", "run"}``. It is taken with a merge patch
that carries the resourceVersion just read: if anyone wrote the object in between, the API server answers 409 and we
read again, so of two takers exactly one wins. A lock past ``expires`` is stale (its holder died) and can be taken
over. Release removes the annotation only if we still hold it, with the same guard. ``rollout.undo`` is told to keep
this annotation from the live object (the ReplicaSets carry copies of old ones).
"""
from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from llmops import gha
from llmops.errors import CheckFailed, LLMOpsError
from llmops.k8s.change import PREFIX
from llmops.k8s.client import Kube, backoff_delay, retrying

LOCK = PREFIX + "lock"
MERGE = "application/merge-patch+json"


class LockHeld(CheckFailed):
    result = "locked"


@dataclass(frozen=True)
class Holder:
    holder: str
    expires: float
    run: str = ""

    @classmethod
    def parse(cls, text: str | None) -> Holder | None:
        if not text:
            return None
        try:
            doc = json.loads(text)
            return cls(str(doc["holder"]), float(doc["expires"]), str(doc.get("run") or ""))
        except (ValueError, TypeError, KeyError):  # unreadable: treat as stale rather than blocking forever
            return cls("unreadable lock annotation", 0.0)

    def dump(self) -> str:
        return json.dumps({"holder": self.holder, "expires": round(self.expires, 3), "run": self.run},
                          sort_keys=True)

    def until(self) -> str:
        return datetime.fromtimestamp(self.expires, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def default_holder() -> str:
    env = os.environ
    if env.get("GITHUB_RUN_ID"):
        base = (f"{env.get('GITHUB_REPOSITORY', '')}/runs/{env['GITHUB_RUN_ID']}/"
                f"{env.get('GITHUB_RUN_ATTEMPT', '1')}/{env.get('GITHUB_JOB', '')}")
    else:
        base = f"{socket.gethostname()}:{os.getpid()}"
    return f"{base}#{uuid.uuid4().hex[:8]}"


class TargetLock:
    """``with TargetLock(kube, "deployment", name, ttl=900): ...``; ``wait`` seconds to queue behind a holder."""

    def __init__(self, kube: Kube, kind: str, name: str, *, ttl: float, wait: float = 0.0, holder: str | None = None,
                 run: str = "", clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep):
        if kind not in ("deployment", "service"):
            raise ValueError(kind)
        self.kube, self.kind, self.name = kube, kind, name
        self.ttl, self.wait, self.run = ttl, wait, run
        self.holder = holder or default_holder()
        self.clock, self.sleep = clock, sleep
        self.held = False
        self._value = ""

    @property
    def where(self) -> str:
        return f"{self.kind} {self.kube.namespace}/{self.name}"

    def _read(self) -> dict:
        fn = self.kube.apps.read_namespaced_deployment if self.kind == "deployment" else \
            self.kube.core.read_namespaced_service
        return self.kube.call(fn, self.name, self.kube.namespace, what=f"read {self.where}")

    def _patch(self, body: dict) -> dict:
        fn = self.kube.apps.patch_namespaced_deployment if self.kind == "deployment" else \
            self.kube.core.patch_namespaced_service
        return self.kube.call(fn, self.name, self.kube.namespace, body, retry=False, _content_type=MERGE,
                              what=f"lock {self.where}")

    def acquire(self, first: dict | None = None) -> dict:
        """Take the lock; returns the object as written (so the caller needs no re-read). ``first``: an object just
        read, used for the first attempt."""
        from kubernetes.client.exceptions import ApiException

        give_up = self.clock() + self.wait
        attempt = 0
        while True:
            obj, first = first or self._read(), None
            current = Holder.parse((obj["metadata"].get("annotations") or {}).get(LOCK))
            now = self.clock()
            if current and current.holder != self.holder and current.expires > now:
                if now >= give_up:
                    raise LockHeld(f"{self.where} is being promoted by {current.holder}"
                                   f"{' (' + current.run + ')' if current.run else ''}; its lock expires at "
                                   f"{current.until()}",
                                   "wait for that run to finish, or set lock-wait to queue behind it")
                attempt += 1
                self.sleep(min(max(0.05, give_up - now), backoff_delay(attempt, base=0.5, cap=5.0)))
                continue
            if current and current.holder != self.holder:
                gha.warning(f"{self.where}: taking over a stale lock from {current.holder} (expired {current.until()})")
            mine = Holder(self.holder, now + self.ttl, self.run).dump()
            try:
                written = self._patch({"metadata": {"resourceVersion": obj["metadata"]["resourceVersion"],
                                                    "annotations": {LOCK: mine}}})
            except ApiException as exc:
                if exc.status == 409:  # someone wrote in between (maybe another taker): read again
                    attempt += 1
                    self.sleep(backoff_delay(attempt, base=0.05, cap=1.0))
                    continue
                from llmops.k8s.client import api_error
                raise api_error(exc, f"lock {self.where}", self.kube.server) from None
            self.held, self._value = True, mine
            return written

    def release(self) -> None:
        """Remove our lock (never someone else's): one JSON patch that tests the annotation is still exactly ours.
        Failures only warn; the lock then expires by itself."""
        if not self.held:
            return
        from kubernetes.client.exceptions import ApiException

        path = "/metadata/annotations/" + LOCK.replace("~", "~0").replace("/", "~1")
        fn = self.kube.apps.patch_namespaced_deployment if self.kind == "deployment" else \
            self.kube.core.patch_namespaced_service

        def attempt() -> None:
            try:
                self.kube.call(fn, self.name, self.kube.namespace, [{"op": "test", "path": path, "value": self._value},
                                                                    {"op": "remove", "path": path}],
                               retry=False, _content_type="application/json-patch+json", what=f"unlock {self.where}")
            except ApiException as exc:
                if exc.status != 422:  # 422: the test failed, the lock is no longer ours (taken over or gone)
                    raise

        try:
            retrying(attempt, what=f"unlock {self.where}", attempts=self.kube.attempts, server=self.kube.server)
            self.held = False
        except LLMOpsError as exc:
            gha.warning(f"could not release the lock on {self.where} ({exc.message}); it expires by itself")

    def __enter__(self) -> TargetLock:
        self.obj = self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
