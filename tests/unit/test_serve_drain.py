"""Graceful drain of ``bin/serve.py``: SIGTERM under load (streams and whole answers in flight, a load balancer
sending until /health says 503) fails no request, and the process exits 0 afterwards."""
from __future__ import annotations

import signal
import threading
import time

import openai
import requests

WORDS = " ".join(f"w{i}" for i in range(60))  # 60 words x 25 ms: each long request takes ~1.5 s


def _in_flight(url: str) -> float:
    for line in requests.get(url + "/metrics", timeout=10).text.splitlines():
        if line.startswith("llm_requests_in_flight{"):
            return float(line.split()[-1])
    return 0.0


def test_sigterm_under_load_fails_no_request_then_exits_0(serve_script):
    proc, url = serve_script("drain-v1", "--echo", "--echo-token-ms", "25", "--drain-max", "0.5", "--max-tokens", "100")
    failures: list[str] = []
    answers: list[str] = []
    lock = threading.Lock()
    balancer_sent = [0]

    def stream() -> None:
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=60)
        try:
            chunks = client.chat.completions.create(model="drain-v1", stream=True, max_tokens=100,
                                                    messages=[{"role": "user", "content": WORDS}])
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            with lock:
                answers.append(text)
        except Exception as exc:  # noqa: BLE001 - every failure is what the test reports
            failures.append(f"stream: {exc!r}")

    def whole() -> None:
        try:
            r = requests.post(url + "/v1/completions", json={"prompt": WORDS, "max_tokens": 100}, timeout=60)
            r.raise_for_status()
            with lock:
                answers.append(r.json()["choices"][0]["text"])
        except Exception as exc:  # noqa: BLE001
            failures.append(f"whole: {exc!r}")

    def balancer() -> None:  # sends until readiness fails, as a load balancer (or kube-proxy) would
        with requests.Session() as session:
            while True:
                try:
                    if session.get(url + "/health", timeout=10).status_code != 200:
                        return
                    r = session.post(url + "/v1/completions", json={"prompt": "a b"}, timeout=10)
                    r.raise_for_status()
                    balancer_sent[0] += 1
                except Exception as exc:  # noqa: BLE001
                    failures.append(f"balancer: {exc!r}")
                    return

    threads = [threading.Thread(target=f) for f in [stream] * 4 + [whole] * 4 + [balancer]]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while _in_flight(url) < 8 and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    health = None
    while time.monotonic() < deadline:
        health = requests.get(url + "/health", timeout=10)
        if health.status_code == 503:
            break
        time.sleep(0.01)
    assert health is not None and health.status_code == 503 and health.json()["status"] == "draining"
    assert _in_flight(url) >= 8  # readiness failed while the long requests were still running
    for t in threads:
        t.join(timeout=60)
    assert failures == []
    assert answers == [WORDS] * 8 and balancer_sent[0] > 0
    assert proc.wait(timeout=30) == 0
    try:
        requests.get(url + "/health", timeout=5)
        raise AssertionError("the server still listens after exiting")
    except requests.ConnectionError:
        pass
