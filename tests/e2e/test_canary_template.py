"""workflows-templates/canary.yml played by act from a consumer repository against the real control plane, real
Prometheus and model-server processes under load (tests/integration/test_canary_step.py's ``Canary``): each
dispatch walks one weight (the next recorded one, then the one given), and a dispatch with ``rollback`` ticked
returns all traffic to stable (canary Ingress gone, canary scaled to 0) and says so in the summary."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.e2e.actrun import ROOT, run_workflow
from tests.infra import tools
from tests.integration.test_canary_step import Canary

pytestmark = [pytest.mark.k8s, pytest.mark.prometheus, pytest.mark.act, pytest.mark.slow,
              *tools.timeout_marks(600)]
TEMPLATE = ROOT / "workflows-templates" / "canary.yml"


def _consumer(tmp: Path) -> Path:
    repo = tmp / "consumer"
    (repo / ".github" / "workflows").mkdir(parents=True)
    shutil.copy(TEMPLATE, repo / ".github" / "workflows")
    for args in (("init", "-q", "-b", "main"), ("add", "-A"),
                 ("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "consumer")):
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)
    return repo


def test_canary_template_walks_one_weight_per_dispatch_and_its_rollback_input_returns_all_traffic(
        k8s_cluster, k8s_namespace, prometheus_server, tmp_path):
    assert yaml.safe_load(TEMPLATE.read_text())["jobs"]["step"]["environment"] == "production-canary"  # the gate
    world = Canary(k8s_cluster, k8s_namespace, prometheus_server, tmp_path, "nginx", {}, rate=40)
    repo = _consumer(tmp_path)
    variables = {"LLMOPS_CANARY_PROVIDER": "nginx", "LLMOPS_PRODUCTION_NAMESPACE": k8s_namespace,
                 "LLMOPS_STABLE_DEPLOYMENT": "llm-stable", "LLMOPS_CANARY_DEPLOYMENT": "llm-canary",
                 "LLMOPS_ROUTE": "llm", "LLMOPS_PROMETHEUS_URL": world.prom.url, "LLMOPS_CANARY_INTERVAL": "4s",
                 "LLMOPS_CANARY_STEPS": "20,50,100", "LLMOPS_PYTHON": sys.executable, "LLMOPS_INSTALL": "false"}

    def dispatch(name: str, **inputs: str):
        return run_workflow(tmp_path / name, TEMPLATE.read_text(), event="workflow_dispatch", repo=repo,
                            inputs={"canary-version": "v2", **inputs}, variables=variables,
                            secrets={"KUBECONFIG": Path(k8s_cluster.kubeconfig).read_text()},
                            local_repositories={"llmops-actions/llmops-actions@v1": ROOT}, timeout=300)
    try:
        first = dispatch("first")  # no weight: the first recorded step
        steps = first.steps("step")
        assert steps["walk"]["outcome"] == "success", first.stdout[-4000:]
        assert steps["walk"]["outputs"]["result"] == "continue" and steps["walk"]["outputs"]["weight"] == "20"
        assert steps["abort"]["outcome"] == "skipped"
        assert world.weight() == 20, first.stdout[-4000:]
        assert "Canary v2: continue at 20% (phase progressing" in first.stdout

        second = dispatch("second", weight="50")  # the weight given
        assert second.steps("step")["walk"]["outcome"] == "success", second.stdout[-4000:]
        assert world.weight() == 50 and world.replicas("llm-canary") == 1
        assert 50 in world.load.weights and world.load.sent["canary"] > 0

        back = dispatch("rollback", rollback="true")
        steps = back.steps("step")
        assert steps["walk"]["outcome"] == "skipped"
        assert steps["abort"]["outcome"] == "success", back.stdout[-4000:]
        assert steps["abort"]["outputs"]["decision"] == "rollback"
        assert steps["abort"]["outputs"]["phase"] == "rolled_back"
        assert "canary weight was 50%" in steps["abort"]["outputs"]["reason"]
        assert "Canary v2 aborted: all traffic returned to stable (canary weight 0%, phase rolled_back)" in back.stdout
        assert world.weight() == 0 and world.replicas("llm-canary") == 0 and world.replicas("llm-stable") == 4
        assert [i.metadata.name for i in world.net.list_namespaced_ingress(k8s_namespace).items] == ["llm"]
    finally:
        world.close()
