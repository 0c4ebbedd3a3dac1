"""Equal systems: the whole gate fails at most alpha of the time, and the pieces that make the swap null exact.

Whole gates run through ``judge`` on synthetic per-sample stats of two systems drawn from one noise model: exact
match (0/1, many ties), three ROUGE-like mean scores and corpus BLEU from per-sentence sufficient statistics, with
every minimum effect at 0 so nothing but the statistics stands between a null candidate and a fail. The test is
sized to fail on a liberal gate: the per-metric gate (``none``) of the same trials is caught, and so would be any
bug that moved the whole-gate rate by more than ~3 standard errors. The pieces: the swap p of exact match equals
McNemar's exact tail (ties counted), and corpus BLEU / chrF recomputed from swapped per-row stats equal
sacrebleu's score of the swapped texts.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from llmops.eval import gate
from llmops.eval.config import GateConfig
from llmops.eval.gate import Baseline, MetricResult, judge
from llmops.eval.metrics import EvalRun, get_metric
from llmops.eval.stats import binomial_tail, max_t_step_down, sign_flip_null

NAMES = ("exact_match", "rouge1", "rouge2", "rouge_l", "bleu")


def system(refs: np.ndarray, p_right: float, rng) -> dict[str, np.ndarray]:
    """Per-sample stats: a right row scores full marks; a near miss keeps each word with probability ~1/2."""
    n = len(refs)
    right = rng.random(n) < p_right
    keep = np.where(right, 1.0, rng.uniform(0.2, 0.8, n))
    out = {"exact_match": right.astype(float).reshape(-1, 1)}
    for name in ("rouge1", "rouge2", "rouge_l"):  # partial credit of its own: related through the right rows only
        out[name] = np.where(right, 1.0, rng.uniform(0, 1, n)).reshape(-1, 1)
    total = np.maximum(refs[:, None].astype(int) - np.arange(4)[None, :], 0)  # n-grams of order 1..4 in a hypothesis
    correct = np.where(right[:, None], total, rng.binomial(total, keep[:, None] ** (1 + np.arange(4))[None, :]))
    out["bleu"] = np.column_stack([refs, refs, correct, total]).astype(float)  # sacrebleu's stats layout
    return out


@pytest.mark.slow
def test_equal_systems_fail_the_whole_gate_at_most_alpha_of_the_time(monkeypatch):
    monkeypatch.setattr(gate, "SWAPS", 1000)  # any B is exact; fewer swaps only make each p coarser
    n, trials, alpha = 100, 600, 0.1
    ids = [str(i) for i in range(n)]
    metrics = {name: get_metric(name) for name in NAMES}
    signatures = {name: m.signature() for name, m in metrics.items()}
    config = {"min_effect": dict.fromkeys(NAMES, 0.0), "alpha": alpha, "bootstrap": 200}
    rng = np.random.default_rng(2024)
    fails, none_fails, gate_p = 0, 0, []
    for t in range(trials):
        refs = rng.integers(4, 13, n).astype(float)
        base, cand = system(refs, 0.6, rng), system(refs, 0.6, rng)
        entries = {name: {"value": m.aggregate(base[name]), "signature": signatures[name]}
                   for name, m in metrics.items()}
        baseline = Baseline("b.json", {"schema": gate.VERDICT_SCHEMA, "metrics": entries}, ids, base)
        results = {name: MetricResult(name, m, m.aggregate(cand[name]), n, cand[name]) for name, m in metrics.items()}
        result, per = judge(results, ids, GateConfig(seed=t, **config), baseline)
        records = [per[name]["baseline"] for name in NAMES]
        worse = [r for r in records if r["delta"] < 0]
        fails += result == "fail"
        none_fails += any(r["p_raw"] < alpha for r in worse)
        gate_p.append(min((r["p_adjusted"] for r in worse), default=1.0))
    sd = math.sqrt(alpha * (1 - alpha) / trials)
    assert fails / trials <= alpha + 3 * sd, (fails, trials)
    assert fails / trials >= alpha - 4 * sd, (fails, trials)  # not vacuous: about alpha, not far below it
    assert none_fails / trials >= alpha + 5 * sd, (none_fails, trials)  # the per-metric gate would be caught
    gate_p = np.asarray(gate_p)
    for level in (0.02, 0.05, 0.2, 0.3):  # the whole gate's p is uniform (or above) at every level
        assert np.mean(gate_p < level) <= level + 3 * math.sqrt(level * (1 - level) / trials), level


@pytest.mark.parametrize(("b", "c"), [(14, 5), (20, 12), (40, 25), (9, 9)])
def test_swap_p_of_exact_match_is_mcnemars_exact_tail_with_ties_counted(b, c):
    n, resamples = 150, 40_000
    cand, base = np.ones(n), np.ones(n)
    cand[:b] = 0  # baseline right, candidate wrong
    base[b:b + c] = 0  # the reverse
    t, null = sign_flip_null([(get_metric("exact_match"), cand.reshape(-1, 1), base.reshape(-1, 1), True)],
                             resamples=resamples, seed=b)
    p_swap = max_t_step_down(t, null)[0]
    exact = sum(math.comb(b + c, k) for k in range(b, b + c + 1)) / 2 ** (b + c)  # P(X >= b): the tie included
    assert abs(p_swap - exact) < 4 * math.sqrt(exact * (1 - exact) / resamples) + 1e-4, (p_swap, exact)
    assert binomial_tail(b, c)[0] == pytest.approx(exact, abs=0.01)


@pytest.mark.parametrize("name", ["bleu", "chrf"])
def test_corpus_metric_from_swapped_row_stats_is_the_metric_of_the_swapped_texts(name):
    import sacrebleu

    rng = np.random.default_rng(7)
    vocab = [f"w{i}" for i in range(40)]
    refs = [" ".join(rng.choice(vocab, int(rng.integers(3, 10)))) for _ in range(40)]
    hyp_a = [" ".join(w if rng.random() < 0.6 else "x" for w in r.split()) for r in refs]
    hyp_b = [" ".join(w if rng.random() < 0.4 else "y" for w in r.split()[::-1]) for r in refs]
    metric = get_metric(name)

    def stats(hyps):  # per-row sufficient statistics, as the evaluation computes them
        return metric.compute(EvalRun([str(i) for i in range(len(refs))], refs, hyps)).stats

    a, b = stats(hyp_a), stats(hyp_b)
    for _ in range(5):
        swap = rng.random(len(refs)) < 0.5
        texts = [hb if s else ha for ha, hb, s in zip(hyp_a, hyp_b, swap, strict=True)]
        summed = (np.where(swap[:, None], b, a)).sum(axis=0, keepdims=True)
        corpus = (sacrebleu.corpus_bleu if name == "bleu" else sacrebleu.corpus_chrf)(texts, [refs]).score
        assert metric.from_sums(summed, np.array([len(refs)]))[0] == pytest.approx(corpus, abs=1e-9)
