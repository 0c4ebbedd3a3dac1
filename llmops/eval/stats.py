"""Resampling and tests for the gate: bootstrap CIs, paired bootstrap, McNemar, and the family-wise adjustment.

Resamples are weight matrices ``W`` (B, n): ``W[b, i]`` is how often sample i is drawn in resample b. A metric's
``aggregate_weighted(W, stats)`` then gives all B corpus values with one matrix product. Candidate and baseline
use the *same* W (paired: the same sample indices in every resample), and so do all metrics of one run.

One-sided tests, "is the candidate worse?": p is small only when the candidate is worse in the metric's direction.

Family-wise error (``adjust``). A release fails when *any* primary metric regresses, so the gate's ``alpha`` must
bound the chance that a candidate of equal quality fails on *some* metric, not on each one. Testing K metrics at
alpha each fails equal systems up to K * alpha of the time (about 12% for the template's six correlated quality
metrics). Choices, and why the default is the first:

- ``westfall-young`` (default): step-down max-T over random swaps of the paired rows (Westfall & Young 1993,
  the permutation form). Under "the candidate is of the baseline's quality" the two systems' outputs on a row are
  exchangeable, so swapping them on a random half of the rows (the *same* rows for every metric) gives the exact
  joint null distribution of all metrics' deltas, correlations included, with every corpus value recomputed
  from the swapped sufficient statistics in one matrix product, like the bootstrap. For metric k let ``d_k`` be
  the observed drop (candidate worse by d_k in its direction), standardised by the SD of its swap distribution:
  ``t_k``. Sort t descending; the adjusted p of the j-th is ``max_{i<=j} (1 + #{b: max_{l in step i..K}
  t*_l[b] >= t_(i)}) / (1 + B)``: the chance that the *largest* null statistic among the hypotheses still in
  play beats the observed one. BLEU, chrF and ROUGE move together, so the max over them is barely larger than one
  of them and the gate loses little power, where Bonferroni/Holm pay for K independent tests. Why swaps and not
  the bootstrap draws as the joint null: a randomisation test holds alpha in finite samples; the re-centred
  bootstrap is only asymptotically right and failed equal systems 6.2% of the time at n = 200 in
  benchmarks/gate.py (the bootstrap still gives the CIs and the per-metric p).
- ``holm``: Holm's step-down on the raw p values. Valid for any dependence, no resampling needed, but it treats
  correlated metrics as independent and so loses power as K grows.
- ``none``: each metric at alpha on its own (the gate before family-wise control): equal systems fail up to
  K * alpha of the time. Kept for comparison (benchmarks/gate.py prints both).

McNemar metrics (exact match, accuracy) join the max-T through the same swaps: swapping 0/1 rows is McNemar's
own null (only discordant rows change). Their adjusted p is then
``max(max-T p, McNemar p)``: never below their own exact test (which matters when few pairs are discordant and the
bootstrap of a 0/1 mean is coarse). Rejecting a subset of what max-T rejects keeps the family-wise bound.
Metrics whose draws are all equal (s_k = 0, e.g. identical answers) have t = 0 (or +inf for a constant drop).

Why max-T is exact, piece by piece (checked in tests/unit/test_gate_null.py, measured on whole gates in
benchmarks/gate.py). Under "equal quality" each row's (candidate, baseline) pair is exchangeable, so the observed
data is one draw from its own orbit of swaps and ``(1 + #{b: T*_b >= T}) / (1 + B)`` is a valid p for any B (a
Monte Carlo randomisation test: the ``+ 1`` counts the observed data as one of the swaps). Ties count against
rejection: discrete metrics (exact match) put many swaps exactly on the observed value, and the comparison allows
``TIE_TOL`` so that a tie reached along another floating-point path still counts. The observed statistic goes
through the same ``from_sums`` as the swapped ones, and a corpus metric (BLEU, chrF) recomputed from swapped
per-row sums is the metric of the swapped texts. Each metric's scale (the SD of its B swapped values *and* the
observed one) is one symmetric function of all B + 1 values, the same for the observed and every swapped value,
so standardising keeps the B + 1 vectors exchangeable. A metric fails only where, besides its adjusted p, its raw
p, its direction and its minimum effect agree: a subset of the max-T rejections, so the bound holds. Thresholds
are limits outside the family; guards only warn. With the default seed every run uses the same swaps: valid on
average over swap sets, and for the one fixed set the level is off by about +-0.2% at B = 10,000 (gate.SWAPS).

Why max-T standardised by the swap SD, and not a per-swap studentised t or min-P: the metrics' null spreads differ
by orders of magnitude (BLEU points vs fractions); dividing by each metric's own swap SD puts them on one scale,
so no metric dominates the maximum. For a mean of per-row scores (exact match, ROUGE) the swap SD *is* the exact
null SD of the mean difference (``sqrt(sum d_i^2) / n`` for row differences d_i), and a per-swap studentised t is
a monotone function of the same mean (the sum of squares is equal on every swap): next to no change in the
maximum. BLEU and chrF swap distributions are close to normal at the sizes we gate on, so min-P (ranking each
metric's null before the maximum) would buy little balance. benchmarks/gate.py prints which metrics the
equal-quality false fails came from: about equal shares.

Small samples: the raw paired-bootstrap p (not the swap test, which needs no correction) widens the re-centred
null draws by ``expansion(n, alpha)`` (a t instead of a normal tail, the unbiased SD instead of the plug-in one).
The factor is 1.05 at n = 30 and 1.007 at n = 200: it matters for small eval sets, where an unexpanded bootstrap
test is liberal.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Below this many discordant pairs McNemar uses the exact binomial test instead of the chi-square approximation.
EXACT_BELOW = 25


# A swapped statistic this close to the observed one (relative, in units of the metric's swap SD) is a tie and
# counts as "at least as bad": ties are common on discrete metrics and must never be lost to rounding.
TIE_TOL = 1e-9

# Resample weights are built in chunks of at most this many cells (16 MB), reusing one buffer, so memory stays
# bounded and cache-friendly for any n.
MAX_CELLS = 2_000_000


def bootstrap_weights(n: int, resamples: int, seed: int):
    """Yield (b, n) chunks of draw counts of ``resamples`` bootstrap resamples of n items (rows sum to n).

    Deterministic for (n, resamples, seed). The yielded array is reused for the next chunk: use it before asking
    for the next one.
    """
    rng = np.random.default_rng(seed)
    step = max(1, min(resamples, MAX_CELLS // max(n, 1)))
    buf = np.empty((step, n), dtype=np.float64)
    for start in range(0, resamples, step):
        b = min(step, resamples - start)
        drawn = rng.integers(0, n, (b, n))  # the same stream as b draws of n, one resample after another
        drawn += np.arange(0, b * n, n)[:, None]  # resample r counts into cells r * n .. r * n + n - 1
        buf[:b] = np.bincount(drawn.ravel(), minlength=b * n).reshape(b, n)
        yield buf[:b]


def bootstrap_many(items: list[tuple[object, np.ndarray]], *, resamples: int = 1000, seed: int = 0) -> list[np.ndarray]:
    """Corpus values of several (metric, (n, k) stats) pairs under the same B resamples, one (B,) array each.

    All stats are stacked column-wise so each chunk of resamples costs one matrix product for every metric.
    """
    if not items:
        return []
    n = items[0][1].shape[0]
    stacked = np.hstack([np.asarray(stats, dtype=np.float64) for _, stats in items])
    bounds = np.cumsum([0] + [stats.shape[1] for _, stats in items])
    parts: list[list[np.ndarray]] = [[] for _ in items]
    for w in bootstrap_weights(n, resamples, seed):
        totals, counts = w @ stacked, w.sum(axis=1)
        for k, (metric, _) in enumerate(items):
            parts[k].append(metric.from_sums(totals[:, bounds[k]:bounds[k + 1]], counts))
    return [np.concatenate(p) for p in parts]


def bootstrap_values(metric, arrays: list[np.ndarray], *, resamples: int = 1000, seed: int = 0) -> list[np.ndarray]:
    """Corpus values of each (n, k) stats array of one metric under the same B resamples: a list of (B,) arrays."""
    return bootstrap_many([(metric, a) for a in arrays], resamples=resamples, seed=seed)


def percentile_ci(values: np.ndarray, level: float = 0.95) -> tuple[float, float] | None:
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return None
    lo, hi = np.percentile(values, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


@dataclass
class Comparison:
    test: str
    n: int
    delta: float  # candidate - baseline on the matched samples
    p_value: float
    candidate: float
    baseline: float
    ci_delta: tuple[float, float] | None = None
    discordant: tuple[int, int] | None = None  # McNemar: (baseline right & candidate wrong, the reverse)

    def to_json(self) -> dict:
        out = {"test": self.test, "n": self.n, "delta": self.delta, "p_value": self.p_value,
               "candidate": self.candidate, "baseline": self.baseline,
               "ci_delta": list(self.ci_delta) if self.ci_delta else None}
        if self.discordant is not None:
            out["discordant"] = {"baseline_only": self.discordant[0], "candidate_only": self.discordant[1]}
        return out


def expansion(n: int, alpha: float) -> float:
    """Small-sample expansion of the re-centred bootstrap draws: ``sqrt(n / (n - 1)) * t_{n-1} / z`` at 1 - alpha.

    The bootstrap spreads like the plug-in SD (dividing by n) and like a normal, while the statistic over n rows
    spreads like a t with the unbiased SD; unexpanded, one-sided bootstrap tests reject more often than alpha at
    small n. Hesterberg's expanded percentile bootstrap ("What teachers
    should know about the bootstrap", 2015) widens by this factor; we widen the null draws the same way.
    """
    if n < 3:
        return 1.0
    from scipy.stats import norm, t

    return math.sqrt(n / (n - 1)) * float(t.ppf(1 - alpha, n - 1) / norm.ppf(1 - alpha))


def paired_bootstrap(metric, cand: np.ndarray, base: np.ndarray, *, resamples: int = 1000, seed: int = 0,
                     draws: tuple[np.ndarray, np.ndarray] | None = None, expand: float = 1.0) -> Comparison:
    """One-sided paired bootstrap: p = share of null resamples (deltas re-centred on 0) at least as bad as observed.

    ``cand`` and ``base`` are aligned (n, k) per-sample stats of the same samples; ``draws`` are their values
    under the same resamples when the caller has them already (``bootstrap_many``). ``expand`` widens the null
    draws (``expansion``).
    """
    n = cand.shape[0]
    c_all, b_all = metric.aggregate(cand), metric.aggregate(base)
    c_bs, b_bs = draws if draws is not None else bootstrap_values(metric, [cand, base], resamples=resamples,
                                                                   seed=seed)
    deltas = c_bs - b_bs
    deltas = deltas[np.isfinite(deltas)]
    observed = c_all - b_all
    if len(deltas) == 0 or not np.isfinite(observed):
        return Comparison("paired-bootstrap", n, float(observed), 1.0, c_all, b_all)
    centred = (deltas - deltas.mean()) * expand
    worse = observed if metric.higher_is_better is not False else -observed  # < 0 means the candidate is worse
    centred_worse = centred if metric.higher_is_better is not False else -centred
    p = (1 + int(np.count_nonzero(centred_worse <= worse))) / (1 + len(deltas))
    return Comparison("paired-bootstrap", n, float(observed), float(min(p, 1.0)), c_all, b_all,
                      percentile_ci(deltas))


def binomial_tail(b: int, c: int) -> tuple[float, str]:
    """One-sided P(X >= b), X ~ Binomial(b + c, 1/2): exact below EXACT_BELOW pairs, else continuity-corrected
    normal. The tail of McNemar's test and of the sign test."""
    disc = b + c
    if disc == 0:
        return 1.0, "exact"
    if disc < EXACT_BELOW:
        return sum(math.comb(disc, k) for k in range(b, disc + 1)) / 2 ** disc, "exact"
    return 0.5 * math.erfc((b - c - 1) / math.sqrt(disc) / math.sqrt(2)), "normal"


def mcnemar(cand: np.ndarray, base: np.ndarray) -> Comparison:
    """One-sided McNemar on 0/1 outcomes of the same samples: is the candidate right less often?

    b = baseline right & candidate wrong, c = the reverse. Under H0 b ~ Binomial(b + c, 1/2). Exact binomial
    tail when b + c < EXACT_BELOW, else the continuity-corrected normal approximation (chi-square, 1 df, one-sided).
    """
    cand = np.asarray(cand, dtype=float).reshape(-1) > 0.5
    base = np.asarray(base, dtype=float).reshape(-1) > 0.5
    n = len(cand)
    b = int(np.count_nonzero(base & ~cand))
    c = int(np.count_nonzero(~base & cand))
    p, how = binomial_tail(b, c)
    cand_v, base_v = (float(cand.mean()), float(base.mean())) if n else (float("nan"), float("nan"))
    return Comparison("mcnemar-exact" if how == "exact" else "mcnemar", n, cand_v - base_v, p, cand_v, base_v,
                      discordant=(b, c))


def sign_test(wins: np.ndarray, losses: np.ndarray, judged: np.ndarray) -> Comparison:
    """One-sided sign test of paired judgements: does the candidate lose more often than it wins?

    Ties drop out; under H0 losses ~ Binomial(wins + losses, 1/2). The value is the win rate with ties counted
    half (0.5 = as good as the baseline), so ``delta`` = win rate - 0.5.
    """
    won, lost, m = int(np.sum(wins)), int(np.sum(losses)), int(np.sum(judged))
    p, how = binomial_tail(lost, won)
    value = 0.5 + (won - lost) / (2 * m) if m else float("nan")
    return Comparison("sign-test-exact" if how == "exact" else "sign-test", m, value - 0.5, p, value, 0.5,
                      discordant=(lost, won))


CORRECTIONS = ("westfall-young", "holm", "none")


def sign_flip_null(members: list[tuple[object, np.ndarray, np.ndarray, bool]], *, resamples: int = 1000,
                   seed: int = 0) -> tuple[list[float], np.ndarray]:
    """Standardised observed drops (K,) and their (B, K) joint null from the same random swaps of paired rows.

    ``members`` are (metric, cand (n, k), base (n, k), higher_is_better) over the same n rows. Resample b swaps the
    candidate's and the baseline's stats on each row with probability 1/2 (the same rows for every metric) and
    recomputes every corpus value from the swapped sums. Each metric is scaled by the SD of its own swap
    distribution, the observed drop included: one symmetric function of all B + 1 values, the same scale for the
    observed and the swapped ones, so the B + 1 standardised vectors stay exchangeable.
    """
    n = members[0][1].shape[0]
    rng = np.random.default_rng(seed + 7919)
    # Swapping row i moves cand_i - base_i from the candidate's sums to the baseline's: one matrix product for all
    # metrics, and swapping rows where both systems agree moves exactly 0.
    diff = np.hstack([np.asarray(cand, dtype=np.float64) - np.asarray(base, dtype=np.float64)
                      for _, cand, base, _ in members])
    bounds = np.cumsum([0] + [cand.shape[1] for _, cand, _, _ in members])
    sums = [(cand.sum(axis=0), base.sum(axis=0)) for _, cand, base, _ in members]
    step = max(1, min(resamples, MAX_CELLS // max(n, 1)))
    parts: list[list[np.ndarray]] = [[] for _ in members]
    for start in range(0, resamples, step):
        swaps = rng.integers(0, 2, (min(step, resamples - start), n), dtype=np.uint8).astype(np.float64)
        moved = swaps @ diff
        counts = np.full(swaps.shape[0], float(n))
        for k, (metric, _, _, higher) in enumerate(members):
            (tc, tb), m = sums[k], moved[:, bounds[k]:bounds[k + 1]]
            swapped = metric.from_sums(tc - m, counts) - metric.from_sums(tb + m, counts)
            parts[k].append(swapped if higher else -swapped)
    t_obs, nulls = [], []
    for (metric, cand, base, higher), part in zip(members, parts, strict=True):
        one = np.array([float(n)])
        obs = float(metric.from_sums(cand.sum(axis=0, keepdims=True), one)[0]
                    - metric.from_sums(base.sum(axis=0, keepdims=True), one)[0])
        drop = -(obs if higher else -obs)
        null = -np.concatenate(part)
        pooled = np.append(null, drop)  # the observed data is one of the swaps: its scale treats all alike
        finite = pooled[np.isfinite(pooled)]
        sd = float(finite.std()) if len(finite) else 0.0
        if not np.isfinite(drop) or sd <= 1e-12 * max(1.0, abs(drop)):
            t_obs.append(math.inf if np.isfinite(drop) and drop > 1e-12 else 0.0)
            nulls.append(np.where(np.isfinite(null), 0.0, -np.inf))
            continue
        t_obs.append(drop / sd)
        nulls.append(np.where(np.isfinite(null), null / sd, -np.inf))
    return t_obs, np.column_stack(nulls)


def max_t_step_down(t_obs: Sequence[float], t_null: np.ndarray) -> np.ndarray:
    """Westfall-Young step-down adjusted p of K statistics from their (B, K) joint null draws (see the docstring)."""
    t = np.asarray(t_obs, dtype=float)
    null = np.asarray(t_null, dtype=float).reshape(-1, len(t))
    if len(t) == 0:
        return np.empty(0)
    order = np.argsort(-t, kind="stable")
    tails = np.maximum.accumulate(null[:, order][:, ::-1], axis=1)[:, ::-1]  # max over steps i..K, per resample
    ranked = t[order]
    counts = np.count_nonzero(tails >= (ranked - TIE_TOL * np.maximum(1.0, np.abs(ranked)))[None, :], axis=0)
    p = np.maximum.accumulate((1.0 + counts) / (1.0 + null.shape[0]))
    out = np.empty(len(t))
    out[order] = np.minimum(p, 1.0)
    return out


def holm(p_raw: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p values."""
    p = np.asarray(p_raw, dtype=float)
    k = len(p)
    order = np.argsort(p, kind="stable")
    stepped = np.maximum.accumulate(np.minimum(1.0, (k - np.arange(k)) * p[order]))
    out = np.empty(k)
    out[order] = stepped
    return out


def adjust(method: str, p_raw: Sequence[float], t_obs: Sequence[float] | None = None,
           t_null: np.ndarray | None = None) -> np.ndarray:
    """Family-wise adjusted p values by ``method`` (one of CORRECTIONS), never below the raw p.

    ``westfall-young`` needs the standardised statistics ``t_obs`` (K,) and draws of their joint null ``t_null``
    (B, K) (``sign_flip_null``). The raw p is a floor: for McNemar metrics it is their exact test (see the module docstring).
    """
    p_raw = np.asarray(p_raw, dtype=float)
    if method == "none" or len(p_raw) == 0:
        out = p_raw.copy()
    elif method == "holm":
        out = holm(p_raw)
    elif method == "westfall-young":
        if t_obs is None or t_null is None:
            raise ValueError("westfall-young needs t_obs and t_null")
        out = max_t_step_down(t_obs, t_null)
    else:
        raise ValueError(f"unknown correction {method!r}; use one of {', '.join(CORRECTIONS)}")
    return np.minimum(np.maximum(out, p_raw), 1.0)
