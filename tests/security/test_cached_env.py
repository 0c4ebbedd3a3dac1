"""actions/_lib/ensure-env.sh trusts a cached environment only when it is its own: the key follows the code (no
.git needed), and a planted folder with a `.complete` marker and a fake `bin/python` is rebuilt, never used."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.security.conftest import ROOT


@pytest.fixture
def action_copy(tmp_path) -> Path:
    """The action as a runner downloads it: files, no .git."""
    copy = tmp_path / "action"
    (copy / "actions").mkdir(parents=True)
    shutil.copytree(ROOT / "actions" / "_lib", copy / "actions" / "_lib")
    shutil.copytree(ROOT / "llmops", copy / "llmops", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    return copy


def ensure(copy: Path, tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict[str, str]]:
    out = tmp_path / f"out-{len(list(tmp_path.glob('out-*')))}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "INPUT_", "LLMOPS_", "PIP_"))}
    env.update({"RUNNER_TOOL_CACHE": str(tmp_path / "toolcache"), "GITHUB_OUTPUT": str(out),
                "LLMOPS_PYTHON": sys.executable, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": ""})
    proc = subprocess.run(["bash", str(copy / "actions" / "_lib" / "ensure-env.sh"), *args], env=env,
                          capture_output=True, text=True, timeout=300)
    values = dict(line.split("=", 1) for line in out.read_text().splitlines()) if out.exists() else {}
    return proc, values


def venv_path(copy: Path, tmp_path: Path) -> Path:
    proc, _ = ensure(copy, tmp_path, "--path", "data")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return Path(proc.stdout.strip().splitlines()[-1])


def test_the_key_changes_with_the_code_without_git(action_copy, tmp_path):
    first = venv_path(action_copy, tmp_path)
    assert "nogit" not in first.name
    (action_copy / "llmops" / "gha.py").write_text((action_copy / "llmops" / "gha.py").read_text() + "\n# changed\n")
    assert venv_path(action_copy, tmp_path) != first


def plant(folder: Path, marker: Path) -> None:
    (folder / "bin").mkdir(parents=True)
    real = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    (folder / ".complete").write_text(f"{folder.name} {real}")  # the stamp is guessable: it proves nothing
    fake = folder / "bin" / "python"
    fake.write_text(f"#!/bin/sh\ntouch {marker}\nexec {sys.executable} \"$@\"\n")
    fake.chmod(0o755)


@pytest.mark.slow
def test_a_planted_environment_is_never_used(action_copy, tmp_path):
    marker = tmp_path / "planted-python-ran"
    pyver = f"{sys.version_info[0]}.{sys.version_info[1]}"
    cache = tmp_path / "toolcache" / "llmops-actions"
    planted = [cache / f"1.0.0-nogit-data-py{pyver}"]  # where the old key pointed without .git
    proc, _ = ensure(action_copy, tmp_path, "--path", "data")
    if proc.returncode == 0:
        planted.append(Path(proc.stdout.strip().splitlines()[-1]))
    for folder in planted:
        plant(folder, marker)
    proc, values = ensure(action_copy, tmp_path, "data")  # offline here: the rebuild fails, which is fine
    python = values.get("python", "")
    if python:
        subprocess.run([python, "-c", "pass"], timeout=60)  # the action's next step runs what it was given
    assert not marker.exists(), proc.stdout + proc.stderr
    assert all(not python.startswith(str(f)) for f in planted)
    assert "not using the cached environment" in proc.stdout and "bin/python is not a link" in proc.stdout


def test_a_genuine_cached_environment_is_reused(action_copy, tmp_path):
    venv = venv_path(action_copy, tmp_path)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(venv)], check=True,
                   timeout=120)
    real = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    (venv / ".complete").write_text(f"{venv.name} {real}")
    proc, values = ensure(action_copy, tmp_path, "data")
    assert proc.returncode == 0 and values["python"] == str(venv / "bin" / "python"), proc.stdout + proc.stderr
    assert "Creating" not in proc.stdout
    venv.chmod(0o777)  # writable by anyone: someone else could have changed it
    proc, _ = ensure(action_copy, tmp_path, "--check", "data")
    assert proc.stdout.strip().endswith("writable by other users"), proc.stdout + proc.stderr
    venv.chmod(0o755)
    (venv / "bin" / "python").unlink()
    (venv / "bin" / "python").symlink_to("/bin/sh")
    proc, _ = ensure(action_copy, tmp_path, "--check", "data")
    assert proc.stdout.strip().endswith(f"bin/python is not a link to {real}"), proc.stdout + proc.stderr
