"""Shared by the security tests: a fake GitHub runner around each script, real hostile HTTP servers on loopback,
and peak-memory measurement of a script run.

``runner`` gives a ``FakeRunner``: GITHUB_OUTPUT, GITHUB_STEP_SUMMARY, GITHUB_ENV, GITHUB_PATH, GITHUB_STATE,
RUNNER_TEMP and GITHUB_WORKSPACE in a temp dir; ``run(script, *args)`` runs ``scripts/<script>`` there and
returns what a user would see (exit code, log, outputs, summary, every file written). ``hostile`` starts a
``ThreadingHTTPServer`` on 127.0.0.1 port 0 with a handler function and always shuts it down.
"""
from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.infra.tools import read_outputs

ROOT = Path(__file__).resolve().parents[2]
MB = 1 << 20
# Peak RSS of the script's own address space: VmHWM starts afresh at exec, while getrusage's ru_maxrss carries the
# forking parent's high-water mark over exec (a big pytest process would read as the script's peak).
RSS_WRAPPER = (
    "import atexit, os, runpy, sys\n"
    "def _hwm():\n"
    "    with open('/proc/self/status') as f:\n"
    "        return next(int(l.split()[1]) * 1024 for l in f if l.startswith('VmHWM:'))\n"
    "atexit.register(lambda: open(os.environ['LLMOPS_TEST_RSS'], 'w').write(str(_hwm())))\n"
    "sys.argv = sys.argv[1:]\n"
    "runpy.run_path(sys.argv[0], run_name='__main__')\n"
)


@dataclass
class Result:
    code: int
    log: str
    outputs: dict[str, str]
    summary: str
    rss: int | None = None
    files: dict[str, bytes] = field(default_factory=dict)

    @property
    def traceback(self) -> bool:
        return "Traceback (most recent call last)" in self.log or "internal error" in self.log


class FakeRunner:
    def __init__(self, root: Path):
        self.root = root
        self.workspace = root / "workspace"
        self.temp = root / "runner-temp"
        for d in (self.workspace, self.temp):
            d.mkdir(parents=True, exist_ok=True)
        self.files = {name: root / f"{name.lower()}.txt" for name in
                      ("GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY", "GITHUB_ENV", "GITHUB_PATH", "GITHUB_STATE")}
        self.runs = 0

    def env(self, inputs: dict[str, str] | None = None, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "INPUT_", "RUNNER_"))}
        env.update({k: str(v) for k, v in self.files.items()})
        env.update({"GITHUB_ACTIONS": "true", "RUNNER_TEMP": str(self.temp), "GITHUB_WORKSPACE": str(self.workspace),
                    "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
                    "OPENBLAS_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONWARNINGS": "ignore"})
        for name, value in (inputs or {}).items():
            env["INPUT_" + name.upper().replace("-", "_")] = value
        env.update(extra or {})
        return env

    def run(self, script: str, *args: str, inputs: dict[str, str] | None = None, env: dict[str, str] | None = None,
            timeout: float = 90, measure: bool = False, cwd: Path | None = None) -> Result:
        for path in self.files.values():
            path.write_text("")
        self.runs += 1
        full = self.env(inputs, env)
        cmd = [sys.executable, str(ROOT / "scripts" / script), *args]
        rss_file = self.root / f"rss-{self.runs}"
        if measure:
            full["LLMOPS_TEST_RSS"] = str(rss_file)
            cmd = [sys.executable, "-c", RSS_WRAPPER, *cmd[1:]]
        proc = subprocess.run(cmd, env=full, cwd=cwd or self.workspace, capture_output=True, text=True,
                              timeout=timeout)
        rss = int(rss_file.read_text()) if measure and rss_file.exists() else None
        return Result(proc.returncode, proc.stdout + proc.stderr, read_outputs(self.files["GITHUB_OUTPUT"]),
                      self.files["GITHUB_STEP_SUMMARY"].read_text(), rss)

    def written(self) -> dict[str, bytes]:
        """Every file under the runner's folders (runner files, reports, temp files) with its content."""
        out = {}
        for path in sorted(self.root.rglob("*")):
            if path.is_file() and not path.is_symlink():
                out[str(path.relative_to(self.root))] = path.read_bytes()
        return out


@pytest.fixture
def runner(tmp_path) -> FakeRunner:
    return FakeRunner(tmp_path / "runner")


Handler = Callable[[http.server.BaseHTTPRequestHandler], None]


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False


@pytest.fixture
def hostile():
    """``hostile(handler)`` -> base URL of a loopback server calling ``handler(request)`` for every request."""
    servers = []

    def start(handler: Handler) -> str:
        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self):
                length = int(self.headers.get("Content-Length") or 0)
                self.body = self.rfile.read(length) if length else b""
                try:
                    handler(self)
                except (BrokenPipeError, ConnectionResetError, OSError):
                    pass

            do_GET = do_POST = _any

            def log_message(self, *args):
                pass

        server = _Server(("127.0.0.1", 0), H)
        server.requests = 0
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def send(req: http.server.BaseHTTPRequestHandler, status: int, body: bytes, headers: dict | None = None) -> None:
    req.send_response(status)
    for k, v in {"Content-Type": "application/json", "Content-Length": str(len(body)), **(headers or {})}.items():
        req.send_header(k, v)
    req.end_headers()
    req.wfile.write(body)
