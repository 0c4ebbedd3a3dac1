"""evaluate-and-gate as a workflow uses it, run with act: a local model folder, then two candidates gated against
a baseline verdict (one better, one a real regression that fails the job step; there accuracy decides and the
other metrics are guards that only warn)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.actrun import run_workflow

pytestmark = [pytest.mark.act, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
EVAL = ROOT / "examples/data/eval.jsonl"

WORKFLOW = """
on: push
jobs:
  gate:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - id: local
        uses: ./actions/evaluate-and-gate
        with:
          model-dir: {model}
          eval-data: examples/data/eval.jsonl
          metrics: accuracy,bleu,perplexity
          thresholds: bleu>=0,latency_p95<=120
          max-new-tokens: "4"
          min-samples: "10"
          report: {tmp}/local.json
          python: ${{{{ env.PYTHON }}}}
          install: "false"
      - id: good
        uses: ./actions/evaluate-and-gate
        with:
          predictions: {good}
          eval-data: examples/data/eval.jsonl
          baseline: ${{{{ steps.local.outputs.verdict-path }}}}
          min-samples: "10"
          report: {tmp}/good.json
          python: ${{{{ env.PYTHON }}}}
          install: "false"
      - id: bad
        continue-on-error: true
        uses: ./actions/evaluate-and-gate
        with:
          predictions: {bad}
          eval-data: examples/data/eval.jsonl
          baseline: ${{{{ steps.good.outputs.verdict-path }}}}
          min-samples: "10"
          primary-metrics: accuracy
          correction: westfall-young
          report: {tmp}/bad.json
          python: ${{{{ env.PYTHON }}}}
          install: "false"
"""


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    from llmops.demo.tiny_model import build_tiny_model, texts_from_jsonl

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"), texts_from_jsonl([ROOT / "examples/data/train.jsonl"]))


def test_gate_through_act(tmp_path, tiny_model_dir):
    rows = [json.loads(line) for line in EVAL.read_text().splitlines() if line.strip()]
    good, bad = tmp_path / "good.jsonl", tmp_path / "bad.jsonl"
    good.write_text("".join(json.dumps({"prompt": r["prompt"], "prediction": r["reference"]}) + "\n" for r in rows))
    bad.write_text("".join(json.dumps({"prompt": r["prompt"], "prediction": "pass"}) + "\n" for r in rows))
    workflow = WORKFLOW.format(model=tiny_model_dir, tmp=tmp_path, good=good, bad=bad)
    result = run_workflow(tmp_path, workflow, timeout=900)
    steps = result.steps("gate")
    assert steps["local"]["outcome"] == "success", result.stdout[-6000:]
    local = steps["local"]["outputs"]
    assert local["result"] == "pass" and local["verdict-path"] == f"{tmp_path}/local.json"
    assert float(local["perplexity"]) > 1 and float(local["latency-p95"]) > 0 and local["bleu"] != ""
    assert steps["good"]["outcome"] == "success", result.stdout[-6000:]
    assert steps["good"]["outputs"]["result"] == "pass" and steps["good"]["outputs"]["accuracy"] == "1.0"
    assert steps["bad"]["outcome"] == "failure"
    verdict = json.loads((tmp_path / "bad.json").read_text())
    assert verdict["result"] == "fail"
    assert verdict["metrics"]["accuracy"]["baseline"]["p_value"] < 0.001
    assert "accuracy regressed" in result.stdout
    assert verdict["metrics"]["accuracy"]["role"] == "primary" and verdict["gate"]["family"] == ["accuracy"]
    assert verdict["metrics"]["rouge1"]["role"] == "guard" and verdict["metrics"]["rouge1"]["status"] == "warn"
