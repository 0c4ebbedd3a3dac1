"""canary-step's error-rate decision vs a Flagger-style fixed threshold, on the same simulated traffic.

Each trial is one analysis window: the canary serves n requests, stable serves 9n (a 10 % weight), errors are
binomial. A window "rolls back" when:

  ours      the canary's error rate is shown (exact tests on the counts, alpha 0.01) to be above 5 %, or more
            than 20 % above stable's (llmops.canary.stats.above_threshold / worse_than, the step's defaults)
  flagger   the bare observed canary error rate is above the threshold (Flagger's metric check, no sample size)

Printed per canary sample size: the false-rollback rate when both versions have the same error rate, and the
detection power for a bad canary; plus the cost of one decision of each kind (ratio to the fixed check).

    python benchmarks/canary_stats.py            # 4,000 windows per cell
    python benchmarks/canary_stats.py --quick    # 500 windows per cell
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from llmops.canary import stats

ALPHA, MAX_RATE, MARGIN = 0.01, 0.05, 0.2


def ours(ec: int, n: int, es: int, ns: int) -> bool:
    return (stats.above_threshold(ec, n, MAX_RATE, ALPHA).worse
            or stats.worse_than(ec, n, es, ns, MARGIN, ALPHA).worse)


def flagger(threshold: float):
    return lambda ec, n, es, ns: stats.fixed_threshold(ec, n, threshold)


def rollback_rate(decide, p_canary: float, p_stable: float, n: int, trials: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    ec, es = rng.binomial(n, p_canary, trials), rng.binomial(9 * n, p_stable, trials)
    return float(np.mean([decide(int(a), n, int(b), 9 * n) for a, b in zip(ec, es, strict=True)]))


def per_call_seconds(decide, calls: int) -> float:
    start = time.perf_counter()
    for i in range(calls):
        decide(20 + i % 7, 2000, 180, 18000)
    return (time.perf_counter() - start) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="500 windows per cell instead of 4,000")
    parser.add_argument("--trials", type=int, default=0)
    args = parser.parse_args()
    trials = args.trials or (500 if args.quick else 4000)
    deciders = {"ours (exact tests)": ours, "flagger >5%": flagger(0.05), "flagger >2%": flagger(0.02)}
    scenarios = [  # (title, canary error rate, stable error rate)
        ("false rollbacks, equal 1% vs 1%", 0.01, 0.01),
        ("false rollbacks, equal 4% vs 4%", 0.04, 0.04),
        ("power, bad 5% vs 1%", 0.05, 0.01),
        ("power, degraded 2.5% vs 1%", 0.025, 0.01),
    ]
    sizes = (50, 200, 2000)
    print(f"canary error-rate decisions, {trials} simulated windows per cell (stable gets 9x the canary's traffic)")
    print(f"ours: alpha {ALPHA}, max-error-rate {MAX_RATE}, max-error-rate-increase {MARGIN}\n")
    header = f"{'scenario':34} {'decider':20}" + "".join(f"{f'n={n}':>10}" for n in sizes)
    print(header)
    print("-" * len(header))
    for s_i, (title, pc, ps) in enumerate(scenarios):
        for name, decide in deciders.items():
            cells = [rollback_rate(decide, pc, ps, n, trials, seed=1000 * s_i + n) for n in sizes]
            print(f"{title:34} {name:20}" + "".join(f"{c:>10.1%}" for c in cells))
        print()
    calls = 300 if args.quick else 2000
    t_fixed = per_call_seconds(flagger(0.05), calls)
    t_ours = per_call_seconds(ours, calls)
    print(f"one decision: ours {t_ours * 1e6:.1f} us, fixed threshold {t_fixed * 1e6:.2f} us "
          f"(ratio {t_ours / t_fixed:.0f}x; both negligible next to a {60} s window)")


if __name__ == "__main__":
    main()
