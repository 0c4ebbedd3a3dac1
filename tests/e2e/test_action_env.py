"""actions/_lib/ensure-env.sh: the environment an action runs in when a user keeps the default `install: true`.

A venv under the runner's tool cache with only the action's extra (validate-data must not pull torch), built once
and reused; `install: false` uses the given Python with this checkout's library; bad values are clear errors.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "actions" / "_lib" / "ensure-env.sh"


def ensure(tmp_path: Path, extra: str, **env: str) -> tuple[subprocess.CompletedProcess, dict[str, str]]:
    out = tmp_path / f"out-{len(list(tmp_path.glob('out-*')))}"
    full = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "INPUT_", "LLMOPS_"))}
    full.update({"RUNNER_TOOL_CACHE": str(tmp_path / "toolcache"), "GITHUB_OUTPUT": str(out),
                 "LLMOPS_PYTHON": sys.executable, **env})
    proc = subprocess.run(["bash", str(SCRIPT), extra], env=full, capture_output=True, text=True, timeout=900)
    values = dict(line.split("=", 1) for line in out.read_text().splitlines()) if out.exists() else {}
    return proc, values


@pytest.mark.slow
def test_install_true_builds_a_cached_venv_with_only_the_actions_extra(tmp_path):
    proc, values = ensure(tmp_path, "data")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    python = values["python"]
    assert python.startswith(str(tmp_path / "toolcache" / "llmops-actions")) and values["pythonpath"] == ""
    data = tmp_path / "d.jsonl"
    data.write_text('{"prompt": "a", "completion": "b"}\n{"prompt": "c", "completion": "d"}\n')
    run = subprocess.run([python, str(ROOT / "scripts" / "validate_data.py"), "--input", str(data), "--format",
                          "prompt-completion", "--report", str(tmp_path / "r.json")],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path,
                         env={k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "INPUT_"))})
    assert run.returncode == 0, run.stdout + run.stderr
    assert "output result=pass" in run.stdout
    torch = subprocess.run([python, "-c", "import torch"], capture_output=True, text=True, timeout=60)
    assert torch.returncode != 0  # validate-data's environment never pulls torch
    again, values2 = ensure(tmp_path, "data")
    assert again.returncode == 0 and values2["python"] == python
    assert "Creating" in proc.stdout and "Creating" not in again.stdout  # reused, not rebuilt


def test_install_false_uses_the_given_python_with_this_checkouts_library(tmp_path):
    proc, values = ensure(tmp_path, "train", LLMOPS_INSTALL="false")
    assert proc.returncode == 0, proc.stderr
    assert values == {"python": sys.executable, "pythonpath": str(ROOT)}
    assert not (tmp_path / "toolcache").exists()


@pytest.mark.parametrize("env, words", [
    ({"LLMOPS_INSTALL": "yes"}, "input 'install' must be true or false"),
    ({"LLMOPS_PYTHON": "/nonexistent/python3"}, "no Python >= 3.10 found"),
])
def test_bad_settings_are_clear_errors(tmp_path, env, words):
    proc, _ = ensure(tmp_path, "data", **env)
    assert proc.returncode == 2
    assert words in proc.stdout
