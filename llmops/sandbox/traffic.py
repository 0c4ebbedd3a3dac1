"""Traffic stand-ins for canaries on the local control plane (the tests' and ``--cluster sandbox``'s): model-server
processes and a load generator that splits requests by the weight the traffic object says (the local control plane
has no ingress controller to do it).

- ``EchoServer``: ``bin/serve.py --echo`` (or a real model folder) on a free port, ready-checked.
- ``Splitter``: ``rate`` requests/s, each to the canary with probability weight/100, concurrently like clients.
- ``ModelPods``: watches a Deployment's ``MODEL_VERSION``/``MODEL_URI`` env and (re)starts its server process when
  they change, the way a kubelet restarts pods on a rollout, on a fixed port so its URL never changes. The pod
  template's ``LLMOPS_FAULT_*`` env reaches the process too (a Deployment can carry a fault, as on a cluster).
"""
from __future__ import annotations

import os
import random
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import requests

from llmops.sandbox import procs as tools

ROOT = Path(__file__).resolve().parents[2]


def nginx_canary_weight(net, namespace: str, route: str = "llm") -> int:
    """The canary share an NGINX ingress controller would apply: the ``<route>-canary`` Ingress's canary-weight
    annotation when it is marked canary, else 0 (read independently of llmops.canary)."""
    items = {i.metadata.name: i for i in net.list_namespaced_ingress(namespace, _request_timeout=5).items}
    canary = items.get(f"{route}-canary")
    ann = (canary.metadata.annotations or {}) if canary else {}
    if ann.get("nginx.ingress.kubernetes.io/canary") != "true":
        return 0
    return int(ann.get("nginx.ingress.kubernetes.io/canary-weight", 0))


class EchoServer:
    def __init__(self, tmp: Path, version: str, faults: dict[str, str]):
        self.port = tools.free_port()
        env = {**os.environ, "PYTHONPATH": str(ROOT), **faults}
        argv = [sys.executable, str(ROOT / "bin" / "serve.py"), "--echo", "--model-version", version,
                "--port", str(self.port)]
        self.proc = tools.ManagedProcess(f"serve-{version}", argv, tmp / f"serve-{version}.log", env=env)
        self.url = f"http://127.0.0.1:{self.port}"
        tools.wait_until(lambda: self.proc.check_alive() or tools.http_ok(f"{self.url}/health",
                                                                         lambda s, _b: s == 200),
                         60, 0.2, f"model server {version}")


class Splitter(threading.Thread):
    """Sends ``rate`` requests/s, each to the canary with probability weight/100 (weight read every 0.25 s)."""

    def __init__(self, read_weight: Callable[[], int], stable: str, canary: str, rate: float):
        super().__init__(daemon=True)
        self.read_weight, self.urls, self.rate = read_weight, {"stable": stable, "canary": canary}, rate
        self.stopped = threading.Event()
        self.weight = 0
        self.weights: list[int] = []
        self.sent = {"stable": 0, "canary": 0}
        self.rng = random.Random(1)
        self.lock = threading.Lock()

    def run(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        next_read = 0.0
        # Concurrent like real clients: a slow canary must not slow down the requests to stable.
        with requests.Session() as session, ThreadPoolExecutor(max_workers=16) as pool:
            while not self.stopped.is_set():
                now = time.monotonic()
                if now >= next_read:
                    try:
                        self.weight = self.read_weight()
                    except Exception:  # noqa: BLE001 - keep the last weight while the API server is busy
                        pass
                    self.weights.append(self.weight)
                    next_read = now + 0.25
                side = "canary" if self.rng.random() * 100 < self.weight else "stable"
                pool.submit(self._send, session, side)
                self.stopped.wait(max(0.0, 1.0 / self.rate - (time.monotonic() - now)))

    def _send(self, session: requests.Session, side: str) -> None:
        try:
            session.post(f"{self.urls[side]}/v1/completions", json={"prompt": "hi there", "max_tokens": 4},
                         timeout=5).close()
            with self.lock:
                self.sent[side] += 1
        except requests.RequestException:
            pass

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=10)




class ModelPods(threading.Thread):
    """Runs the model server a Deployment describes: when the pod template's MODEL_VERSION / MODEL_URI env change
    (a promotion or a rollback), the old process stops and a new one starts on the same port, as pods would be
    replaced. ``echo=True`` serves with ``--echo`` (no model weights); else MODEL_URI must be a model folder.
    Scaled to 0 replicas, nothing runs (connection refused, like a Service with no endpoints)."""

    def __init__(self, cluster, namespace: str, deployment: str, tmp: Path, *, echo: bool,
                 faults: dict[str, str] | None = None):
        super().__init__(daemon=True)
        from kubernetes import client

        self.apps = client.AppsV1Api(cluster.api_client)
        self.namespace, self.deployment, self.tmp, self.echo = namespace, deployment, tmp, echo
        self.faults = dict(faults or {})
        self.port = tools.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: tools.ManagedProcess | None = None
        self.current: tuple[str, str, int, tuple[tuple[str, str], ...]] | None = None
        self.history: list[str] = []
        self.stopped = threading.Event()

    def _wanted(self) -> tuple[str, str, int, tuple[tuple[str, str], ...]]:
        dep = self.apps.read_namespaced_deployment(self.deployment, self.namespace, _request_timeout=5)
        env = {e.name: e.value for e in (dep.spec.template.spec.containers[0].env or [])}
        faults = tuple(sorted((k, v or "") for k, v in env.items() if k.startswith("LLMOPS_FAULT_")))
        return env.get("MODEL_VERSION", ""), env.get("MODEL_URI", ""), dep.spec.replicas or 0, faults

    def _restart(self, wanted: tuple[str, str, int, tuple[tuple[str, str], ...]]) -> None:
        if self.proc:
            self.proc.stop()
            self.proc = None
        version, uri, replicas, template_faults = wanted
        self.current = wanted
        if replicas == 0 or not version:
            return
        argv = [sys.executable, str(ROOT / "bin" / "serve.py"), "--model-version", version,
                "--port", str(self.port)]
        argv += ["--echo"] if self.echo or not uri else ["--model-dir", uri]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **dict(template_faults), **self.faults}
        name = f"{self.deployment}-{len(self.history)}"
        self.proc = tools.ManagedProcess(name, argv, self.tmp / f"{name}.log", env=env)
        self.history.append(version)

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                wanted = self._wanted()
                if wanted != self.current:
                    self._restart(wanted)
            except Exception:  # noqa: BLE001 - the API server may be busy; try again
                pass
            self.stopped.wait(0.3)

    def close(self) -> None:
        self.stopped.set()
        self.join(timeout=10)
        if self.proc:
            self.proc.stop()
