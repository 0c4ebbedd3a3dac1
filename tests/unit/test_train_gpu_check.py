"""benchmarks/gpu_check.sh on a machine without CUDA: it says so, exits 3 and runs nothing (the GPU part runs only
where a GPU is lent; its numbers are quoted in docs/self-hosted-gpu-runner.md)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("python", [sys.executable, "/nonexistent/python3"])
def test_without_cuda_it_fails_clearly_and_runs_nothing(tmp_path, python):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU: run benchmarks/gpu_check.sh itself")
    env = {**os.environ, "PYTHON": python, "TMPDIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(["bash", str(ROOT / "benchmarks/gpu_check.sh")], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "no CUDA GPU visible to torch here" in proc.stderr and "nothing was run" in proc.stderr
    assert "tokens/s" not in proc.stdout and list(tmp_path.iterdir()) == []
