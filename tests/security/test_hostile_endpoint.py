"""evaluate-and-gate against hostile OpenAI-compatible servers (real HTTP servers on loopback): an endless body,
a 300 MB reply, a server trickling one byte a second (body, then headers). Each is exit 3 with a clear message,
in bounded memory and within the --timeout deadline; none passes the gate."""
from __future__ import annotations

import json
import time

import pytest

from tests.security.conftest import MB

LIMIT = 300 * MB


def eval_data(runner) -> str:
    path = runner.workspace / "eval.jsonl"
    path.write_text(json.dumps({"prompt": "2+2=", "reference": "4"}) + "\n")
    return str(path)


def evaluate(runner, url: str, *extra: str, timeout: float = 60, measure: bool = False):
    return runner.run("evaluate_and_gate.py", "--endpoint", url, "--eval_data", eval_data(runner), "--metrics",
                      "accuracy", "--concurrency", "1", "--retries", "0", *extra, timeout=timeout, measure=measure)


def endless(req):
    req.send_response(200)
    req.send_header("Content-Type", "application/json")
    req.send_header("Connection", "close")
    req.end_headers()
    req.wfile.write(b'{"choices": [{"text": "')
    piece = b"a" * MB
    for _ in range(1024):  # "endless": 1 GiB, more than any sane reply, unless the client hangs up first
        req.wfile.write(piece)


def huge_valid(req):
    text = b"4" + b" " * (300 * MB)
    body = b'{"choices": [{"text": "' + text + b'"}]}'
    req.send_response(200)
    req.send_header("Content-Type", "application/json")
    req.send_header("Connection", "close")  # no Content-Length: the size is only known by reading
    req.end_headers()
    for i in range(0, len(body), 4 * MB):
        req.wfile.write(body[i:i + 4 * MB])


def trickle_body(req):
    req.send_response(200)
    req.send_header("Content-Type", "application/json")
    req.send_header("Content-Length", "100000")
    req.end_headers()
    for _ in range(100000):
        req.wfile.write(b" ")
        req.wfile.flush()
        time.sleep(0.5)


def trickle_headers(req):
    req.wfile.write(b"HTTP/1.1 200 OK\r\n")
    for _ in range(100000):
        req.wfile.write(b"X")
        req.wfile.flush()
        time.sleep(0.5)


@pytest.mark.slow
@pytest.mark.parametrize("handler, words", [(endless, "larger than"), (huge_valid, "larger than")],
                         ids=["endless-body", "300MB-reply"])
def test_oversized_replies_are_refused_in_bounded_memory(runner, hostile, handler, words):
    res = evaluate(runner, hostile(handler), measure=True)
    assert res.code == 3, res.log[-2000:]
    assert words in res.log and not res.traceback
    assert res.outputs.get("result") == "error"
    assert res.rss is not None and res.rss < LIMIT, f"peak RSS {res.rss / MB:.0f} MB"


@pytest.mark.parametrize("handler", [trickle_body, trickle_headers], ids=["trickled-body", "trickled-headers"])
def test_timeout_is_a_total_deadline_per_request(runner, hostile, handler):
    started = time.monotonic()
    res = evaluate(runner, hostile(handler), "--timeout", "2", timeout=40)
    took = time.monotonic() - started
    assert res.code == 3, res.log[-2000:]
    assert "within --timeout 2s" in res.log and not res.traceback
    assert took < 25, f"took {took:.0f}s with --timeout 2"
