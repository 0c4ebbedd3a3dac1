"""Bad inputs to scripts/train.py: a clear message with the fix and exit 2, never a traceback."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "examples/data/train.jsonl"


def run(tmp_path, *args, env=None):
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HOME": str(tmp_path / "hf"), **(env or {})}
    return subprocess.run([sys.executable, str(ROOT / "scripts/train.py"), *args], cwd=tmp_path, env=full_env,
                          capture_output=True, text=True, timeout=300)


def assert_clear(proc, *needles, code=2):
    text = proc.stdout + proc.stderr
    assert proc.returncode == code, text
    assert "Traceback" not in text, text
    for needle in needles:
        assert needle in text, text


@pytest.fixture
def model(tiny_model_dir):
    return str(tiny_model_dir)


def test_missing_dataset(tmp_path, model):
    proc = run(tmp_path, "--model_name", model, "--dataset", "data/training.jsonl", "--output_dir", "out")
    assert_clear(proc, "dataset: file not found: data/training.jsonl", "fix: check the path")
    assert not (tmp_path / "out.partial").exists()


def test_rows_that_fail_the_format(tmp_path, model):
    (tmp_path / "d.jsonl").write_text('{"prompt": "a", "completion": "b"}\n{"prompt": "a", "completion": 3}\n')
    proc = run(tmp_path, "--model_name", model, "--dataset", "d.jsonl", "--output_dir", "out")
    assert_clear(proc, "d.jsonl:2: $.completion: 'completion' must be a string", "validate-data")


def test_sequence_too_long_without_truncation(tmp_path, model):
    rows = [{"text": "short one"}] * 3 + [{"text": "the quick brown fox " * 40}]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    proc = run(tmp_path, "--model_name", model, "--dataset", "d.jsonl", "--output_dir", "out",
               "--max-seq-length", "32")
    assert_clear(proc, "1 sample(s) are longer than max-seq-length 32", "d.jsonl:4 has", "truncation: true")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name, needle", [
    ("./models/base", "model folder not found: ./models/base"),
    ("org/some-model", "HF_HUB_OFFLINE=1 forbids downloading it"),
])
def test_unknown_model(tmp_path, name, needle):
    proc = run(tmp_path, "--model_name", name, "--dataset", str(DATA), "--output_dir", "out",
               env={"HF_HUB_OFFLINE": "1"})
    assert_clear(proc, needle)


def test_a_folder_without_config_or_tokenizer(tmp_path, model):
    (tmp_path / "empty").mkdir()
    proc = run(tmp_path, "--model_name", "empty", "--dataset", str(DATA), "--output_dir", "out")
    assert_clear(proc, "model folder empty has no config.json")
    proc = run(tmp_path, "--model_name", model, "--tokenizer", "empty", "--dataset", str(DATA), "--output_dir", "out")
    assert_clear(proc, "tokenizer folder empty has no tokenizer files")


def test_existing_output_and_bad_flags(tmp_path, model):
    (tmp_path / "out").mkdir()
    proc = run(tmp_path, "--model_name", model, "--dataset", str(DATA), "--output_dir", "out")
    assert_clear(proc, "output-dir out already exists", "overwrite: true")
    proc = run(tmp_path, "--model_name", model, "--dataset", str(DATA), "--output_dir", "o2", "--warmup-ratio", "2")
    assert_clear(proc, "warmup-ratio is a fraction")
    proc = run(tmp_path, "--model_name", model, "--dataset", str(DATA), "--output_dir", "o2",
               env={"INPUT_LORA": "yes"})
    assert_clear(proc, "must be true or false")
