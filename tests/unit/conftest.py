"""Unit tests run outside any runner: runner files are unset unless a test sets them."""
import pytest


@pytest.fixture(autouse=True)
def _no_runner_env(monkeypatch):
    for name in ("GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY", "GITHUB_ACTIONS", "GITHUB_ENV"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
