"""Nothing lost, nothing judged on garbage: an output never overwrites an input, train never deletes a folder it
did not create nor writes outside the workspace by accident, and NaN / infinite numbers in a baseline verdict or
a predictions file are input errors naming the file and field (they used to pass the gate)."""
from __future__ import annotations

import json

import pytest

ROWS = [{"id": f"q{i}", "prompt": f"question {i}", "reference": f"answer {i}"} for i in range(40)]


@pytest.fixture
def eval_files(runner):
    data = runner.workspace / "eval.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    preds = runner.workspace / "preds.jsonl"
    preds.write_text("".join(json.dumps({"id": r["id"], "prediction": r["reference"], "latency_s": 0.1}) + "\n"
                             for r in ROWS))
    return data, preds


def gate(runner, data, preds, *extra):
    return runner.run("evaluate_and_gate.py", "--predictions", str(preds), "--eval_data", str(data), "--metrics",
                      "accuracy,latency_p95", *extra)


def test_evaluate_report_pointing_at_the_eval_data_is_refused(runner, eval_files):
    data, preds = eval_files
    before = data.read_bytes()
    for flag in ("--report", "--predictions-out"):
        res = gate(runner, data, preds, flag, str(data))
        assert res.code == 2 and "would overwrite an input" in res.log, res.log[-1500:]
    assert data.read_bytes() == before


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_baseline_metrics_are_input_errors(runner, eval_files, value):
    data, preds = eval_files
    baseline = runner.workspace / "baseline.json"
    assert gate(runner, data, preds, "--report", str(baseline)).code == 0
    text = baseline.read_text()
    doc = json.loads(text)
    doc["metrics"]["accuracy"]["value"] = 0.0
    doc["samples"]["stats"]["accuracy"] = [0] * len(ROWS)
    poisoned = json.dumps(doc).replace('"value": 0.0', f'"value": {value}', 1)
    baseline.write_text(poisoned)
    res = gate(runner, data, preds, "--baseline", str(baseline), "--report", str(runner.workspace / "v.json"))
    assert res.code == 2, res.log[-1500:]
    assert "metrics.accuracy.value is not a finite number" in res.log and "baseline.json" in res.log
    assert res.outputs.get("result") == "error"


@pytest.mark.parametrize("value, shown", [("NaN", "nan"), ("Infinity", "inf")])
def test_non_finite_latency_in_predictions_is_an_input_error(runner, eval_files, value, shown):
    data, preds = eval_files
    lines = preds.read_text().splitlines()
    lines[3] = lines[3].replace('"latency_s": 0.1', f'"latency_s": {value}')
    preds.write_text("\n".join(lines) + "\n")
    res = gate(runner, data, preds)
    assert res.code == 2 and f"preds.jsonl:4: 'latency_s' must be a non-negative number, got {shown}" in res.log, \
        res.log


@pytest.fixture
def fake_model(runner):
    """Arguments that fail only at the model check, after the output checks (no torch is loaded)."""
    data = runner.workspace / "train.jsonl"
    data.write_text('{"text": "hello"}\n')
    return ["--model_name", str(runner.workspace / "no-such-model"), "--dataset", str(data)]


def test_train_never_deletes_an_unrelated_partial_folder(runner, fake_model):
    mine = runner.workspace / "models" / "v1.partial"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("my own work")
    res = runner.run("train.py", *fake_model, "--output_dir", "models/v1")
    assert res.code == 2 and "was not created by a training run" in res.log, res.log[-1500:]
    assert (mine / "notes.txt").read_text() == "my own work"


def test_train_refuses_a_relative_output_outside_the_workspace(runner, fake_model):
    res = runner.run("train.py", *fake_model, "--output_dir", "../../escaped")
    assert res.code == 2 and "is outside the workspace" in res.log, res.log[-1500:]
    assert not (runner.workspace.parent.parent / "escaped").exists()


def test_train_absolute_output_outside_the_workspace_is_allowed_and_named(runner, fake_model, tmp_path):
    store = tmp_path / "model-store" / "v1"
    res = runner.run("train.py", *fake_model, "--output_dir", str(store))
    assert f"output-dir is outside the workspace: writing to {store}" in res.log, res.log[-1500:]
