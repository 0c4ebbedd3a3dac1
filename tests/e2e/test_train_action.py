"""train-on-self-hosted-gpu run by act on a [self-hosted, gpu]-labelled job, CPU-only (allow-cpu)."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.actrun import run_workflow

ROOT = Path(__file__).resolve().parents[2]

WORKFLOW = """
on: push
jobs:
  train:
    runs-on: [self-hosted, gpu]
    steps:
      - uses: actions/checkout@v4
      - id: train
        uses: ./actions/train-on-self-hosted-gpu
        with:
          model: {model}
          dataset: {dataset}
          output-dir: models/e2e
          model-version: e2e-1
          allow-cpu: "true"
          mixed-precision: "no"
          max-steps: "4"
          max-seq-length: "64"
          batch-size: "2"
          logging-steps: "1"
          python: ${{{{ env.PYTHON }}}}
          install: "false"
      - id: check
        shell: bash
        env:
          MODEL_DIR: ${{{{ steps.train.outputs.model-dir }}}}
        run: >-
          PYTHONPATH=. "$PYTHON" -c "import os; from llmops.train.metadata import read_model_metadata as r;
          m = r(os.environ['MODEL_DIR']); print('steps', m['metrics']['steps'], m['hardware']['device'])"
"""


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from llmops.demo.tiny_model import build_tiny_model, texts_from_jsonl

    return build_tiny_model(tmp_path_factory.mktemp("tiny"), texts_from_jsonl([ROOT / "examples/data/train.jsonl"]))


@pytest.mark.act
def test_the_action_trains_on_cpu_and_reports_its_outputs(tmp_path, tiny_model):
    result = run_workflow(tmp_path, WORKFLOW.format(model=tiny_model, dataset="examples/data/train.jsonl"))
    assert result.ok, result.stdout[-6000:]
    assert result.outcome("train", "train") == "success"
    assert result.output("train", "train", "result") == "success"
    assert result.output("train", "train", "model-dir") == "models/e2e"
    assert result.output("train", "train", "model-version") == "e2e-1"
    assert float(result.output("train", "train", "train-loss")) > 0
    assert "allow-cpu is true: GPU checks skipped" in result.stdout
    assert "accelerate.commands.launch --config_file" in result.stdout
    assert "steps 4 cpu" in result.stdout


@pytest.mark.act
def test_a_missing_dataset_fails_the_step_with_the_fix(tmp_path, tiny_model):
    result = run_workflow(tmp_path, WORKFLOW.format(model=tiny_model, dataset="data/training.jsonl"))
    assert not result.ok
    assert result.outcome("train", "train") == "failure"
    assert "dataset: file not found: data/training.jsonl" in result.stdout
    assert "Traceback" not in result.stdout
