"""The linters a user's CI would run on our actions and workflows: ruff, zizmor (security), actionlint."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _tool(name: str) -> str:
    path = shutil.which(name) or str(Path(sys.executable).parent / name)
    if not Path(path).exists():
        pytest.fail(f"{name} is not installed: run pip install -r requirements.txt")
    return path


def test_ruff_clean():
    proc = subprocess.run([_tool("ruff"), "check", "--no-cache", "."], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_zizmor_finds_nothing_above_informational():
    # zizmor collects nothing from a folder that is not .github/workflows: name every file.
    targets = sorted(str(p.relative_to(ROOT)) for p in [*ROOT.glob("actions/*/action.yml"),
                                                         *ROOT.glob("workflows-templates/*.yml"),
                                                         *ROOT.glob(".github/workflows/*.yml")])
    proc = subprocess.run([_tool("zizmor"), "--offline", "--config", "zizmor.yml", "--min-severity", "low", *targets], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_actionlint_clean():
    files = sorted(str(p.relative_to(ROOT)) for p in [*ROOT.glob(".github/workflows/*.yml"),
                                                       *ROOT.glob("workflows-templates/*.yml")])
    proc = subprocess.run([_tool("actionlint"), *files], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
