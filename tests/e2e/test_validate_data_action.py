"""actions/validate-data run by act as a workflow uses it: outputs on good data, a failing step on bad data."""
import json

import pytest

from tests.e2e.actrun import run_workflow

pytestmark = [pytest.mark.act, pytest.mark.slow]

WORKFLOW = """
on: push
jobs:
  check:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - id: good
        uses: ./actions/validate-data
        with:
          input: examples/data/train.jsonl
          schema: examples/data/schema.json
          eval-data: examples/data/eval.jsonl
          min-samples: "10"
          report: reports/good.json
          python: ${{ env.PYTHON }}
          install: "false"
      - name: make a bad file
        shell: bash
        run: |
          head -n 5 examples/data/train.jsonl > bad.jsonl
          echo '{"prompt": "broken' >> bad.jsonl
          head -n 1 examples/data/train.jsonl >> bad.jsonl
      - id: bad
        continue-on-error: true
        uses: ./actions/validate-data
        with:
          input: bad.jsonl
          format: prompt-completion
          fail-on: warning
          report: reports/bad.json
          python: ${{ env.PYTHON }}
          install: "false"
      - name: show the bad report
        if: always()
        shell: bash
        run: cat reports/bad.json
"""


def test_validate_data_action_outputs_and_failure(tmp_path):
    result = run_workflow(tmp_path, WORKFLOW)
    steps = result.steps("check")
    assert steps["good"]["outcome"] == "success", result.stdout[-4000:]
    good = steps["good"]["outputs"]
    assert good["result"] == "pass" and good["num-samples"] == "59" and good["num-errors"] == "0"
    assert good["report-path"] == "reports/good.json"
    assert steps["bad"]["outcome"] == "failure"
    # act drops a failing composite action's outputs, so read what the step printed and the report it wrote
    assert "bad.jsonl" in result.stdout and "malformed JSON" in result.stdout
    start = result.stdout.index('"tool": "llmops validate-data"')
    assert '"result": "fail"' in result.stdout[start:start + 400]
    assert json.dumps("exact duplicate of line 1")[1:-1] in result.stdout
