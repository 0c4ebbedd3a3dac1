"""Whole simulated canaries, with policy feedback, through three judges side by side.

Each canary walks the default steps (5,10,25,50,75,100); T requests per window split by the weight (canary
round(T x w / 100), stable the rest), errors binomial (stable 1 %; "bursty": both versions' rate multiplied by the
same lognormal factor each window), latencies lognormal (median 0.6 s, sigma 0.5, or 1.2 for "heavy-tail"; in
every scenario, identical for both versions unless the title says otherwise) counted into the model server's
histogram buckets (llmops.monitoring.metrics.LATENCY_BUCKETS); the next window's weight is what the judge decided. A canary ends at promote,
rollback, or after --max-windows windows (no decision). Judges, all with the step's defaults (alpha 0.01,
max-error-rate 0.05, max-error-rate-increase 0.2, max-latency-increase 0.5, min-requests 50, failure-limit 1):

  ours      llmops.canary.judge + decision: pooled sequential tests over the whole canary (the real code path
            of a live run and of --mode what-if)
  per-window  the judge before pooling: every window judged alone (exact tests at alpha, p99 ratio from
            histogram_quantile, min-requests per window), one passing window advances, failure-limit 1
  flagger   Flagger-style fixed thresholds per window: bare canary error rate > 2 % or p99 > 1.5 x the stable's
            true p99 fails a check, 5 failed checks (Flagger's ``threshold``) roll back, a pass advances

Printed per scenario: rolled back (for equal versions: false rollbacks), rolled back before 100 %, promoted within
30 / 60 windows, no decision, median windows to a decision; and the issue's target for ours, checked.

    python benchmarks/canary_stats.py             # 2,000 canaries per scenario
    python benchmarks/canary_stats.py --quick     # 300
"""
from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass

import numpy as np
from scipy.stats import binom, norm

from llmops.canary.decision import DEFAULT_STEPS, Policy, Progress, decide
from llmops.canary.judge import AnalysisConfig, Limits, judge
from llmops.monitoring.metrics import LATENCY_BUCKETS

BOUNDS = np.array(LATENCY_BUCKETS)
KEYS = [f"{b:g}" for b in LATENCY_BUCKETS] + ["+Inf"]
MEDIAN, SIGMA = 0.6, 0.5
STEPS = np.array(DEFAULT_STEPS)
CFG = AnalysisConfig(limits={"error_rate": Limits(0.05, 0.2), "latency_p99": Limits(None, 0.5)})
POLICY = Policy()


@dataclass(frozen=True)
class Scenario:
    title: str
    T: int
    canary_errors: float = 0.01
    burst: float = 0.0  # sigma of the shared log error-rate multiplier per window
    latency_factor: float = 1.0
    sigma: float = SIGMA  # lognormal shape of both versions' latencies
    target: str = ""  # "frr<=1%", "promote30>=95%", "before100>=95%" ...


SCENARIOS = [
    Scenario("equal versions", 500, target="rollback<=1% promoted60>=80%"),
    Scenario("equal versions", 2000, target="rollback<=1% promoted30>=95%"),
    Scenario("equal versions", 10000, target="rollback<=1% promoted30>=95%"),
    Scenario("equal, heavy-tail latency", 500, sigma=1.2, target="rollback<=1%"),
    Scenario("equal, heavy-tail latency", 2000, sigma=1.2, target="rollback<=1%"),
    Scenario("equal, bursty errors", 500, burst=0.7, target="rollback<=1%"),
    Scenario("equal, bursty errors", 2000, burst=0.7, target="rollback<=1%"),
    Scenario("equal, bursty errors", 10000, burst=0.7, target="rollback<=1%"),
    Scenario("2x errors", 2000, canary_errors=0.02, target="before100>=95%"),
    Scenario("2x errors", 10000, canary_errors=0.02, target="before100>=99%"),
    Scenario("5x errors", 500, canary_errors=0.05, target="before100>=99%"),
    Scenario("1.5x errors", 10000, canary_errors=0.015),
    Scenario("latency x1.6", 2000, latency_factor=1.6, target="before100>=95%"),
]


def bucket_probs(factor: float, sigma: float) -> np.ndarray:
    cdf = norm.cdf((np.log(BOUNDS) - math.log(MEDIAN * factor)) / sigma)
    return np.diff(np.concatenate([[0.0], cdf, [1.0]]))


def p99_true(factor: float, sigma: float) -> float:
    return MEDIAN * factor * math.exp(sigma * norm.ppf(0.99))


def histogram_quantile(q: float, counts: np.ndarray) -> np.ndarray:
    """Prometheus' histogram_quantile on per-bucket counts (m, B+1): linear inside the bucket, NaN if empty."""
    cum = np.cumsum(counts, axis=1)
    total = cum[:, -1]
    rank = q * total
    idx = np.argmax(cum >= rank[:, None], axis=1)
    lower = np.where(idx > 0, BOUNDS[np.maximum(idx - 1, 0)], 0.0)
    upper = np.append(BOUNDS, BOUNDS[-1])[idx]
    below = np.where(idx > 0, cum[np.arange(len(idx)), np.maximum(idx - 1, 0)], 0)
    inside = counts[np.arange(len(idx)), idx]
    frac = np.where(inside > 0, (rank - below) / np.maximum(inside, 1), 0.0)
    value = np.where(idx == len(BOUNDS), BOUNDS[-1], lower + (upper - lower) * frac)
    return np.where(total > 0, value, np.nan)


def simulate(s: Scenario, judge_name: str, canaries: int, max_windows: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    step = np.zeros(canaries, dtype=int)
    fails = np.zeros(canaries, dtype=int)
    end = np.full(canaries, -1)  # window at which it ended
    outcome = np.zeros(canaries, dtype=int)  # 0 none, 1 promote, 2 rollback
    weight_at_end = np.zeros(canaries, dtype=int)
    progress = [Progress("v2", "v1", list(DEFAULT_STEPS)) for _ in range(canaries)] if judge_name == "ours" else []
    pc_lat, ps_lat = bucket_probs(s.latency_factor, s.sigma), bucket_probs(1.0, s.sigma)
    stable_p99 = p99_true(1.0, s.sigma)
    for t in range(max_windows):
        active = np.flatnonzero(end < 0)
        if not len(active):
            break
        w = STEPS[step[active]] if judge_name != "ours" else np.array([progress[i].weight for i in active])
        n_c = np.rint(s.T * w / 100).astype(int)
        n_s = s.T - n_c
        level = np.exp(s.burst * rng.standard_normal(len(active)) - s.burst ** 2 / 2) if s.burst else 1.0
        e_c = rng.binomial(n_c, np.minimum(1.0, s.canary_errors * level))
        e_s = rng.binomial(n_s, np.minimum(1.0, 0.01 * level))
        h_c = rng.multinomial(n_c, pc_lat)
        h_s = rng.multinomial(n_s, ps_lat)
        if judge_name == "ours":
            c_cum, s_cum = np.cumsum(h_c, axis=1).tolist(), np.cumsum(h_s, axis=1).tolist()
            for j, i in enumerate(active):
                counts = {"canary": {"requests": int(n_c[j]), "errors": int(e_c[j]),
                                     "latency_seconds": dict(zip(KEYS, c_cum[j], strict=True))},
                          "stable": {"requests": int(n_s[j]), "errors": int(e_s[j]),
                                     "latency_seconds": dict(zip(KEYS, s_cum[j], strict=True))}}
                p = progress[i]
                weight = p.weight
                d = decide(p, judge(counts, p.evidence, CFG, weight, POLICY.min_requests), POLICY)
                if d.action != "continue":
                    end[i], weight_at_end[i], outcome[i] = t, weight, 1 if d.action == "promote" else 2
            continue
        if judge_name == "per-window":
            window_fail = per_window_fail(n_c, e_c, n_s, e_s, h_c, h_s)
            judged = n_c >= POLICY.min_requests
            failed = judged & window_fail
            passed = judged & ~window_fail
            limit = POLICY.failure_limit
        else:  # flagger
            p99 = histogram_quantile(0.99, h_c)
            failed = (e_c / np.maximum(n_c, 1) > 0.02) | ~(p99 <= 1.5 * stable_p99)
            passed = ~failed
            limit = 4  # threshold 5: the fifth failed check rolls back
        fails[active] += failed
        rolled = failed & (fails[active] > limit)
        last = step[active] >= len(STEPS) - 1
        promoted = passed & last
        for mask, code in ((rolled, 2), (promoted, 1)):
            idx = active[mask]
            end[idx], weight_at_end[idx], outcome[idx] = t, STEPS[step[idx]], code
        step[active[passed & ~last]] += 1
    decided = end >= 0
    windows = np.where(decided, end + 1, max_windows + 1)
    return {"rollback": np.mean(outcome == 2), "before100": np.mean((outcome == 2) & (weight_at_end < 100)),
            "promoted30": np.mean((outcome == 1) & (windows <= 30)),
            "promoted60": np.mean((outcome == 1) & (windows <= 60)),
            "undecided": np.mean(~decided), "median_windows": float(np.median(windows))}


def per_window_fail(n_c, e_c, n_s, e_s, h_c, h_s) -> np.ndarray:
    """The judge before pooling, vectorised: llmops.canary.stats.above_threshold / worse_than at alpha, and the
    p99 from histogram_quantile vs stable x 1.5 (relative limits skipped when the stable served nothing)."""
    alpha = CFG.alpha
    above = binom.sf(e_c - 1, n_c, 0.05) < alpha
    rho = 1.2
    x = e_c + e_s
    share = np.where(n_c > 0, rho * n_c / (rho * n_c + n_s), 0.0)
    worse = (n_s > 0) & (x > 0) & (binom.sf(e_c - 1, x, share) < alpha)
    p_c, p_s = histogram_quantile(0.99, h_c), histogram_quantile(0.99, h_s)
    slow = (n_s > 0) & (p_c > 1.5 * p_s)
    return above | worse | slow


def check_target(target: str, r: dict) -> str:
    verdicts = []
    for part in target.split():
        key, op, value = part.partition("<=") if "<=" in part else part.partition(">=")
        v = float(value.rstrip("%")) / 100
        ok = r[key] <= v if op == "<=" else r[key] >= v
        verdicts.append("met" if ok else "MISSED")
    return " ".join(verdicts) if verdicts else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="300 canaries per scenario instead of 2,000")
    parser.add_argument("--canaries", type=int, default=0)
    parser.add_argument("--max-windows", type=int, default=150)
    parser.add_argument("--only", default="", help="run scenarios whose title contains this")
    args = parser.parse_args()
    n = args.canaries or (300 if args.quick else 2000)
    print(f"{n} simulated canaries per row, steps {','.join(map(str, DEFAULT_STEPS))}, stable 1% errors, "
          f"at most {args.max_windows} windows; T = requests per window (both versions)\n")
    head = (f"{'scenario':26} {'T':>6} {'judge':11} {'rolled back':>11} {'before 100%':>11} {'prom<=30w':>9} "
            f"{'prom<=60w':>9} {'no decision':>11} {'median w':>8}  target (ours)")
    print(head)
    print("-" * len(head))
    started = time.perf_counter()
    for k, s in enumerate(SCENARIOS):
        if args.only and args.only not in s.title:
            continue
        for judge_name in ("ours", "per-window", "flagger"):
            r = simulate(s, judge_name, n, args.max_windows, seed=1000 + k)
            verdict = f"{s.target}: {check_target(s.target, r)}" if judge_name == "ours" and s.target else ""
            print(f"{s.title:26} {s.T:>6} {judge_name:11} {r['rollback']:>11.1%} {r['before100']:>11.1%} "
                  f"{r['promoted30']:>9.1%} {r['promoted60']:>9.1%} {r['undecided']:>11.1%} "
                  f"{r['median_windows']:>8.0f}  {verdict}", flush=True)
        print()
    print(f"simulated in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
