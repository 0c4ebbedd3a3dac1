"""``run_pipeline.py --cluster sandbox``: a staging and a production environment on this machine, torn down after.

Owns: starting and stopping, in one place, everything the sandbox runs:

* the local control plane (``llmops.sandbox.cluster``: etcd + kube-apiserver + kube-controller-manager from the
  cache ``tools/setup.sh`` builds, and a stand-in kubelet that marks pods Ready);
* namespace ``staging`` with Deployment ``llm-server``, namespace ``production`` with ``llm-stable`` (2 replicas),
  ``llm-canary`` (scaled to 0 until a release) and the Ingress ``llm`` that canary-step's nginx provider weights;
  every Deployment starts on the base model (version ``base``);
* one reference-server process per Deployment (``bin/serve.py`` on the model folder its pod template names),
  restarted when a rollout changes the template, as pods would be (``traffic.ModelPods``);
* Debian's Prometheus scraping the production servers every second, with the ``namespace`` label a cluster's
  scrape adds (canary-step's default queries match on it);
* live traffic: ``rate`` requests/s split between stable and canary by the Ingress's canary weight, since there is
  no ingress controller to do it (``traffic.Splitter``).

``Sandbox.check()`` says what is missing and how to get it (exit 2) before the pipeline trains anything; ``stop()``
is idempotent and runs on success, failure and Ctrl-C alike, stopping every process this module started.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from llmops.errors import InfraError, UsageError
from llmops.release_endpoints import Endpoints
from llmops.sandbox import procs

BASE_VERSION = "base"
IMAGE = "llmops/llm-server:sandbox"  # nothing pulls it: the processes above stand in for the pods
# The servers share this machine's cores with each other and with the run: stable-vs-canary latency is the machine's
# noise, so the sandbox's canary judges latency against an absolute limit only (errors stay relative).
LATENCY_LIMITS = ("--max-latency-increase", "off", "--max-latency-p99", "2")


def check() -> None:
    """Raise UsageError (exit 2) naming the fix when the control plane or Prometheus is missing."""
    import importlib.util

    missing = []
    lacking = [m for m in ("cryptography", "kubernetes", "prometheus_client") if importlib.util.find_spec(m) is None]
    if lacking:
        missing.append(f"the Python packages {', '.join(lacking)} are not installed: run `pip install -e .[sandbox]`")
    if procs.k8s_bin_dir_or_none() is None:
        missing.append(f"the local Kubernetes control plane (kube-apiserver, kube-controller-manager, etcd) is not "
                       f"in {procs.k8s_cache_dir()}: run `bash tools/setup.sh` (or `{procs.BUILD_CMD}`; it builds "
                       "them once, ~5 min, ~3 GB scratch)")
    if procs.prometheus_bins_or_none() is None:
        missing.append("prometheus/promtool are not on PATH: run `sudo apt-get install -y prometheus` (Debian/Ubuntu)")
    if missing:
        raise UsageError("--cluster sandbox needs what tools/setup.sh installs; " + "; ".join(missing),
                         "install the missing parts, or drop --cluster sandbox (the run then stops after the gates)")


def _deployment(name: str, version: str, uri: str, replicas: int) -> dict:
    labels = {"app": name}
    env = [{"name": "MODEL_VERSION", "value": version}, {"name": "MODEL_URI", "value": uri}]
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels}, "progressDeadlineSeconds": 60,
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "server", "image": IMAGE, "env": env}]}}}}


class Sandbox(procs.Started):
    """The environments above; use as a context manager (or ``start()`` and always ``stop()``)."""

    def __init__(self, base_model: Path, *, rate: float = 8.0, echo: bool = False):
        self.base_model, self.rate, self.echo = Path(base_model).resolve(), rate, echo
        self.dir = Path(tempfile.mkdtemp(prefix="llmops-sandbox-"))
        self.cluster = self.prom = self.load = None
        self.pods: list = []
        self.endpoints: Endpoints | None = None

    def start(self) -> Endpoints:
        from kubernetes import client

        from llmops.sandbox.cluster import Cluster
        from llmops.sandbox.prometheus import PrometheusServer
        from llmops.sandbox.traffic import ModelPods, Splitter, nginx_canary_weight

        check()
        try:
            self.cluster = Cluster()
            self.cluster.start()
            apps = client.AppsV1Api(self.cluster.api_client)
            net = client.NetworkingV1Api(self.cluster.api_client)
            staging, production = self.cluster.namespace("staging"), self.cluster.namespace("production")
            base = str(self.base_model)
            apps.create_namespaced_deployment(staging, _deployment("llm-server", BASE_VERSION, base, 1))
            apps.create_namespaced_deployment(production, _deployment("llm-stable", BASE_VERSION, base, 2))
            apps.create_namespaced_deployment(production, _deployment("llm-canary", BASE_VERSION, base, 0))
            net.create_namespaced_ingress(production, {"metadata": {"name": "llm"}, "spec": {"rules": [{"http": {
                "paths": [{"path": "/", "pathType": "Prefix",
                           "backend": {"service": {"name": "llm-stable", "port": {"number": 80}}}}]}}]}})
            serving = self.dir / "servers"
            serving.mkdir()
            stage = ModelPods(self.cluster, staging, "llm-server", serving, echo=self.echo)
            stable = ModelPods(self.cluster, production, "llm-stable", serving, echo=self.echo)
            canary = ModelPods(self.cluster, production, "llm-canary", serving, echo=self.echo)
            self.pods = [stage, stable, canary]
            for pods in self.pods:
                pods.start()
            self.prom = PrometheusServer([], extra_scrape_configs=[{"job_name": "llm", "static_configs": [
                {"targets": [f"127.0.0.1:{p.port}" for p in (stable, canary)],
                 "labels": {"namespace": production}}]}])
            self.prom.start()
            procs.wait_until(lambda: procs.http_ok(f"{stable.url}/health", lambda s, _b: s == 200), 120, 0.5,
                             f"the stable model server ({stable.url}/health)")
            self.load = Splitter(lambda: nginx_canary_weight(net, production), stable.url, canary.url, self.rate)
            self.load.start()
        except (procs.InfraError, TimeoutError) as exc:
            raise InfraError(f"the sandbox did not start: {exc}",
                             f"its logs are in {self.dir} and the control plane's in {getattr(self.cluster, 'dir', '')}"
                             ) from None
        self.endpoints = Endpoints(
            kubeconfig=self.cluster.kubeconfig, staging_namespace=staging, staging_deployment="llm-server",
            staging_url=stage.url, production_namespace=production, stable="llm-stable", canary="llm-canary",
            route="llm", canary_url=canary.url, stable_url=stable.url, prometheus_url=self.prom.url,
            canary_args=LATENCY_LIMITS)
        return self.endpoints

    def describe(self) -> dict:
        """What a user would look at before the sandbox goes: each Deployment's version, the canary weight, what the
        servers' /health says, the requests sent; and what runs (process ids, ports, folders) to check it is gone."""
        import requests
        from kubernetes import client

        from llmops.sandbox.traffic import nginx_canary_weight

        ep, apps = self.endpoints, client.AppsV1Api(self.cluster.api_client)
        deployments = {}
        for ns, name in ((ep.staging_namespace, ep.staging_deployment), (ep.production_namespace, ep.stable),
                         (ep.production_namespace, ep.canary)):
            dep = apps.read_namespaced_deployment(name, ns, _request_timeout=10)
            env = {e.name: e.value for e in dep.spec.template.spec.containers[0].env or []}
            deployments[f"{ns}/{name}"] = {"model_version": env.get("MODEL_VERSION"), "replicas": dep.spec.replicas,
                                           "faults": sorted(k for k in env if k.startswith("LLMOPS_FAULT_"))}
        health = {}
        for name, url in (("staging", ep.staging_url), ("stable", ep.stable_url)):
            try:
                with requests.get(f"{url}/health", timeout=5) as resp:
                    health[name] = resp.json().get("model_version")
            except (requests.RequestException, ValueError) as exc:
                health[name] = f"unreachable: {type(exc).__name__}"
        weight = nginx_canary_weight(client.NetworkingV1Api(self.cluster.api_client), ep.production_namespace, ep.route)
        return {"deployments": deployments, "canary_weight": weight, "health": health,
                "requests_sent": dict(self.load.sent), **self.running()}

    def running(self) -> dict:
        """The processes, server ports and folders this sandbox started (each gone after ``stop()``)."""
        processes = [p.proc.pid for p in self.cluster.procs] + ([self.prom.proc.proc.pid] if self.prom.proc else [])
        return {"processes": processes, "server_ports": [p.port for p in self.pods],
                "folders": [str(self.dir), str(self.cluster.dir), str(self.prom.dir)]}

    def stop(self) -> None:
        """Stop the load, the model servers, Prometheus and the control plane (in that order); idempotent."""
        import shutil

        if self.load is not None:
            self.load.stop()
            self.load = None
        for pods in self.pods:
            pods.close()
        self.pods = []
        if self.prom is not None:
            self.prom.stop()
            self.prom = None
        if self.cluster is not None:
            self.cluster.stop()
            self.cluster = None
        shutil.rmtree(self.dir, ignore_errors=True)
