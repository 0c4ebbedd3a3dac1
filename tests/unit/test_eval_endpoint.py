"""The endpoint backend against a small local OpenAI-compatible server (http.server on port 0, in a thread)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from llmops.errors import InfraError, UsageError
from llmops.eval.backends.endpoint import EndpointBackend
from llmops.eval.data import Sample

ROOT = Path(__file__).resolve().parents[2]


class FakeOpenAI(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.lock = threading.Lock()
        self.in_flight = self.max_in_flight = 0
        self.fail_next = 0  # answer 503 to this many requests first
        self.status = 200
        self.requests: list[tuple[str, dict, str]] = []

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        srv: FakeOpenAI = self.server  # type: ignore[assignment]
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with srv.lock:
            srv.requests.append((self.path, body, self.headers.get("Authorization", "")))
            srv.in_flight += 1
            srv.max_in_flight = max(srv.max_in_flight, srv.in_flight)
            fail = srv.fail_next > 0
            srv.fail_next -= fail
        time.sleep(0.05)
        with srv.lock:
            srv.in_flight -= 1
        if fail or srv.status != 200:
            self._send(503 if fail else srv.status, {"error": "busy"})
            return
        if self.path == "/v1/completions":
            text = body["prompt"].upper()
            reply = {"choices": [{"text": text}]}
            prompt_words = len(body["prompt"].split())
        elif self.path == "/v1/chat/completions":
            text = "chat:" + body["messages"][-1]["content"]
            reply = {"choices": [{"message": {"role": "assistant", "content": text}}]}
            prompt_words = sum(len(m["content"].split()) for m in body["messages"])
        else:
            self._send(404, {"error": "no such path"})
            return
        reply["usage"] = {"prompt_tokens": prompt_words, "completion_tokens": len(text.split())}
        self._send(200, reply)

    def _send(self, code, doc):
        data = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def server():
    srv = FakeOpenAI()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=10)


def prompts(n):
    return [Sample(f"p{i}", f"ANSWER {i}", i + 1, prompt=f"answer {i}") for i in range(n)]


def test_prompt_rows_use_completions_concurrently_within_the_bound(server):
    backend = EndpointBackend(server.url + "/v1/", concurrency=3, show_progress=False, model="m1")
    gens = backend.generate(prompts(12))
    assert gens.texts == [f"ANSWER {i}" for i in range(12)]
    assert {p for p, _, _ in server.requests} == {"/v1/completions"}
    assert server.requests[0][1]["model"] == "m1" and server.requests[0][1]["temperature"] == 0.0
    assert 2 <= server.max_in_flight <= 3
    assert all(g.latency_s >= 0.05 and g.prompt_tokens == 2 and g.output_tokens == 2 for g in gens.items)


def test_chat_rows_use_chat_completions(server):
    sample = Sample("c", "x", 1, messages=[{"role": "system", "content": "be brief"},
                                           {"role": "user", "content": "hi there"}])
    gens = EndpointBackend(server.url, show_progress=False).generate([sample])
    assert gens.texts == ["chat:hi there"]
    path, body, _ = server.requests[0]
    assert path == "/v1/chat/completions" and body["messages"] == sample.messages


def test_transient_errors_are_retried_with_backoff(server):
    server.fail_next = 2
    gens = EndpointBackend(server.url, retries=2, backoff=0.01, show_progress=False).generate(prompts(3))
    assert gens.texts == ["ANSWER 0", "ANSWER 1", "ANSWER 2"]
    server.fail_next = 5
    with pytest.raises(InfraError, match=r"kept failing: HTTP 503: busy \(all 2 attempts\)"):
        EndpointBackend(server.url, retries=1, backoff=0.01, show_progress=False).generate(prompts(3))


def test_api_key_comes_from_the_named_env_var(server, monkeypatch):
    monkeypatch.setenv("MY_KEY", "sk-test")
    EndpointBackend(server.url, api_key_env="MY_KEY", show_progress=False).generate(prompts(1))
    assert server.requests[0][2] == "Bearer sk-test"


def test_auth_refusal_is_a_usage_error(server):
    server.status = 401
    with pytest.raises(UsageError, match="HTTP 401"):
        EndpointBackend(server.url, show_progress=False).generate(prompts(1))


def test_bad_urls_are_usage_errors():
    with pytest.raises(UsageError, match="must be an http"):
        EndpointBackend("llm.staging:8000")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(ROOT / "scripts/evaluate_and_gate.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_cli_against_the_endpoint_writes_a_verdict(server, tmp_path):
    data = tmp_path / "eval.jsonl"
    data.write_text("\n".join(json.dumps({"prompt": f"answer {i}", "reference": f"ANSWER {i}"})
                              for i in range(40)) + "\n")
    proc = _cli("--endpoint", server.url, "--eval_data", str(data), "--metrics", "exact_match,bleu",
                "--thresholds", "exact_match>=0.99,latency_p95<=30", "--report", "v.json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    verdict = json.loads((tmp_path / "v.json").read_text())
    assert verdict["result"] == "pass" and verdict["metrics"]["exact_match"]["value"] == 1.0
    assert verdict["model"]["endpoint"] == server.url and verdict["backend"]["backend"] == "endpoint"
    assert "output exact-match=1.0" in proc.stdout and "requesting" in proc.stderr  # progress bar on stderr


def test_cli_unreachable_endpoint_exits_3_quickly(tmp_path):
    data = tmp_path / "eval.jsonl"
    data.write_text(json.dumps({"prompt": "p", "reference": "r"}) + "\n")
    url = f"http://127.0.0.1:{_free_port()}"
    started = time.monotonic()
    proc = _cli("--endpoint", url, "--eval_data", str(data), "--retries", "1", "--timeout", "5", cwd=tmp_path)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert f"endpoint {url} unreachable" in proc.stdout and "output result=error" in proc.stdout
    assert time.monotonic() - started < 60
