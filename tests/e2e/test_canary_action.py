"""actions/canary-step run by act against real parts (control plane, prometheus, echo servers, load splitter from
tests/integration/test_canary_step.py): two step-mode runs in one job; the second resumes from the weight the
first recorded on the canary Deployment, and a later step reads the outputs; then mode what-if replays a bad
canary's windows offline (no cluster inputs) and rolls it back."""
from __future__ import annotations

import pytest

from tests.e2e.actrun import run_workflow
from tests.infra import tools
from tests.integration.test_canary_step import Canary

pytestmark = [pytest.mark.k8s, pytest.mark.prometheus, pytest.mark.act, *tools.timeout_marks(600)]

STEP = """
        uses: ./actions/canary-step
        with:
          mode: step
          provider: nginx
          namespace: ${{ env.TEST_NS }}
          stable: llm-stable
          canary: llm-canary
          route: llm
          steps: 20,50,100
          interval: 4s
          min-requests: "10"
          prometheus-url: ${{ env.TEST_PROM }}
          kubeconfig: ${{ env.TEST_KUBECONFIG }}
          report: ${{ runner.temp }}/canary.json
          python: ${{ env.PYTHON }}
          install: "false"
"""
WORKFLOW = f"""
on: push
jobs:
  canary:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - id: first{STEP}
      - id: second{STEP}
      - id: after
        shell: bash
        env:
          FIRST: ${{{{ steps.first.outputs.result }}}}/${{{{ steps.first.outputs.next-weight }}}}
          SECOND: ${{{{ steps.second.outputs.result }}}}/${{{{ steps.second.outputs.weight }}}}
        run: echo "first $FIRST second $SECOND"
""" + """
      - id: windows
        shell: bash
        run: |
          printf '%s\\n' '{"canary": {"requests": 100, "errors": 1}, "stable": {"requests": 1900, "errors": 19}}' \\
            '{"canary": {"requests": 100, "errors": 40}, "stable": {"requests": 1900, "errors": 19}}' \\
            > "$RUNNER_TEMP/windows.jsonl"
      - id: whatif
        continue-on-error: true
        uses: ./actions/canary-step
        with:
          mode: what-if
          windows: ${{ runner.temp }}/windows.jsonl
          python: ${{ env.PYTHON }}
          install: "false"
"""


def test_canary_step_action_under_act(tmp_path, k8s_cluster, k8s_namespace, prometheus_server):  # noqa: F811
    world = Canary(k8s_cluster, k8s_namespace, prometheus_server, tmp_path, "nginx", {}, rate=40)
    try:
        result = run_workflow(tmp_path / "act", WORKFLOW, env={
            "TEST_KUBECONFIG": k8s_cluster.kubeconfig, "TEST_NS": k8s_namespace, "TEST_PROM": world.prom.url})
    finally:
        world.close()
    steps = result.steps("canary")
    assert steps["first"]["outcome"] == "success", result.stdout[-4000:]
    assert steps["first"]["outputs"]["result"] == "continue"
    assert steps["first"]["outputs"]["next-weight"] == "50"  # passed at 20 %
    assert steps["second"]["outputs"]["weight"] == "50"  # resumed from the recorded step
    assert "first continue/50 second continue/50" in result.stdout
    assert world.weight() == 50
    assert steps["whatif"]["outcome"] == "failure" and steps["whatif"]["outputs"]["result"] == "rollback"
    assert '"window":2' in result.stdout and "shown above 5.00%" in result.stdout
