"""deploy/ against the real control plane: every example the cluster has the API for is accepted by a server-side
dry run, and the pod selection of the metric presets matches the pod names the real controller-manager generates
(and only those), with the pod-template-hash read from the Deployment's current ReplicaSet."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from llmops.canary import presets
from llmops.errors import UsageError

pytestmark = [pytest.mark.k8s]
ROOT = Path(__file__).resolve().parents[2]
APPLIED = ["deploy/vllm/llm.yaml", "deploy/tgi/llm.yaml", "deploy/gateway/httproute.yaml", "deploy/llm-server.yaml"]


@pytest.mark.parametrize("path", APPLIED)
def test_examples_pass_a_server_side_dry_run(k8s_cluster, k8s_namespace, path):
    proc = k8s_cluster.kubectl("apply", "--dry-run=server", "-n", k8s_namespace, "-f", str(ROOT / path),
                               check=False)
    assert proc.returncode == 0, proc.stderr
    assert "(server dry run)" in proc.stdout


def _deployment(name: str, version: str) -> dict:
    labels = {"app": "llm", "track": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 2, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "m", "image": f"model:{version}",
                                                           "env": [{"name": "MODEL_VERSION", "value": version}]}]}}}}


def test_pod_selection_matches_the_pods_the_controller_creates(k8s_cluster, k8s_namespace):
    from kubernetes import client

    from tests.infra import tools

    apps, core = client.AppsV1Api(k8s_cluster.api_client), client.CoreV1Api(k8s_cluster.api_client)
    ns = k8s_namespace
    for name, version in (("llm", "v1"), ("llm-canary", "v2")):  # one name is a prefix of the other
        apps.create_namespaced_deployment(ns, _deployment(name, version))

    def pods() -> dict[str, str]:
        return {p.metadata.name: p.metadata.labels["track"] for p in core.list_namespaced_pod(ns).items}
    tools.wait_until(lambda: len(pods()) == 4, 30, 0.2, "the ReplicaSets' pods")
    found = pods()
    for name in ("llm", "llm-canary"):
        pod_hash = presets.current_pod_template_hash(k8s_cluster.api_client, ns, name)
        for sel in (presets.pod_selector(name), presets.pod_selector(name, pod_hash)):
            pattern = re.search(r'pod=~"([^"]+)"', sel).group(1).replace("\\\\", "\\")
            matched = {p for p in found if re.fullmatch(pattern, p)}
            assert matched == {p for p, track in found.items() if track == name}, (sel, found)
    # A new revision: the old ReplicaSet's pods no longer match the hash-pinned selection.
    old = presets.current_pod_template_hash(k8s_cluster.api_client, ns, "llm")
    apps.patch_namespaced_deployment("llm", ns, {"spec": {"template": {"spec": {"containers": [
        {"name": "m", "image": "model:v3"}]}}}})
    tools.wait_until(lambda: presets.current_pod_template_hash(k8s_cluster.api_client, ns, "llm") != old, 30, 0.2,
                     "the new ReplicaSet")
    with pytest.raises(UsageError) as err:
        presets.current_pod_template_hash(k8s_cluster.api_client, ns, "missing")
    assert "not found" in err.value.message
