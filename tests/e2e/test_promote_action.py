"""actions/kubectl-promote run by act against the real test control plane: a promotion whose outputs a later step
reads, then a promotion that stalls and is rolled back (the step fails, the workflow sees rolled-back)."""
from __future__ import annotations

import pytest
from kubernetes import client as k8s

from tests.e2e.actrun import run_workflow
from tests.infra import tools
from tests.integration.promote_helpers import deployment

pytestmark = [pytest.mark.k8s, pytest.mark.act, *tools.timeout_marks(600)]

WORKFLOW = """
on: push
jobs:
  deploy:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - name: verdict from the gate
        shell: bash
        run: |
          echo '{"result": "pass", "reason": "bleu ok"}' > "$RUNNER_TEMP/verdict.json"
      - id: promote
        uses: ./actions/kubectl-promote
        with:
          kubeconfig: ${{ env.TEST_KUBECONFIG }}
          namespace: ${{ env.TEST_NS }}
          deployment: llm
          image: reg/llm:v2
          model-version: v2
          verdict: ${{ runner.temp }}/verdict.json
          timeout: "90"
          python: ${{ env.PYTHON }}
          install: "false"
      - id: bad
        continue-on-error: true
        uses: ./actions/kubectl-promote
        with:
          kubeconfig: ${{ env.TEST_KUBECONFIG }}
          namespace: ${{ env.TEST_NS }}
          deployment: llm
          image: reg/llm:v3-stalls
          model-version: v3
          force: "true"
          timeout: "90"
          python: ${{ env.PYTHON }}
          install: "false"
      - id: after
        shell: bash
        env:
          NEW: ${{ steps.promote.outputs.new-version }}
          REV: ${{ steps.promote.outputs.revision }}
          BAD: ${{ steps.bad.outcome }}
        run: echo "promoted $NEW at revision $REV; bad promotion $BAD"
"""


def test_kubectl_promote_action_under_act(tmp_path, k8s_cluster, k8s_namespace):  # noqa: F811
    ns = k8s_namespace
    k8s.AppsV1Api(k8s_cluster.api_client).create_namespaced_deployment(
        ns, deployment("llm", "reg/llm:v1", deadline=4))
    k8s_cluster.kubectl("rollout", "status", "deployment/llm", "-n", ns, "--timeout=60s")
    k8s_cluster.kubelet.set_behavior("reg/llm:v3-stalls", "unready")
    result = run_workflow(tmp_path, WORKFLOW, env={"TEST_KUBECONFIG": k8s_cluster.kubeconfig, "TEST_NS": ns})
    steps = result.steps("deploy")
    assert steps["promote"]["outcome"] == "success", result.stdout[-4000:]
    out = steps["promote"]["outputs"]
    assert (out["result"], out["previous-version"], out["new-version"], out["revision"], out["rolled-back"]) == \
        ("pass", "v1", "v2", "2", "false")
    assert steps["bad"]["outcome"] == "failure"
    assert "exceeded its progress deadline" in result.stdout and "rolled back to revision 2 (v2)" in result.stdout
    assert "promoted v2 at revision 2; bad promotion failure" in result.stdout
    dep = k8s.AppsV1Api(k8s_cluster.api_client).read_namespaced_deployment("llm", ns)
    assert dep.spec.template.spec.containers[0].image == "reg/llm:v2"
