"""The act harness itself: a composite action's outputs, a failing step, and env reach the test."""
import subprocess

from tests.e2e.actrun import run_workflow

ACTION = """
name: hello
inputs:
  who: {description: who, default: world}
outputs:
  result: {description: r, value: "${{ steps.s.outputs.result }}"}
runs:
  using: composite
  steps:
    - id: s
      shell: bash
      env: {WHO: "${{ inputs.who }}"}
      run: echo "result=hi $WHO" >> "$GITHUB_OUTPUT"; exit "${FAIL_IT:-0}"
"""

WORKFLOW = """
on: push
jobs:
  j:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - id: h
        uses: ./actions/hello
        with: {who: tester}
"""


def _repo(tmp_path):
    repo = tmp_path / "repo"
    (repo / "actions" / "hello").mkdir(parents=True)
    (repo / "actions" / "hello" / "action.yml").write_text(ACTION)
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    return repo


def test_outputs_of_a_local_composite_action(tmp_path):
    result = run_workflow(tmp_path, WORKFLOW, repo=_repo(tmp_path))
    assert result.ok, result.stdout
    assert result.output("j", "h", "result") == "hi tester"


def test_a_failing_step_fails_the_run(tmp_path):
    result = run_workflow(tmp_path, WORKFLOW, repo=_repo(tmp_path), env={"FAIL_IT": "1"})
    assert not result.ok
    assert result.outcome("j", "h") == "failure"
