"""Unit tests run outside any runner: runner files are unset unless a test sets them. ``get_server`` is a loopback
HTTP server answering GETs from a function; ``serve_script`` starts ``bin/serve.py`` as a process."""
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _no_runner_env(monkeypatch):
    for name in ("GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY", "GITHUB_ACTIONS", "GITHUB_ENV"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny offline Llama-style model + BPE tokenizer (with chat template), built once per session."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from pathlib import Path

    from llmops.demo.tiny_model import build_tiny_model, texts_from_jsonl

    root = Path(__file__).resolve().parents[2]
    out = tmp_path_factory.mktemp("tiny-model")
    return build_tiny_model(out, texts_from_jsonl([root / "examples/data/train.jsonl"]))


@pytest.fixture
def get_server():
    """``get_server(answer, headers={})`` -> base URL of a loopback HTTP server answering each GET with
    ``answer(path)``'s ``(status, body bytes)`` (and ``headers``); shut down after the test."""
    servers = []

    def start(answer, headers=None) -> str:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                status, body = answer(self.path)
                self.send_response(status)
                for name, value in {**(headers or {}), "Content-Length": str(len(body))}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        servers.append((httpd, thread))
        return f"http://127.0.0.1:{httpd.server_address[1]}"

    yield start
    for httpd, thread in servers:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.fixture
def serve_script():
    """``serve_script(version, *args)`` -> ``(process, base URL)``: ``bin/serve.py --model-version VERSION --port 0
    *args`` once it has said that it listens and is ready; killed after the test if it still runs."""
    procs = []
    root = Path(__file__).resolve().parents[2]

    def start(version: str, *args: str):
        env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
        proc = subprocess.Popen([sys.executable, str(root / "bin" / "serve.py"), "--model-version", version,
                                 "--port", "0", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        procs.append(proc)
        first = proc.stdout.readline()
        assert "listening on http://127.0.0.1:" in first, first + proc.stderr.read()
        assert proc.stdout.readline().startswith(f"llmops-serve ready: {version}")
        return proc, first.split(" on ", 1)[1].split()[0]

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        proc.stdout.close()
        proc.stderr.close()
