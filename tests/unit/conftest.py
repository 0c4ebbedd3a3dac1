"""Unit tests run outside any runner: runner files are unset unless a test sets them."""
import pytest


@pytest.fixture(autouse=True)
def _no_runner_env(monkeypatch):
    for name in ("GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY", "GITHUB_ACTIONS", "GITHUB_ENV"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny offline Llama-style model + BPE tokenizer (with chat template), built once per session."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from pathlib import Path

    from llmops.demo.tiny_model import build_tiny_model, texts_from_jsonl

    root = Path(__file__).resolve().parents[2]
    out = tmp_path_factory.mktemp("tiny-model")
    return build_tiny_model(out, texts_from_jsonl([root / "examples/data/train.jsonl"]))
