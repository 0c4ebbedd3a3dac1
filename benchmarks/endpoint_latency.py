"""Does evaluate-and-gate's endpoint latency depend on ``--concurrency``? Before: every row's client-seen time
(queueing included); now: the service time of the rows sent one at a time (``latency-sample``).

The reference server (bin/serve.py, run as a process) serves the tiny offline model with ``--max-batch 1``:
one request generated at a time, the others queue, like a llama.cpp server with one slot. For each concurrency the
same eval rows run twice through ``EndpointBackend``: the old way (first row alone, the rest at the concurrency,
latency = all rows) and the new (``latency-sample`` rows alone, then the rest at the concurrency), and the
latency_p50 each would gate on is printed beside the throughput.

    python benchmarks/endpoint_latency.py            # 48 rows, latency sample 16, concurrency 1, 4, 8
    python benchmarks/endpoint_latency.py --quick    # 24 rows, concurrency 1, 8
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")  # inherited by the server process


def start_server(model_dir: Path, log: Path) -> tuple[subprocess.Popen, str]:
    import requests

    from tests.infra.tools import free_port

    port = free_port()
    proc = subprocess.Popen([sys.executable, str(ROOT / "bin/serve.py"), "--model-dir", str(model_dir),
                             "--model-version", "bench", "--port", str(port), "--max-batch", "1",
                             "--drain-max", "0", "--drain-idle", "0"], stdout=open(log, "wb"),  # noqa: SIM115
                            stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited; see {log}")
        try:
            if requests.get(url + "/health", timeout=2).status_code == 200:
                return proc, url
        except requests.RequestException:
            pass
        time.sleep(0.3)
    proc.terminate()
    raise SystemExit("the server did not become healthy in 180 s")


def p50(backend_kw: dict, url: str, samples: list, concurrency: int) -> tuple[float, float]:
    from llmops.eval.backends.endpoint import EndpointBackend
    from llmops.eval.config import build_config
    from llmops.eval.data import EvalData
    from llmops.eval.runner import build_run, compute_metrics

    backend = EndpointBackend(url, concurrency=concurrency, max_new_tokens=16, show_progress=False, **backend_kw)
    gens = backend.generate(samples)
    data = EvalData(path="bench", samples=samples, rows=len(samples), hash="bench")
    results, _ = compute_metrics(build_run(data, gens, backend="endpoint"), ["latency_p50"], build_config(None))
    rps = gens.info.get("throughput", {}).get("requests_per_s") or len(samples) / gens.seconds
    return results["latency_p50"].value, rps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    from llmops.demo.tiny_model import build_tiny_model, texts_from_jsonl
    from llmops.eval.data import Sample

    rows, sample, levels = (24, 8, [1, 8]) if args.quick else (48, 16, [1, 4, 8])
    samples = [Sample(f"r{i}", "x", i + 1, prompt=f"What is {i} plus {i + 1}?") for i in range(rows)]
    with tempfile.TemporaryDirectory(prefix="bench-endpoint-") as tmp:
        model = build_tiny_model(Path(tmp) / "tiny", texts_from_jsonl([ROOT / "examples/data/train.jsonl"]))
        proc, url = start_server(model, Path(tmp) / "serve.log")
        try:
            p50(dict(latency_sample=None), url, samples[:4], 1)  # warm-up
            print(f"reference server, tiny model, --max-batch 1 (one request at a time), {rows} rows, "
                  f"16 new tokens, latency-sample {sample}")
            print(f"{'concurrency':>11} | {'before: p50 all rows':>20} | {'now: p50 alone':>14} | "
                  f"{'before / now':>12} | {'requests/s':>10}")
            base = None
            for c in levels:
                old, _ = p50(dict(latency_sample=None), url, samples, c)
                new, rps = p50(dict(latency_sample=sample, seed=0), url, samples, c)
                base = base or new
                print(f"{c:>11} | {old:>18.3f} s | {new:>12.3f} s | {old / new:>11.2f}x | {rps:>10.2f}")
            print(f"now: p50 at the highest concurrency / at 1 = {new / base:.2f}x (1.00x = independent of "
                  "--concurrency)")
        finally:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
