"""canary_step.py --mode abort on the real API server, no Prometheus: a canary left mid-walk (canary Ingress at
25 %, state recorded) goes back to stable at once, exit 0, outputs and record say rolled back; a second abort and
an abort of a canary never started (Gateway API route never touched) are no-ops that still exit 0."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llmops.canary import state
from llmops.canary.decision import Progress
from llmops.canary.kube import connect
from llmops.canary.routers import Target, get_router
from tests.infra import tools
from tests.infra.traffic import deployment, nginx_canary_weight

pytestmark = [pytest.mark.k8s]
ROOT = Path(__file__).resolve().parents[2]


def abort(cluster, ns: str, tmp: Path, provider: str) -> tuple[subprocess.CompletedProcess, dict, dict]:
    out, summary = tmp / "outputs.txt", tmp / "summary.md"
    out.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INPUT_", "GITHUB_"))}
    env.update(PYTHONPATH=str(ROOT), GITHUB_OUTPUT=str(out), GITHUB_STEP_SUMMARY=str(summary), INPUT_MODE="abort")
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "canary_step.py"), "--provider", provider,
                           "--namespace", ns, "--stable", "llm-stable", "--canary", "llm-canary", "--route", "llm",
                           "--kubeconfig", cluster.kubeconfig, "--report", str(tmp / "report.json")],
                          capture_output=True, text=True, timeout=120, env=env)
    return proc, tools.read_outputs(out), json.loads((tmp / "report.json").read_text())


@pytest.fixture
def world(k8s_cluster, k8s_namespace):
    from kubernetes import client

    apps = client.AppsV1Api(k8s_cluster.api_client)
    apps.create_namespaced_deployment(k8s_namespace, deployment("llm-stable", "v1", 4))
    apps.create_namespaced_deployment(k8s_namespace, deployment("llm-canary", "v2", 1))
    kube = connect(kubeconfig=k8s_cluster.kubeconfig, timeout=10)
    yield apps, kube
    kube.close()


def test_abort_mid_walk_returns_all_traffic_and_a_second_abort_is_a_no_op(k8s_cluster, k8s_namespace, world,
                                                                          tmp_path):
    apps, kube = world
    ns = k8s_namespace
    net = kube.networking()
    net.create_namespaced_ingress(ns, {"metadata": {"name": "llm"}, "spec": {"rules": [{"http": {"paths": [
        {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "llm-stable", "port": {"number": 80}}}}]}}]}})
    router = get_router("nginx", kube, Target(ns, "llm-stable", "llm-canary", route="llm"))
    router.reconcile()  # what an earlier step run left: the canary Ingress at 25 %, progress recorded
    router.set_routes(25)
    state.save(kube, ns, "llm-canary", Progress("v2", "v1", [10, 25, 50, 100], step_index=1, windows=3))
    assert nginx_canary_weight(net, ns) == 25

    proc, outputs, record = abort(k8s_cluster, ns, tmp_path, "nginx")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (outputs["result"], outputs["decision"], outputs["phase"], outputs["weight"]) == (
        "rollback", "rollback", "rolled_back", "0")
    assert "was progressing after 3 window(s), canary weight was 25%" in outputs["reason"]
    assert record["actions"][:3] == ["canary weight set to 0", "nginx routing finalized (all traffic to stable)",
                                     "Deployment llm-canary scaled to 0"]
    assert nginx_canary_weight(net, ns) == 0
    assert [i.metadata.name for i in net.list_namespaced_ingress(ns).items] == ["llm"]
    assert apps.read_namespaced_deployment("llm-canary", ns).spec.replicas == 0
    assert apps.read_namespaced_deployment("llm-stable", ns).spec.replicas == 4
    assert state.load(kube, ns, "llm-canary").phase == "rolled_back"
    assert "all traffic is on stable" in (tmp_path / "summary.md").read_text()

    proc, outputs, record = abort(k8s_cluster, ns, tmp_path, "nginx")  # idempotent
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert outputs["result"] == "rollback" and outputs["weight"] == "0"
    assert record["actions"][0] == "canary weight already 0 (no canary route)"
    assert [i.metadata.name for i in net.list_namespaced_ingress(ns).items] == ["llm"]


def test_abort_of_a_canary_never_started(k8s_cluster, k8s_namespace, world, tmp_path):
    apps, kube = world
    ns = k8s_namespace
    custom = kube.custom()
    custom.create_namespaced_custom_object("gateway.networking.k8s.io", "v1", ns, "httproutes", {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "llm"},
        "spec": {"rules": [{"backendRefs": [{"name": "llm-stable", "port": 80}]}]}})
    proc, outputs, record = abort(k8s_cluster, ns, tmp_path, "gateway-api")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert outputs["phase"] == "rolled_back" and "was never started" in outputs["reason"]
    route = custom.get_namespaced_custom_object("gateway.networking.k8s.io", "v1", ns, "httproutes", "llm")
    weights = {d["name"]: d.get("weight", 1) for d in route["spec"]["rules"][0]["backendRefs"]}
    assert weights.get("llm-canary", 0) == 0 and weights["llm-stable"] == 100
    assert apps.read_namespaced_deployment("llm-canary", ns).spec.replicas == 0
    assert record["canary_version"] == "v2" and record["stable_version"] == "v1"
