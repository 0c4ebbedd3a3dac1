"""The gate on synthetic verdicts: real regressions fail, equal systems pass (false-fail rate near alpha), tiny
samples are inconclusive, thresholds and missing metrics behave."""
from __future__ import annotations

import json

import numpy as np
import pytest

from llmops.errors import InputError, UsageError
from llmops.eval.backends import Generation, Generations
from llmops.eval.config import GateConfig, Threshold
from llmops.eval.data import EvalData, Sample
from llmops.eval.gate import Baseline, MetricResult, exit_code, judge
from llmops.eval.metrics import get_metric
from llmops.eval.runner import build_run, build_verdict, compute_metrics
from llmops.eval.stats import mcnemar, paired_bootstrap

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa".split()


def dataset(n: int, seed: int = 0) -> EvalData:
    rng = np.random.default_rng(seed)
    samples = [Sample(f"s{i}", " ".join(rng.choice(WORDS, 6)), i + 1, prompt=f"q{i}") for i in range(n)]
    return EvalData("synthetic.jsonl", samples, n, f"sha256:{n}-{seed}")


def system(data: EvalData, p_right: float, seed: int) -> list[str]:
    """Each answer is the reference with probability p_right, else random words."""
    rng = np.random.default_rng(seed)
    return [s.reference if rng.random() < p_right else " ".join(rng.choice(WORDS, 6)) for s in data.samples]


def verdict(data, preds, config=None, baseline=None, metrics=("accuracy", "bleu", "rouge1")):
    config = config or GateConfig()
    gens = Generations([Generation(p) for p in preds], None, {"backend": "predictions"})
    run = build_run(data, gens, backend="predictions")
    results, skipped = compute_metrics(run, list(metrics), config)
    return build_verdict(data=data, gens=gens, results=results, skipped=skipped, config=config, baseline=baseline,
                         model={"version": "test"})


def as_baseline(doc: dict, tmp_path) -> Baseline:
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(doc))
    return Baseline.load(path)


def test_clear_regression_fails_with_p_values(tmp_path):
    data = dataset(300)
    base = as_baseline(verdict(data, system(data, 0.8, 1)), tmp_path)
    v = verdict(data, system(data, 0.5, 2), baseline=base)
    assert v["result"] == "fail"
    for name in ("accuracy", "bleu", "rouge1"):
        m = v["metrics"][name]
        assert m["status"] == "fail", m["reasons"]
        assert m["baseline"]["p_value"] < 0.01 and m["baseline"]["delta"] < 0
    assert v["metrics"]["accuracy"]["baseline"]["test"] == "mcnemar"
    assert v["metrics"]["bleu"]["baseline"]["test"] == "paired-bootstrap"


def test_identical_and_better_systems_pass(tmp_path):
    data = dataset(300)
    preds = system(data, 0.6, 1)
    base = as_baseline(verdict(data, preds), tmp_path)
    assert verdict(data, preds, baseline=base)["result"] == "pass"
    better = verdict(data, system(data, 0.9, 3), baseline=base)
    assert better["result"] == "pass"
    assert better["metrics"]["bleu"]["baseline"]["delta"] > 0
    assert better["metrics"]["bleu"]["baseline"]["p_value"] > 0.5  # one-sided: "is it worse?" -> clearly not


def test_tiny_sample_is_inconclusive_and_the_policy_decides_the_exit_code(tmp_path):
    data = dataset(8)
    base = as_baseline(verdict(data, system(data, 0.9, 1)), tmp_path)
    v = verdict(data, system(data, 0.2, 2), baseline=base)
    assert v["result"] == "inconclusive"
    assert "only 8 samples shared" in " ".join(v["metrics"]["bleu"]["reasons"])
    assert exit_code("inconclusive", GateConfig(on_inconclusive="fail")) == 1
    assert exit_code("inconclusive", GateConfig(on_inconclusive="pass")) == 0
    assert exit_code("fail", GateConfig(on_inconclusive="pass")) == 1


def test_only_shared_samples_are_compared(tmp_path):
    data = dataset(100)
    base = as_baseline(verdict(data, system(data, 0.7, 1)), tmp_path)
    bigger = dataset(100, seed=0)
    bigger.samples += [Sample(f"new{i}", "alpha", 0, prompt=f"n{i}") for i in range(50)]
    v = verdict(bigger, system(bigger, 0.7, 1)[:100] + ["alpha"] * 50, baseline=base)
    assert v["metrics"]["accuracy"]["baseline"]["n_matched"] == 100
    assert v["metrics"]["accuracy"]["baseline"]["delta"] == 0  # same answers on the 100 shared samples


@pytest.mark.slow
def test_false_fail_rate_on_equal_systems_stays_near_alpha():
    """Two systems of the same quality, 300 independent seeds: the gate (min effect 0) fails about alpha of the time."""
    alpha, seeds, n = 0.05, 300, 120
    config = GateConfig(alpha=alpha, bootstrap=400)
    bleu = get_metric("rouge1")
    fails_mc = fails_bs = 0
    rng = np.random.default_rng(7)
    for seed in range(seeds):
        a, b = rng.random(n) < 0.6, rng.random(n) < 0.6
        fails_mc += mcnemar(a.astype(float), b.astype(float)).p_value < alpha
        sa, sb = rng.beta(2, 2, n).reshape(-1, 1), rng.beta(2, 2, n).reshape(-1, 1)
        fails_bs += paired_bootstrap(bleu, sa, sb, resamples=config.bootstrap, seed=seed).p_value < alpha
    assert 0.005 <= fails_mc / seeds <= 0.09, fails_mc
    assert 0.01 <= fails_bs / seeds <= 0.09, fails_bs


def test_mcnemar_exact_binomial_hand_checked():
    ones = np.ones(10)
    cand = ones.copy()
    cand[:5] = 0  # baseline right, candidate wrong on 5; no reverse cases
    comp = mcnemar(cand, ones)
    assert comp.test == "mcnemar-exact" and comp.discordant == (5, 0)
    assert comp.p_value == pytest.approx(1 / 32)
    base = np.array([1, 1, 1, 1, 1, 1, 0] + [1] * 3, dtype=float)
    cand = np.array([0, 0, 0, 0, 0, 0, 1] + [1] * 3, dtype=float)
    assert mcnemar(cand, base).p_value == pytest.approx(8 / 128)  # P(X >= 6 | 7, 1/2)


def test_mcnemar_uses_the_normal_approximation_for_many_discordant_pairs():
    base = np.array([1] * 60 + [0] * 40, dtype=float)
    cand = np.array([0] * 60 + [1] * 40, dtype=float)  # b = 60, c = 40
    comp = mcnemar(cand, base)
    assert comp.test == "mcnemar"
    from scipy.stats import norm

    assert comp.p_value == pytest.approx(norm.sf((60 - 40 - 1) / np.sqrt(100)))


def _results(value, n, ci=None, name="accuracy", stats=None):
    return {name: MetricResult(name, get_metric(name), value, n, stats, ci)}


def test_significant_drop_below_the_min_effect_passes():
    n = 2000
    base = np.ones((n, 1))
    cand = base.copy()
    cand[:20] = 0  # 1 point worse, p ~ 1e-6
    doc = {"schema": "llmops-eval-verdict/1", "metrics": {"accuracy": {
        "value": 1.0, "signature": get_metric("accuracy").signature()}}}
    baseline = Baseline("b.json", doc, [str(i) for i in range(n)], {"accuracy": base})
    ids = [str(i) for i in range(n)]
    res = _results(0.99, n, stats=cand)
    result, per = judge(res, ids, GateConfig(min_effect={"accuracy": 0.02}), baseline)
    assert result == "pass" and "below the min effect" in per["accuracy"]["reasons"][0]
    result, per = judge(res, ids, GateConfig(min_effect={"accuracy": 0.005}), baseline)
    assert result == "fail"


def test_lower_is_better_metrics_fail_when_they_rise():
    n = 200
    rng = np.random.default_rng(0)
    base = np.column_stack([rng.gamma(2.0, 1.0, n) * 5, np.full(n, 5.0)])  # (nll sum, tokens)
    cand = base.copy()
    cand[:, 0] *= 1.3
    metric = get_metric("loss")
    doc = {"schema": "llmops-eval-verdict/1", "metrics": {"loss": {"value": metric.aggregate(base),
                                                                   "signature": metric.signature()}}}
    ids = [str(i) for i in range(n)]
    baseline = Baseline("b.json", doc, ids, {"loss": base})
    res = {"loss": MetricResult("loss", metric, metric.aggregate(cand), n, cand, None)}
    result, per = judge(res, ids, GateConfig(), baseline)
    assert result == "fail" and per["loss"]["baseline"]["delta"] > 0
    res = {"loss": MetricResult("loss", metric, metric.aggregate(base * [0.8, 1]), n, base * [0.8, 1], None)}
    assert judge(res, ids, GateConfig(), baseline)[0] == "pass"


def test_thresholds_with_enough_samples_and_with_few():
    config = GateConfig(thresholds={"accuracy": Threshold(min=0.6)}, min_samples=30)
    assert judge(_results(0.55, 100, (0.45, 0.65)), [], config, None)[0] == "fail"
    assert judge(_results(0.65, 100, (0.55, 0.75)), [], config, None)[0] == "pass"
    assert judge(_results(0.55, 10, (0.3, 0.8)), [], config, None)[0] == "inconclusive"
    result, per = judge(_results(0.1, 10, (0.0, 0.3)), [], config, None)
    assert result == "fail" and "whole 95% CI" in per["accuracy"]["reasons"][0]
    lat = GateConfig(thresholds={"latency_p95": Threshold(max=1.0)}, min_samples=1)
    assert judge(_results(1.5, 10, name="latency_p95"), [], lat, None)[0] == "fail"


def test_a_threshold_on_a_metric_without_a_value_is_a_clear_error():
    config = GateConfig(thresholds={"bleu": Threshold(min=20)})
    with pytest.raises(UsageError, match="no value for threshold metric bleu"):
        judge(_results(0.9, 100), [], config, None)


def test_different_metric_settings_are_not_compared(tmp_path):
    data = dataset(100)
    base_doc = verdict(data, system(data, 0.7, 1), metrics=("bleu",))
    base_doc["metrics"]["bleu"]["signature"] = base_doc["metrics"]["bleu"]["signature"].replace("tok:13a", "tok:zh")
    v = verdict(data, system(data, 0.7, 1), baseline=as_baseline(base_doc, tmp_path), metrics=("bleu",))
    assert v["metrics"]["bleu"]["status"] == "inconclusive"
    assert "settings differ" in v["metrics"]["bleu"]["reasons"][0]


def test_a_baseline_without_the_metric_is_noted_not_an_error(tmp_path):
    data = dataset(50)
    base = as_baseline(verdict(data, system(data, 0.7, 1), metrics=("accuracy",)), tmp_path)
    v = verdict(data, system(data, 0.7, 2), baseline=base, metrics=("accuracy", "chrf"))
    assert v["metrics"]["chrf"]["status"] == "pass"
    assert v["metrics"]["chrf"]["reasons"] == ["baseline has no chrf: not compared"]


@pytest.mark.parametrize("content, message", [
    ("not json", "not valid JSON"),
    ('{"metrics": {}}', "is not an evaluate-and-gate verdict"),
    ('{"schema": "llmops-eval-verdict/1", "metrics": {}, "samples": {"ids": ["a"], "stats": {"bleu": [[1], [2]]}}}',
     "has 2 rows for 1 ids"),
])
def test_bad_baseline_files_are_input_errors(tmp_path, content, message):
    path = tmp_path / "b.json"
    path.write_text(content)
    with pytest.raises(InputError, match=message):
        Baseline.load(path)
    with pytest.raises(InputError, match="baseline verdict not found"):
        Baseline.load(tmp_path / "missing.json")


def test_verdict_records_everything_later_steps_need(tmp_path):
    data = dataset(40)
    config = GateConfig(thresholds={"accuracy": Threshold(min=0.1)}, seed=3)
    v = verdict(data, system(data, 0.7, 1), config=config)
    m = v["metrics"]["accuracy"]
    assert set(m) >= {"value", "ci", "n", "signature", "threshold", "status", "baseline", "direction", "test"}
    assert m["threshold"] == {"min": 0.1, "max": None} and m["n"] == 40 and m["ci"][0] <= m["value"] <= m["ci"][1]
    assert v["seed"] == 3 and v["data"]["hash"] == data.hash and v["model"]["version"] == "test"
    assert len(v["samples"]["ids"]) == 40 and len(v["samples"]["stats"]["bleu"]) == 40
    json.dumps(v, allow_nan=False)  # strict JSON: NaN/inf are written as null
