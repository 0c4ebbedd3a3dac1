"""The promotion lock: one Lease per target, renewed by a heartbeat, with a short TTL and the journal of the run.

Lease ``llmops-promote-<kind>-<name>`` (coordination.k8s.io/v1) in the target's namespace, as Kubernetes leader
election does it: ``holderIdentity``, ``leaseDurationSeconds`` (the TTL), ``renewTime``. It is taken by a create
(409: someone made it first, read again) or, when it is free or expired, by a replace carrying the resourceVersion
just read (409: someone wrote in between, read again), so of two takers exactly one wins. While it is held a
heartbeat thread renews ``renewTime`` every TTL/3: a live holder never expires, a dead one (SIGKILL, a lost runner,
an API-server outage longer than the TTL) expires TTL seconds after its last beat and the next run takes over.
``release`` deletes the Lease (precondition: our resourceVersion).

The journal (annotation ``llmops.dev/promotion`` on the Lease, JSON) records what a promotion in flight changed:
``state`` (promoting / rolling-back), ``deployment``, the revision, pod-template-hash and version live before it,
the version it promotes. A run that stops before it finishes leaves it there (its Lease stays, without a holder or
expired); the next run gets it back from ``acquire`` and finishes the job (a re-run resumes, ``--rollback``
restores what was live before). Nothing of this is on the Deployment, so no ReplicaSet copies it and
``kubectl rollout undo`` never brings a lock back.

``break_lock``: take the lock even from a live holder (the caller warns with the holder's name). ``patient`` (the
rollback): wait out one lease duration of the holder, so a dead holder never blocks a rollback while a live one
(which keeps renewing) still does, with the one command that clears it in the message.
"""
from __future__ import annotations

import copy
import json
import logging
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone

from llmops.errors import CheckFailed, InfraError, LLMOpsError
from llmops.k8s.annotations import PREFIX, PROMOTION
from llmops.k8s.client import Kube, NotFound, backoff_delay

log = logging.getLogger(__name__)
RUN_URL = PREFIX + "run-url"
MICRO = "%Y-%m-%dT%H:%M:%S.%fZ"


class LockHeld(CheckFailed):
    result = "locked"
    ttl = 0.0  # the holder's lease duration: a dead holder's lock is gone this long after its last renewal


class LockLost(InfraError):
    """Someone took the Lease over while we held it (it expired during an outage, or was broken)."""


def lease_name(kind: str, name: str) -> str:
    return f"llmops-promote-{kind}-{name}"[:253]


def default_holder() -> str:
    env = os.environ
    if env.get("GITHUB_RUN_ID"):
        base = (f"{env.get('GITHUB_REPOSITORY', '')}/runs/{env['GITHUB_RUN_ID']}/"
                f"{env.get('GITHUB_RUN_ATTEMPT', '1')}/{env.get('GITHUB_JOB', '')}")
    else:
        base = f"{socket.gethostname()}:{os.getpid()}"
    return f"{base}#{uuid.uuid4().hex[:8]}"


def _stamp(t: float) -> str:
    """A MicroTime. The client re-renders time-like strings with isoformat(), which drops a zero microsecond part
    and the API server then refuses the value: never send a whole second."""
    moment = datetime.fromtimestamp(t, timezone.utc)
    return (moment.replace(microsecond=1) if moment.microsecond == 0 else moment).strftime(MICRO)


def _parse_time(text: str | None) -> float:
    if not text:
        return 0.0
    for fmt in (MICRO, "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=timezone.utc).timestamp()
        except ValueError:
            continue
    return 0.0


def lease_state(lease: dict) -> tuple[str, float]:
    """(holder or "", when its hold expires: renewTime + leaseDurationSeconds)."""
    spec = lease.get("spec") or {}
    holder = spec.get("holderIdentity") or ""
    return holder, _parse_time(spec.get("renewTime") or spec.get("acquireTime")) + \
        float(spec.get("leaseDurationSeconds") or 0)


def read_journal(lease: dict | None) -> dict | None:
    raw = (((lease or {}).get("metadata") or {}).get("annotations") or {}).get(PROMOTION)
    try:
        doc = json.loads(raw) if raw else None
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


class TargetLock:
    """``with TargetLock(kube, "deployment", name, ttl=30): ...``; ``wait`` seconds to queue behind a live holder."""

    def __init__(self, kube: Kube, kind: str, name: str, *, ttl: float, wait: float = 0.0, holder: str | None = None,
                 run: str = "", break_lock: bool = False, patient: bool = False, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep):
        if kind not in ("deployment", "service"):
            raise ValueError(kind)
        self.kube, self.kind, self.name = kube, kind, name
        self.ttl, self.wait, self.run, self.break_lock = max(1.0, ttl), wait, run, break_lock
        self.patient = patient  # wait out one full lease of the holder: a dead one expires, a live one renews
        self.holder = holder or default_holder()
        self.clock, self.sleep = clock, sleep
        self.lease = lease_name(kind, name)
        self.held = self.lost = False
        self.journal: dict | None = None  # what the Lease's journal says now (ours, or the one we inherited)
        self.took_over: str = ""  # the holder we took a stale (or broken) lock from
        self._obj: dict = {}
        self._mutex = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def where(self) -> str:
        return f"{self.kind} {self.kube.namespace}/{self.name}"

    @property
    def clear_command(self) -> str:
        return f"kubectl delete lease -n {self.kube.namespace} {self.lease}"

    # ------------------------------------------------------------------------------------------------ raw calls
    def _read(self) -> dict | None:
        try:
            return self.kube.call(self.kube.coordination.read_namespaced_lease, self.lease, self.kube.namespace,
                                  what=f"read lease {self.kube.namespace}/{self.lease}")
        except NotFound:
            return None

    def _spec(self, now: float, lease: dict | None) -> dict:
        spec = dict((lease or {}).get("spec") or {})
        spec.update(holderIdentity=self.holder, leaseDurationSeconds=int(math.ceil(self.ttl)), acquireTime=_stamp(now),
                    renewTime=_stamp(now), leaseTransitions=int(spec.get("leaseTransitions") or 0) + (1 if lease else 0))
        return spec

    def _take(self) -> dict:
        """One read-decide-write; raises LockHeld (held by a live holder) or ApiException 409 (retried whole)."""
        lease, now = self._read(), self.clock()
        if lease is not None:
            holder, expires = lease_state(lease)
            if holder and holder != self.holder and expires > now and not self.break_lock:
                run = ((lease.get("metadata") or {}).get("annotations") or {}).get(RUN_URL)
                until = datetime.fromtimestamp(expires, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
                held = LockHeld(f"{self.where} is being promoted by {holder}{' (' + run + ')' if run else ''}; its "
                               f"lock (Lease {self.kube.namespace}/{self.lease}) expires at {until} unless renewed",
                               f"wait for that run (lock-wait queues behind it; a dead holder's lock expires within "
                               f"{lease['spec'].get('leaseDurationSeconds')}s); to clear it now: "
                               f"{self.clear_command} (or break-lock: true)")
                held.ttl = float(lease["spec"].get("leaseDurationSeconds") or 0)
                raise held
            self.took_over = holder if holder and holder != self.holder else ""
            body = copy.deepcopy(lease)
            body["spec"] = self._spec(now, lease)
            annotations = body["metadata"].setdefault("annotations", {})
            annotations[RUN_URL] = self.run
            return self.kube.call(self.kube.coordination.replace_namespaced_lease, self.lease, self.kube.namespace,
                                  body, retry=False, what=f"lock {self.where}")
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.lease, "labels": {"app.kubernetes.io/managed-by": "llmops-actions"},
                             "annotations": {RUN_URL: self.run}},
                "spec": self._spec(now, None)}
        return self.kube.call(self.kube.coordination.create_namespaced_lease, self.kube.namespace, body, retry=False,
                              what=f"lock {self.where}")

    # ------------------------------------------------------------------------------------------------ lifecycle
    def acquire(self) -> dict | None:
        """Take the lock and start the heartbeat; returns the journal an interrupted earlier run left (or None)."""
        give_up, attempt = self.clock() + self.wait, 0
        while True:
            try:
                self._obj = self.kube.retrying(self._take, what=f"lock {self.where}")
                break
            except LockHeld as held:
                now = self.clock()
                if self.patient and attempt == 0:
                    give_up = max(give_up, now + held.ttl + 1.0)
                if now >= give_up:
                    raise
                attempt += 1
                self.sleep(min(max(0.05, give_up - now), backoff_delay(attempt, base=0.5, cap=5.0)))
        self.held, self.journal = True, read_journal(self._obj)
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name=f"lease-{self.lease}", daemon=True)
        self._thread.start()
        return self.journal

    def _update(self, mutate: Callable[[dict], None], what: str, budget: float | None = None) -> None:
        """Replace our Lease after ``mutate``, guarded by its resourceVersion; raises LockLost when it is not ours."""
        from kubernetes.client.exceptions import ApiException

        def attempt() -> dict:
            body = copy.deepcopy(self._obj)
            mutate(body)
            try:
                return self.kube.call(self.kube.coordination.replace_namespaced_lease, self.lease,
                                      self.kube.namespace, body, retry=False, what=what)
            except ApiException as exc:
                if exc.status in (404, 409):
                    fresh = self._read()
                    if fresh is None or lease_state(fresh)[0] != self.holder:
                        raise LockLost(f"lost the lock on {self.where}: its Lease was taken over or deleted",
                                       "another run may be changing it; check it before running again") from None
                    self._obj = fresh
                raise

        with self._mutex:
            self._obj = self.kube.retrying(attempt, what=what, budget=budget)

    def _beat(self) -> None:
        interval = self.ttl / 3
        while not self._stop.wait(interval):
            try:
                self._update(lambda b: b["spec"].update(renewTime=_stamp(self.clock())),
                             f"renew lock on {self.where}", budget=interval)
            except LockLost as exc:
                self.lost = True
                log.warning(exc.message)
                return
            except LLMOpsError as exc:  # an outage: keep beating; the Lease expires if it outlasts the TTL
                log.warning("could not renew the lock on %s: %s", self.where, exc.message)

    def record(self, journal: dict | None) -> None:
        """Write (or, with None, clear) the journal on our Lease before the change it describes is made."""
        def mutate(body: dict) -> None:
            annotations = body["metadata"].setdefault("annotations", {})
            if journal is None:
                annotations.pop(PROMOTION, None)
            else:
                annotations[PROMOTION] = json.dumps(journal, sort_keys=True, separators=(",", ":"))

        self._update(mutate, f"record the promotion on lease {self.kube.namespace}/{self.lease}")
        self.journal = journal

    def release(self) -> None:
        """Stop the heartbeat and give the lock up: delete the Lease, or, when a journal is pending (the run did
        not finish), keep it with no holder. Failures only warn: the Lease then expires by itself."""
        if not self.held:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        self.held = False
        if self.lost:
            return
        from kubernetes.client.exceptions import ApiException

        budget = min(10.0, self.kube.retry_budget)
        try:
            if self.journal is not None:
                self._update(lambda b: b["spec"].update(holderIdentity=None, leaseDurationSeconds=1),
                             f"unlock {self.where}", budget=budget)
                return

            def delete() -> None:
                body = {"preconditions": {"resourceVersion": self._obj["metadata"]["resourceVersion"]}}
                try:
                    self.kube.call(self.kube.coordination.delete_namespaced_lease, self.lease, self.kube.namespace,
                                   body=body, retry=False, what=f"unlock {self.where}")
                except ApiException as exc:
                    if exc.status == 404:
                        return
                    if exc.status == 409:  # a heartbeat raced us: delete from the fresh version if still ours
                        fresh = self._read()
                        if fresh is None or lease_state(fresh)[0] != self.holder:
                            return
                        self._obj = fresh
                    raise

            self.kube.retrying(delete, what=f"unlock {self.where}", budget=budget)
        except LLMOpsError as exc:
            log.warning("could not release the lock on %s (%s); it expires by itself within %.0fs", self.where,
                        exc.message, self.ttl)

    def __enter__(self) -> TargetLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
