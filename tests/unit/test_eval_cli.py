"""scripts/evaluate_and_gate.py as a user runs it: seed flags, the verdict, exit codes, and clear errors for bad input."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EVAL = ROOT / "examples/data/eval.jsonl"


def cli(*args, cwd, env=None):
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "HF_EVALUATE_OFFLINE": "1",
                "OMP_NUM_THREADS": "1", **(env or {})}
    for key in ("GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY", "GITHUB_ACTIONS"):
        full_env.pop(key, None)
    return subprocess.run([sys.executable, str(ROOT / "scripts/evaluate_and_gate.py"), *args], cwd=cwd,
                          env=full_env, capture_output=True, text=True, timeout=300)


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def predictions(tmp_path):
    rows = [json.loads(line) for line in EVAL.read_text().splitlines() if line.strip()]
    good = write_jsonl(tmp_path / "good.jsonl", [{"prompt": r["prompt"], "prediction": r["reference"],
                                                   "latency_s": 0.2} for r in rows])
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": r["prompt"], "prediction": "no idea", "latency_s": 0.2}
                                               for r in rows])
    return good, bad


def test_seed_flags_on_a_local_model_folder(tiny_model_dir, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    (model / "llmops-model.json").write_text(json.dumps({"model_version": "v7", "base_model": "tiny",
                                                          "nested": {"ignored": True}}))
    proc = cli("--model_dir", str(model), "--eval_data", str(EVAL), "--metrics", "accuracy,bleu,rouge,perplexity",
               "--max-new-tokens", "4", "--batch-size", "8", "--report", "out/verdict.json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    verdict = json.loads((tmp_path / "out/verdict.json").read_text())
    assert set(verdict["metrics"]) >= {"accuracy", "bleu", "rouge1", "rouge2", "rouge_l", "perplexity",
                                       "latency_p95", "tokens_per_s"}
    assert verdict["model"]["version"] == "v7" and verdict["model"]["info"] == {"model_version": "v7",
                                                                               "base_model": "tiny"}
    assert verdict["data"]["n"] == 16 and verdict["data"]["hash"].startswith("sha256:")
    assert "generating" in proc.stderr
    assert "Model **v7** on 16 samples" in proc.stdout
    assert "| `perplexity` |" in proc.stdout and "output result=pass" in proc.stdout


def test_a_broken_llmops_model_json_is_ignored_with_a_warning(tmp_path, caplog):
    from llmops.eval.runner import read_model_info

    (tmp_path / "llmops-model.json").write_text("{broken")
    assert read_model_info(tmp_path) == {}
    assert "ignoring" in caplog.text
    (tmp_path / "llmops-model.json").write_text("[1, 2]")
    assert read_model_info(tmp_path) == {}


def test_regression_against_a_baseline_exits_1_with_outputs(tmp_path, predictions):
    good, bad = predictions
    base = cli("--predictions", str(good), "--eval_data", str(EVAL), "--report", "base.json", cwd=tmp_path)
    assert base.returncode == 0, base.stdout + base.stderr
    proc = cli("--predictions", str(bad), "--eval_data", str(EVAL), "--baseline", "base.json", "--min-samples", "10",
               "--report", "cand.json", cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "output result=fail" in proc.stdout and "output verdict-path=cand.json" in proc.stdout
    assert "output accuracy=0.0" in proc.stdout and "▼ -1 🔴" in proc.stdout
    assert "error: accuracy: " in proc.stdout and "regressed" in proc.stdout
    verdict = json.loads((tmp_path / "cand.json").read_text())
    assert verdict["metrics"]["accuracy"]["baseline"]["discordant"] == {"baseline_only": 16, "candidate_only": 0}


def test_inconclusive_policy_via_action_style_env(tmp_path, predictions):
    good, bad = predictions
    cli("--predictions", str(good), "--eval_data", str(EVAL), "--report", "base.json", cwd=tmp_path)
    env = {"INPUT_PREDICTIONS": str(bad), "INPUT_EVAL_DATA": str(EVAL), "INPUT_BASELINE": "base.json",
           "INPUT_ON_INCONCLUSIVE": "pass", "INPUT_MIN_SAMPLES": "100", "INPUT_METRICS": "accuracy"}
    proc = cli(cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "output result=inconclusive" in proc.stdout
    proc = cli(cwd=tmp_path, env={**env, "INPUT_ON_INCONCLUSIVE": "fail"})
    assert proc.returncode == 1 and "output result=inconclusive" in proc.stdout


def test_threshold_file_and_cost(tmp_path, predictions):
    good, _ = predictions
    rows = [json.loads(line) for line in good.read_text().splitlines()]
    priced = write_jsonl(tmp_path / "priced.jsonl", [{**r, "prompt_tokens": 10, "output_tokens": 2} for r in rows])
    (tmp_path / "t.yml").write_text("thresholds:\n  accuracy: 0.9\n  cost: {max: 0.001}\n"
                                    "gate: {min_samples: 5}\nprices: {input_per_1k_tokens: 0.05, "
                                    "output_per_1k_tokens: 0.1}\n")
    proc = cli("--predictions", str(priced), "--eval_data", str(EVAL), "--thresholds", "t.yml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    verdict = json.loads((tmp_path / "evaluate-verdict.json").read_text())
    assert verdict["metrics"]["cost"]["value"] == pytest.approx((10 * 0.05 + 2 * 0.1) / 1000)
    assert verdict["metrics"]["accuracy"]["threshold"] == {"min": 0.9, "max": None}


@pytest.mark.parametrize("case, args, code, message", [
    ("missing eval", ["--predictions", "p.jsonl", "--eval_data", "nope.jsonl"], 2, "eval data: file not found: nope.jsonl"),
    ("no reference", ["--predictions", "p.jsonl", "--eval_data", "noref.jsonl"], 2,
     "noref.jsonl:2: row has no reference"),
    ("unknown metric", ["--predictions", "p.jsonl", "--eval_data", "eval.jsonl", "--metrics", "accuracy,blue"], 2,
     "unknown metric: 'blue'"),
    ("malformed pair", ["--predictions", "p.jsonl", "--eval_data", "eval.jsonl", "--thresholds", "accuracy=>0.5"], 2,
     "malformed --thresholds value 'accuracy=>0.5'"),
    ("bad file key", ["--predictions", "p.jsonl", "--eval_data", "eval.jsonl", "--thresholds", "bad.yml"], 2,
     "bad.yml: unknown key treshold"),
    ("missing thresholds file", ["--predictions", "p.jsonl", "--eval_data", "eval.jsonl", "--thresholds", "x.yml"],
     2, "thresholds file not found: x.yml"),
    ("two backends", ["--predictions", "p.jsonl", "--endpoint", "http://x", "--eval_data", "eval.jsonl"], 2,
     "give exactly one of --model-dir, --endpoint or --predictions"),
    ("uncomputable", ["--predictions", "p.jsonl", "--eval_data", "eval.jsonl", "--thresholds", "perplexity<=50"], 2,
     "cannot compute perplexity: perplexity needs the local model backend"),
    ("missing prediction", ["--predictions", "short.jsonl", "--eval_data", "eval.jsonl"], 2,
     "no prediction for 1 of 2 eval samples"),
    ("bad baseline", ["--predictions", "p.jsonl", "--eval_data", "eval.jsonl", "--baseline", "eval.jsonl"], 2,
     "baseline verdict eval.jsonl is not valid JSON"),
    ("hf offline", ["--predictions", "p.jsonl", "--eval_data", "eval.jsonl", "--metrics", "hf:bertscore"], None,
     "bertscore"),
])
def test_bad_inputs_give_clear_errors(tmp_path, case, args, code, message):
    write_jsonl(tmp_path / "eval.jsonl", [{"prompt": "a", "reference": "x"}, {"prompt": "b", "answer": "y"}])
    write_jsonl(tmp_path / "noref.jsonl", [{"prompt": "a", "reference": "x"}, {"prompt": "b"}])
    write_jsonl(tmp_path / "p.jsonl", [{"prompt": "a", "prediction": "x"}, {"prompt": "b", "prediction": "y"}])
    write_jsonl(tmp_path / "short.jsonl", [{"prompt": "a", "prediction": "x"}])
    (tmp_path / "bad.yml").write_text("treshold:\n  accuracy: 0.5\ngate: {}\n")
    proc = cli(*args, cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out, out
    assert proc.returncode == (code if code is not None else proc.returncode) and proc.returncode in (2, 3), out
    assert message in out
    assert "output result=error" in proc.stdout
