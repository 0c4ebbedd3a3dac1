"""scripts/train.py end to end on the tiny model (CPU, offline): the loss falls, the folder reloads and generates,
resume continues exactly, a killed run leaves nothing that looks complete, LoRA on chat data (several processes:
test_train_distributed.py)."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmops.train.metadata import read_model_metadata
from tests.infra.tools import read_outputs

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "examples/data/train.jsonl"
COMMON = ["--max-seq-length", "64", "--batch-size", "2", "--learning-rate", "3e-3", "--lr-scheduler", "linear",
          "--warmup-steps", "2", "--logging-steps", "1"]


def train(tmp_path: Path, *args: str, env: dict | None = None, wait: bool = True):
    tmp_path.mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "GITHUB_OUTPUT": str(tmp_path / "out.txt"),
                "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"), **(env or {})}
    cmd = [sys.executable, str(ROOT / "scripts/train.py"), *args]
    if not wait:  # output goes to a file: a pipe nobody reads would stall a long run
        with open(tmp_path / "train.log", "w") as log:
            return subprocess.Popen(cmd, cwd=tmp_path, env=full_env, stdout=log, stderr=subprocess.STDOUT)
    proc = subprocess.run(cmd, cwd=tmp_path, env=full_env, capture_output=True, text=True, timeout=300)
    proc.outputs = read_outputs(tmp_path / "out.txt")
    return proc


def log_records(model_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (model_dir / "train-log.jsonl").read_text().splitlines()]


def sample_loss(model_dir, tokenizer_dir, prompt: str, completion: str) -> float:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    p, c = tok(prompt)["input_ids"], tok(completion, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([p + c])
    labels = torch.tensor([[-100] * len(p) + c])
    with torch.no_grad():
        return float(model(input_ids=ids, labels=labels).loss)


@pytest.fixture(scope="module")
def first_run(tiny_model_dir, tmp_path_factory):
    work = tmp_path_factory.mktemp("train")
    rows = DATA.read_text().splitlines()
    (work / "eval.jsonl").write_text("\n".join(rows[-12:]) + "\n")
    proc = train(work, "--model_name", str(tiny_model_dir), "--dataset", str(DATA), "--eval-dataset", "eval.jsonl",
                 "--output_dir", "models/run1", "--max-steps", "24", "--checkpoint-steps", "8", "--eval-steps", "8",
                 *COMMON, env={"GITHUB_SHA": "0123456789abcdef0123456789abcdef01234567"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return work, proc


def test_training_lowers_the_loss_and_writes_a_complete_versioned_folder(first_run, tiny_model_dir):
    work, proc = first_run
    out = work / "models/run1"
    assert proc.outputs["result"] == "success" and proc.outputs["model-dir"] == "models/run1"
    assert proc.outputs["model-version"] == "0123456789abcdef0123456789abcdef01234567"
    meta = read_model_metadata(out)
    assert meta["dataset"]["files"][0]["sha256"] == hashlib.sha256(DATA.read_bytes()).hexdigest()
    assert meta["dataset"]["rows"] == 59 and meta["metrics"]["steps"] == 24 and meta["metrics"]["tokens_seen"] > 0
    assert meta["libraries"]["torch"] and meta["hardware"]["num_processes"] == 1 and meta["weights"] == "full"
    records = log_records(out)
    losses = [r["loss"] for r in records if "loss" in r]
    evals = [r["eval_loss"] for r in records if "eval_loss" in r]
    assert len(losses) == 24 and losses[-1] < 0.7 * losses[0]
    assert len(evals) == 3 and evals[-1] < evals[0] and float(proc.outputs["eval-loss"]) == pytest.approx(evals[-1])
    # linear schedule with 2 warmup steps: the LR each step used
    lrs = [r["learning_rate"] for r in records if "loss" in r]
    assert lrs[:3] == pytest.approx([0.0, 1.5e-3, 3e-3]) and lrs[-1] == pytest.approx(3e-3 / 22)
    summary = (work / "summary.md").read_text()
    assert "xychart-beta" in summary and "Training loss" in summary and "| eval loss |" in summary
    assert not (work / "models/run1.partial").exists()
    assert sorted(p.name for p in (work / "models/run1.checkpoints").iterdir()) == ["step-00000008", "step-00000016"]
    # the saved folder reloads, generates, and is the trained model (lower loss than the base on training data)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    enc = tok(["What is one plus three?"], return_tensors="pt")
    generated = model.generate(**enc, max_new_tokens=4, do_sample=False)
    assert generated.shape[1] > enc["input_ids"].shape[1]
    row = json.loads(DATA.read_text().splitlines()[0])
    assert sample_loss(out, out, row["prompt"], row["completion"]) < \
        sample_loss(tiny_model_dir, tiny_model_dir, row["prompt"], row["completion"]) - 1


def test_resume_continues_steps_schedule_and_losses_of_the_uninterrupted_run(first_run, tiny_model_dir):
    work, _ = first_run
    proc = train(work, "--model_name", str(tiny_model_dir), "--dataset", str(DATA), "--eval-dataset", "eval.jsonl",
                 "--output_dir", "models/run2", "--max-steps", "24", "--checkpoint-steps", "8", "--eval-steps", "8",
                 "--checkpoint-dir", "models/run1.checkpoints",
                 "--resume-from-checkpoint", "models/run1.checkpoints/step-00000016", "--model-version", "v2", *COMMON)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "resumed from models/run1.checkpoints/step-00000016 at step 16 of 24" in proc.stdout
    full, resumed = log_records(work / "models/run1"), log_records(work / "models/run2")
    assert [r["step"] for r in resumed] == [r["step"] for r in full]
    for a, b in zip(full[-10:], resumed[-10:], strict=True):  # steps 17..24 and their evals: same numbers
        assert b.get("learning_rate") == pytest.approx(a.get("learning_rate"))
        assert b.get("loss", b.get("eval_loss")) == pytest.approx(a.get("loss", a.get("eval_loss")), rel=1e-4)
    meta = read_model_metadata(work / "models/run2")
    assert meta["resumed_from"].endswith("step-00000016") and meta["model_version"] == "v2"
    assert meta["metrics"]["tokens_seen"] == read_model_metadata(work / "models/run1")["metrics"]["tokens_seen"]


def test_a_killed_run_leaves_no_complete_looking_folder_and_resumes_from_latest(tiny_model_dir, tmp_path):
    args = ["--model_name", str(tiny_model_dir), "--dataset", str(DATA), "--output_dir", "out", "--checkpoint-steps",
            "3", "--keep-checkpoints", "1", *COMMON, "--max-seq-length", "48"]
    proc = train(tmp_path, *args, "--max-steps", "100000", wait=False)
    try:
        deadline = time.monotonic() + 240
        while not list((tmp_path / "out.checkpoints").glob("step-*")):  # a complete checkpoint exists
            if proc.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)  # what a cancelled workflow step gets
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = (tmp_path / "train.log").read_text()
    assert proc.returncode == 130, output
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "out.partial/llmops-model.json").exists()
    latest = int(sorted((tmp_path / "out.checkpoints").glob("step-*"))[-1].name[5:])
    done = train(tmp_path, *args, "--max-steps", str(latest + 2), "--resume-from-checkpoint", "latest")
    assert done.returncode == 0, done.stdout + done.stderr
    steps = [r["step"] for r in log_records(tmp_path / "out")]
    assert steps[-2:] == [latest + 1, latest + 2] and steps[:latest] == list(range(1, latest + 1))
    assert read_model_metadata(tmp_path / "out")["metrics"]["steps"] == latest + 2


def test_lora_on_chat_data_trains_the_adapter_and_saves_a_merged_model(tiny_model_dir, tmp_path):
    rows = [json.loads(line) for line in DATA.read_text().splitlines()]
    chats = [{"messages": [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": r["prompt"]},
                           {"role": "assistant", "content": r["completion"].strip()}]} for r in rows]
    (tmp_path / "chat.jsonl").write_text("".join(json.dumps(c) + "\n" for c in chats))
    proc = train(tmp_path, "--model_name", str(tiny_model_dir), "--dataset", "chat.jsonl", "--format", "chat",
                 "--output_dir", "lora", "--lora", "true", "--lora-r", "8", "--max-steps", "16", *COMMON,
                 "--learning-rate", "1e-2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    meta = read_model_metadata(tmp_path / "lora")
    assert meta["format"] == "chat" and meta["weights"] == "full" and meta["config"]["lora"] is True
    assert 0 < meta["config"]["trainable_parameters"] < meta["config"]["parameters"] / 2
    assert (tmp_path / "lora/adapter/adapter_model.safetensors").exists()
    losses = [r["loss"] for r in log_records(tmp_path / "lora") if "loss" in r]
    assert sum(losses[-4:]) / 4 < losses[0] - 0.3  # a random base model with frozen embeddings learns slowly
    from safetensors.torch import load_file

    merged = load_file(tmp_path / "lora/model.safetensors")
    base = load_file(Path(tiny_model_dir) / "model.safetensors")
    changed = [k for k in base if "proj" in k and not (merged[k] == base[k]).all()]
    assert changed, "the merged weights equal the base model: the adapter did not train or was not merged"
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tmp_path / "lora")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "lora")
    enc = tok.apply_chat_template([{"role": "user", "content": "What is two plus two?"}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    assert model.generate(**enc, max_new_tokens=3, do_sample=False).shape[1] > enc["input_ids"].shape[1]
