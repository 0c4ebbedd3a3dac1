"""Benchmark the whole quality gate's error rates: today's per-metric gate beside the family-wise one, in one run.

Setting (issue 19): the pipeline template's default metrics ``exact_match,bleu,chrf,rouge,latency`` (six paired
tests: exact match by McNemar, BLEU, chrF, ROUGE-1/2/L by paired bootstrap; latency is a threshold), alpha 0.05,
default minimum effects, 1,000 bootstrap resamples, 10,000 swaps. Systems are independent draws of the same noise
model: each row is answered exactly right with probability p, otherwise the answer is the reference with about
half of its words replaced (a near miss that BLEU/chrF/ROUGE give partial credit for). Every trial is independent
of every other: a fresh eval set, a fresh baseline and a fresh candidate (no system is shared between trials, so
the Wilson intervals are honest). The baseline's verdict goes through a JSON file and ``Baseline.load`` as in
production; the candidate's metrics are computed once and judged under each correction, with the production
defaults (seed 0, so every gate uses the same swaps, as every user's gate does):

- ``none``: each metric tested on its own at alpha (the gate before issue 19);
- ``holm``: Holm's step-down on the raw p values;
- ``westfall-young``: step-down max-T over random swaps of the paired rows (the default).

Printed: the share of trials in which the gate as a whole fails, for equal quality (0.6 vs 0.6, the false-fail
rate; target <= 5%) and for a regression 0.6 -> 0.5 (power; targets >= 55% at n = 200 and >= 95% at n = 1,000),
with a 95% Wilson interval, and which metrics the equal-quality false fails came from (max-T should spread
them about evenly over the metrics, see llmops/eval/stats.py).

    python benchmarks/gate.py                 # 3000 + 400 trials at n = 200, 60 at n = 1000 (~13 CPU-minutes)
    python benchmarks/gate.py --quick         # a smoke run
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing
os.environ.setdefault("OMP_NUM_THREADS", "1")

METRICS = "exact_match,bleu,chrf,rouge,latency"
CORRECTIONS = ("none", "holm", "westfall-young")
# Equal-quality gates: enough that the 95% Wilson interval around a rate near 5% is about +-0.8%.
NULL_TRIALS = 3000


def make_data(n: int, seed: int):
    import numpy as np

    from llmops.eval.data import EvalData, Sample

    rng = np.random.default_rng(seed)
    vocab = [f"w{i}" for i in range(300)]
    refs = [" ".join(rng.choice(vocab, int(rng.integers(4, 13)))) for _ in range(n)]
    samples = [Sample(f"r{i}", ref, i + 1, prompt=f"question {i}") for i, ref in enumerate(refs)]
    return EvalData("bench.jsonl", samples, n, f"sha256:bench-{n}-{seed}"), vocab


def answers(data, vocab, p_right: float, rng):
    """Right with probability p_right, else a near miss: each word replaced with probability 1/2."""
    from llmops.eval.backends import Generation, Generations

    out = []
    for s in data.samples:
        words = s.reference.split()
        if rng.random() >= p_right:
            flips = rng.random(len(words)) < 0.5
            picks = rng.integers(0, len(vocab), len(words))
            words = [vocab[j] if f else w for w, f, j in zip(words, flips, picks, strict=True)]
            if words == s.reference.split():
                words[-1] = "zz"  # a near miss is never exactly right
        out.append(Generation(" ".join(words), float(rng.lognormal(-1.5, 0.3)), 10, len(words)))
    return Generations(out, None, {"backend": "predictions"})


def _system(p_right: float, data, vocab, rng, config, names):
    from llmops.eval.runner import build_run, compute_metrics

    gens = answers(data, vocab, p_right, rng)
    results, skipped = compute_metrics(build_run(data, gens, backend="predictions"), names, config)
    return gens, results, skipped


def trial(job: tuple[int, float, float, int]) -> dict:
    """One gate, independent of every other: a fresh eval set, a fresh baseline and a fresh candidate. The
    baseline's verdict goes through a JSON file and ``Baseline.load``; the candidate is judged under each correction.
    Returns {correction: result} and, under ``failed``, the metrics that failed under each correction."""
    import numpy as np

    from llmops.eval.config import GateConfig, build_config
    from llmops.eval.gate import Baseline, judge
    from llmops.eval.metrics import resolve_names
    from llmops.eval.runner import build_verdict, write_json

    n, p_base, p_cand, seed = job
    data, vocab = make_data(n, seed)
    rng = np.random.default_rng(10_000_000 + seed)
    names = resolve_names(METRICS.split(","))
    config = build_config(["latency_p95<=5"])
    ids = [s.id for s in data.samples]
    gens, results, skipped = _system(p_base, data, vocab, rng, config, names)
    doc = build_verdict(data=data, gens=gens, results=results, skipped=skipped, config=config, baseline=None,
                        model={"version": "baseline"})
    candidate = _system(p_cand, data, vocab, rng, config, names)[1]
    out: dict = {"failed": {}}
    with tempfile.TemporaryDirectory() as tmp:
        baseline = Baseline.load(write_json(Path(tmp) / "baseline.json", doc))
        for method in CORRECTIONS:
            result, per = judge(candidate, ids, GateConfig(thresholds=config.thresholds, correction=method), baseline)
            out[method] = result
            out["failed"][method] = sorted(m for m, v in per.items() if v["status"] == "fail")
    return out


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre, half = (p + z * z / (2 * n)) / (1 + z * z / n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half / (1 + z * z / n)), min(1.0, centre + half / (1 + z * z / n))


def scenario(name: str, n: int, p_base: float, p_cand: float, trials: int, seed0: int, workers: int) -> dict:
    from collections import Counter
    from multiprocessing import get_context

    started = time.perf_counter()
    jobs = [(n, p_base, p_cand, seed0 + k) for k in range(trials)]
    if workers > 1:
        with get_context("spawn").Pool(workers) as pool:
            outcomes = list(pool.imap_unordered(trial, jobs, chunksize=8))
    else:
        outcomes = [trial(job) for job in jobs]
    fails = {m: sum(o[m] == "fail" for o in outcomes) for m in CORRECTIONS}
    by_metric = {m: dict(Counter(name for o in outcomes for name in o["failed"][m])) for m in CORRECTIONS}
    return {"scenario": name, "n": n, "p_base": p_base, "p_cand": p_cand, "trials": len(outcomes), "fails": fails,
            "failed_metrics": by_metric, "seconds": time.perf_counter() - started}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few trials: a smoke run")
    parser.add_argument("--workers", type=int, default=2, help="processes")
    parser.add_argument("--null-trials", type=int, default=NULL_TRIALS)
    parser.add_argument("--power-trials", type=int, default=400)
    parser.add_argument("--big-trials", type=int, default=60)
    parser.add_argument("--json", help="also write the numbers here")
    args = parser.parse_args(argv)
    if args.quick:
        args.null_trials, args.power_trials, args.big_trials = 20, 20, 5
    plan = [("equal quality (false fails)", 200, 0.6, 0.6, args.null_trials, 0, ("<=", 5.0)),
            ("regression 0.6 -> 0.5 (power)", 200, 0.6, 0.5, args.power_trials, 1_000_000, (">=", 55.0)),
            ("regression 0.6 -> 0.5 (power)", 1000, 0.6, 0.5, args.big_trials, 2_000_000, (">=", 95.0))]
    print(f"whole-gate fail rate, metrics {METRICS} (6 paired tests + latency threshold), alpha 0.05, "
          "independent trials (fresh eval set, baseline and candidate each)")
    print(f"{'scenario':30} {'n':>5} {'trials':>6} | " + " | ".join(f"{m:>26}" for m in CORRECTIONS)
          + " | target (westfall-young)", flush=True)
    rows = []
    for name, n, p_base, p_cand, trials, seed0, (op, goal) in plan:
        r = scenario(name, n, p_base, p_cand, trials, seed0, args.workers)
        rows.append(r)
        cells = []
        for m in CORRECTIONS:
            k = r["fails"][m]
            lo, hi = wilson(k, r["trials"])
            cells.append(f"{k:>4} ({100 * k / r['trials']:5.1f}%) [{100 * lo:4.1f},{100 * hi:5.1f}]")
        rate = 100 * r["fails"]["westfall-young"] / r["trials"]
        met = rate <= goal if op == "<=" else rate >= goal
        print(f"{r['scenario']:30} {r['n']:>5} {r['trials']:>6} | " + " | ".join(f"{c:>26}" for c in cells)
              + f" | {op} {goal:g}%: {'met' if met else 'NOT met'} ({r['seconds']:.0f} s)", flush=True)
    print("cells: fails (rate) [95% Wilson interval]; none = each metric at alpha on its own (the gate before).")
    null = rows[0]["failed_metrics"]["westfall-young"]
    print("equal-quality false fails of westfall-young by metric (a gate can fail on several): "
          + (", ".join(f"{m} {k}" for m, k in sorted(null.items())) or "none"))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
