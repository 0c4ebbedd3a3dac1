"""workflows-templates/rollback.yml played by act from a consumer repository against the real control plane: the
one-click rollback restores the previous version (rolling, then blue-green) and says so in the summary, and it also
restores the version live before a promotion that was killed mid-rollout (waiting out the dead run's lock)."""
from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
from kubernetes import client as k8s

from tests.e2e.actrun import ROOT, run_workflow
from tests.infra import tools
from tests.integration.promote_helpers import ModelServer, deployment, run_cli, start_cli

pytestmark = [pytest.mark.k8s, pytest.mark.act, pytest.mark.slow, *tools.timeout_marks(900)]


def _consumer(tmp: Path) -> Path:
    repo = tmp / "consumer"
    (repo / ".github" / "workflows").mkdir(parents=True)
    shutil.copy(ROOT / "workflows-templates" / "rollback.yml", repo / ".github" / "workflows")
    for args in (("init", "-q", "-b", "main"), ("add", "-A"),
                 ("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "consumer")):
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)
    return repo


def _dispatch(cluster, repo: Path, tmp: Path, ns: str, deployment_name: str, url: str, **variables: str):
    import sys

    workflow = (repo / ".github" / "workflows" / "rollback.yml").read_text()
    values = {"LLMOPS_PRODUCTION_NAMESPACE": ns, "LLMOPS_STABLE_DEPLOYMENT": deployment_name,
              "LLMOPS_PRODUCTION_URL": url, "LLMOPS_PYTHON": sys.executable, "LLMOPS_INSTALL": "false", **variables}
    return run_workflow(tmp, workflow, event="workflow_dispatch", repo=repo, inputs={"environment": "production"},
                        variables=values, secrets={"KUBECONFIG": Path(cluster.kubeconfig).read_text()},
                        local_repositories={"llmops-actions/llmops-actions@v1": ROOT}, timeout=600)


def _image(apps, ns, name):
    return apps.read_namespaced_deployment(name, ns).spec.template.spec.containers[0].image


def test_rollback_template_restores_the_previous_version_rolling_blue_green_and_after_an_interrupted_promotion(
        k8s_cluster, tmp_path):
    apps, core = k8s.AppsV1Api(k8s_cluster.api_client), k8s.CoreV1Api(k8s_cluster.api_client)
    repo, server = _consumer(tmp_path), ModelServer()
    try:
        # rolling: v1 -> v2 promoted, then one click
        ns = k8s_cluster.namespace()
        apps.create_namespaced_deployment(ns, deployment("llm-stable", "reg/llm:v1"))
        base = ("--kubeconfig", k8s_cluster.kubeconfig, "--namespace", ns, "--deployment", "llm-stable", "--force")
        assert run_cli(*base, "--image", "reg/llm:v2", "--model-version", "v2").returncode == 0
        result = _dispatch(k8s_cluster, repo, tmp_path / "rolling", ns, "llm-stable", server.url)
        steps = result.steps("rollback")
        assert steps["undo"]["outcome"] == "success", result.stdout[-4000:]
        assert steps["undo"]["outputs"]["new-version"] == "v1" and steps["undo"]["outputs"]["result"] == "pass"
        assert "Rolled back production from v2 to model v1 (revision 3)" in result.stdout
        assert _image(apps, ns, "llm-stable") == "reg/llm:v1"

        # blue-green: green went live with v2; the rollback switches the Service back to blue, scaled up first
        ns = k8s_cluster.namespace()
        for color, replicas in (("blue", 2), ("green", 0)):
            apps.create_namespaced_deployment(ns, deployment(f"llm-{color}", "reg/llm:v1", replicas=replicas,
                                                             labels={"app": "llm", "color": color}))
        core.create_namespaced_service(ns, {"metadata": {"name": "llm"}, "spec": {
            "selector": {"app": "llm", "color": "blue"}, "ports": [{"port": 80}]}})
        proc = run_cli("--kubeconfig", k8s_cluster.kubeconfig, "--namespace", ns, "--deployment", "llm", "--force",
                       "--strategy", "blue-green", "--model-version", "v2", "--scale-down-delay", "0")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert core.read_namespaced_service("llm", ns).spec.selector["color"] == "green"
        result = _dispatch(k8s_cluster, repo, tmp_path / "bluegreen", ns, "llm", server.url,
                           LLMOPS_DEPLOY_STRATEGY="blue-green", LLMOPS_SCALE_DOWN_DELAY="0")
        steps = result.steps("rollback")
        assert steps["undo"]["outcome"] == "success", result.stdout[-4000:]
        assert "Rolled back production from v2 to model v1" in result.stdout
        assert core.read_namespaced_service("llm", ns).spec.selector["color"] == "blue"
        assert apps.read_namespaced_deployment("llm-blue", ns).spec.replicas == 2

        # interrupted: a promotion to a version that never becomes ready is SIGKILLed mid-rollout
        ns = k8s_cluster.namespace()
        apps.create_namespaced_deployment(ns, deployment("llm-stable", "reg/llm:v1"))
        k8s_cluster.kubectl("rollout", "status", "deployment/llm-stable", "-n", ns, "--timeout=60s")
        k8s_cluster.kubelet.set_behavior("reg/llm:v2-stuck", "unready")
        killed = start_cli("--kubeconfig", k8s_cluster.kubeconfig, "--namespace", ns, "--deployment", "llm-stable",
                           "--force", "--image", "reg/llm:v2-stuck", "--model-version", "v2", "--lock-ttl", "3")
        try:
            tools.wait_until(lambda: _image(apps, ns, "llm-stable") == "reg/llm:v2-stuck", 60,
                             what="the promotion to write its change")
            time.sleep(0.5)
        finally:
            killed.kill()
            killed.communicate(timeout=30)
        result = _dispatch(k8s_cluster, repo, tmp_path / "interrupted", ns, "llm-stable", server.url)
        steps = result.steps("rollback")
        assert steps["undo"]["outcome"] == "success", result.stdout[-4000:]
        assert "interrupted promotion to v2" in result.stdout and "took the lock over" in result.stdout
        assert "Rolled back production from v2 to model v1" in result.stdout
        assert _image(apps, ns, "llm-stable") == "reg/llm:v1"
    finally:
        server.close()
        k8s_cluster.kubelet.clear()
