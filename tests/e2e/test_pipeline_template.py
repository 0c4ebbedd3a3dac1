"""workflows-templates/llm-pipeline.yml end to end, as a consumer repository runs it.

A temporary git repo holds the template (copied verbatim to .github/workflows/) and example data; its
``uses: llmops-actions/llmops-actions/actions/...@v1`` references are mapped onto this checkout with
``act --local-repository``. act runs every job on the host. Around it, real parts stand in for the environments:
the test control plane (staging and production namespaces), real Prometheus (1 s scrapes), model-server processes
that follow their Deployment's MODEL_VERSION/MODEL_URI like pods on a rollout (staging serves the real trained
model; production's stable and canary serve the echo model), and a load generator that splits requests by the
canary Ingress weight.

1. push to main: a good model goes validate -> train -> gate -> staging -> integration test -> canary -> production.
2. dispatch with a model version and strict thresholds: the gate fails and nothing is deployed.
3. dispatch a version whose canary fails: the canary is rolled back and production keeps the old version.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.e2e.actrun import ROOT, run_workflow
from tests.infra import tools
from tests.infra.traffic import ModelPods, Splitter, nginx_canary_weight

pytestmark = [pytest.mark.k8s, pytest.mark.prometheus, pytest.mark.act, pytest.mark.slow]
IMAGE = "registry.example/llm-server:1"


def _deployment(name: str, version: str, uri: str, replicas: int) -> dict:
    labels = {"app": name}
    env = [{"name": "MODEL_VERSION", "value": version}, {"name": "MODEL_URI", "value": uri}]
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels}, "progressDeadlineSeconds": 30,
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "server", "image": IMAGE, "env": env}]}}}}


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


class World:
    def __init__(self, cluster, tmp: Path):
        from kubernetes import client

        from tests.infra.prometheus import PrometheusServer

        self.cluster, self.tmp = cluster, tmp
        self.apps = client.AppsV1Api(cluster.api_client)
        self.net = client.NetworkingV1Api(cluster.api_client)
        self.store = tmp / "store"
        self.store.mkdir()
        self.base = tmp / "base-model"
        from llmops.demo.tiny_model import build_tiny_model, texts_from_jsonl

        build_tiny_model(self.base, texts_from_jsonl([ROOT / "examples/data/train.jsonl",
                                                      ROOT / "examples/data/eval.jsonl"]))
        self.staging_ns = cluster.namespace()
        self.prod_ns = cluster.namespace()
        self.apps.create_namespaced_deployment(self.staging_ns, _deployment("llm-server", "v0", str(self.base), 1))
        for name, replicas in (("llm-stable", 2), ("llm-canary", 1)):
            self.apps.create_namespaced_deployment(self.prod_ns, _deployment(name, "v0", str(self.base), replicas))
        self.net.create_namespaced_ingress(self.prod_ns, {"metadata": {"name": "llm"}, "spec": {"rules": [{"http": {
            "paths": [{"path": "/", "pathType": "Prefix",
                       "backend": {"service": {"name": "llm-stable", "port": {"number": 80}}}}]}}]}})
        self.staging = ModelPods(cluster, self.staging_ns, "llm-server", tmp, echo=False)
        self.stable = ModelPods(cluster, self.prod_ns, "llm-stable", tmp, echo=True)
        self.canary = ModelPods(cluster, self.prod_ns, "llm-canary", tmp, echo=True)
        self.pods = [self.staging, self.stable, self.canary]
        for pods in self.pods:
            pods.start()
        self.prom = PrometheusServer([], extra_scrape_configs=[{"job_name": "llm", "static_configs": [
            {"targets": [f"127.0.0.1:{p.port}" for p in (self.stable, self.canary)],
             "labels": {"namespace": self.prod_ns}}]}])
        self.prom.start()
        self.load = Splitter(self.canary_weight, self.stable.url, self.canary.url, rate=25)
        self.load.start()
        self.repo = self._consumer_repo()

    def _consumer_repo(self) -> Path:
        repo = self.tmp / "consumer"
        (repo / ".github" / "workflows").mkdir(parents=True)
        shutil.copy(ROOT / "workflows-templates" / "llm-pipeline.yml", repo / ".github" / "workflows")
        (repo / "data").mkdir()
        shutil.copy(ROOT / "examples" / "data" / "train.jsonl", repo / "data" / "training.jsonl")
        shutil.copy(ROOT / "examples" / "data" / "eval.jsonl", repo / "data" / "eval.jsonl")
        (repo / "llmops").mkdir()
        shutil.copy(ROOT / "examples" / "thresholds-demo.yml", repo / "llmops" / "thresholds.yml")
        (repo / "llmops" / "strict-thresholds.yml").write_text("thresholds:\n  accuracy: 0.99\n")
        _git(repo, "init", "-q", "-b", "main")
        _git(repo, "add", "-A")
        _git(repo, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "consumer")
        return repo

    def canary_weight(self) -> int:
        return nginx_canary_weight(self.net, self.prod_ns)

    def version(self, ns: str, name: str) -> str:
        dep = self.apps.read_namespaced_deployment(name, ns)
        return {e.name: e.value for e in dep.spec.template.spec.containers[0].env}["MODEL_VERSION"]

    def variables(self, **extra: str) -> dict[str, str]:
        import sys

        values = {
            "LLMOPS_MODEL_STORE": str(self.store), "LLMOPS_BASE_MODEL": str(self.base),
            "LLMOPS_TRAIN_MAX_STEPS": "150", "LLMOPS_TRAIN_LEARNING_RATE": "3e-3", "LLMOPS_MIXED_PRECISION": "no",
            "LLMOPS_ALLOW_CPU": "true", "LLMOPS_PYTHON": sys.executable, "LLMOPS_INSTALL": "false",
            "LLMOPS_STAGING_NAMESPACE": self.staging_ns, "LLMOPS_STAGING_DEPLOYMENT": "llm-server",
            "LLMOPS_STAGING_URL": self.staging.url, "LLMOPS_PRODUCTION_NAMESPACE": self.prod_ns,
            "LLMOPS_STABLE_DEPLOYMENT": "llm-stable", "LLMOPS_CANARY_DEPLOYMENT": "llm-canary",
            "LLMOPS_CANARY_URL": self.canary.url, "LLMOPS_CANARY_PROVIDER": "nginx", "LLMOPS_ROUTE": "llm",
            "LLMOPS_PROMETHEUS_URL": self.prom.url, "LLMOPS_CANARY_STEPS": "50,100",
            "LLMOPS_CANARY_INTERVAL": "8s", "LLMOPS_CANARY_MIN_REQUESTS": "20",
        }
        values.update(extra)
        return values

    def run(self, event: str, tmp: Path, inputs: dict[str, str] | None = None, **extra: str):
        workflow = (self.repo / ".github" / "workflows" / "llm-pipeline.yml").read_text()
        return run_workflow(tmp, workflow, event=event, repo=self.repo, inputs=inputs,
                            variables=self.variables(**extra),
                            secrets={"KUBECONFIG": Path(self.cluster.kubeconfig).read_text()},
                            local_repositories={"llmops-actions/llmops-actions@v1": ROOT}, timeout=1200)

    def copy_model(self, version: str) -> None:
        sha = _git(self.repo, "rev-parse", "HEAD")
        shutil.copytree(self.store / sha, self.store / version)
        meta_path = self.store / version / "llmops-model.json"  # as training would have written it for that version
        meta = json.loads(meta_path.read_text())
        meta_path.write_text(json.dumps({**meta, "model_version": version}))

    def close(self) -> None:
        self.load.stop()
        for pods in self.pods:
            pods.close()
        self.prom.stop()


@pytest.fixture(scope="module")
def world(k8s_cluster, tmp_path_factory):
    tools.prometheus_bins()
    w = World(k8s_cluster, tmp_path_factory.mktemp("pipeline"))
    try:
        w.first = w.run("push", tmp_path_factory.mktemp("run-push"))
        w.sha = _git(w.repo, "rev-parse", "HEAD")
        yield w
    finally:
        w.close()


def test_a_good_model_goes_all_the_way_to_production(world):
    result = world.first
    assert result.ok, result.stdout[-8000:]
    assert set(result.jobs) >= {"validate", "train", "evaluate", "staging", "integration-test", "production"}
    assert result.output("train", "version", "model-version") == world.sha
    assert result.output("evaluate", "gate", "result") == "pass"
    assert result.output("production", "canary", "decision") == "promote"
    # Staging served the trained model (the integration test evaluated it over HTTP), production runs it now.
    assert world.version(world.staging_ns, "llm-server") == world.sha
    assert world.staging.history[-1] == world.sha
    assert world.version(world.prod_ns, "llm-stable") == world.sha
    assert world.canary_weight() == 0
    verdict = json.loads((world.store / "production" / "verdict.json").read_text())
    assert verdict["result"] == "pass"
    assert (world.store / world.sha / "llmops-model.json").exists()


def test_a_model_that_fails_the_gate_stops_there(world, tmp_path):
    world.copy_model("v-strict")
    result = world.run("workflow_dispatch", tmp_path, inputs={"skip-training": "v-strict",
                                                               "environment": "production"},
                       LLMOPS_THRESHOLDS="llmops/strict-thresholds.yml")
    assert not result.ok
    assert result.outcome("evaluate", "gate") == "failure"
    assert "staging" not in result.jobs and "production" not in result.jobs
    assert world.version(world.staging_ns, "llm-server") == world.sha
    assert world.version(world.prod_ns, "llm-stable") == world.sha


def test_a_bad_canary_is_rolled_back_and_production_keeps_the_old_version(world, tmp_path):
    world.copy_model("v-bad-canary")
    world.canary.faults = {"LLMOPS_FAULT_ERROR_RATE": "0.5", "LLMOPS_FAULT_SEED": "3"}
    result = world.run("workflow_dispatch", tmp_path, inputs={"skip-training": "v-bad-canary",
                                                               "environment": "production"})
    assert not result.ok
    assert result.outcome("production", "canary") == "failure"
    assert "rollback" in result.stdout
    assert world.version(world.staging_ns, "llm-server") == "v-bad-canary"  # staging took it; production did not
    assert world.version(world.prod_ns, "llm-stable") == world.sha
    assert world.canary_weight() == 0
    verdict = json.loads((world.store / "production" / "verdict.json").read_text())
    assert verdict["model"]["version"] != "v-bad-canary"
