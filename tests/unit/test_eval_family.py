"""Family-wise control of the whole gate: adjusted p values, primary and guard metrics, thresholds apart.

Whole gates on synthetic per-sample stats: a consistent drop on correlated metrics still fails where Holm gives
up; guards warn and never fail; old verdicts still work as baselines. Equal systems failing the gate as a whole
at most alpha of the time: tests/unit/test_gate_null.py.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from llmops.errors import UsageError
from llmops.eval.config import GateConfig, Threshold, build_config
from llmops.eval.gate import Baseline, MetricResult, judge
from llmops.eval.metrics import get_metric
from llmops.eval.stats import adjust, holm, max_t_step_down

QUALITY = ("exact_match", "rouge1", "rouge2", "rouge_l")


def rows(n: int, p_right: float, rng) -> dict[str, np.ndarray]:
    """Per-sample stats of one system: right rows score 1 everywhere, near misses a noisy partial score."""
    right = rng.random(n) < p_right
    out = {"exact_match": right.astype(float).reshape(-1, 1)}
    for k, name in enumerate(QUALITY[1:]):
        partial = np.clip(rng.normal(0.5 - 0.1 * k, 0.15, n), 0, 1)
        out[name] = np.where(right, 1.0, partial).reshape(-1, 1)
    return out


def baseline_of(stats: dict[str, np.ndarray], ids: list[str]) -> Baseline:
    metrics = {name: {"value": get_metric(name).aggregate(arr), "signature": get_metric(name).signature()}
               for name, arr in stats.items()}
    return Baseline("baseline.json", {"schema": "llmops-eval-verdict/1", "metrics": metrics}, ids, stats)


def results_of(stats: dict[str, np.ndarray]) -> dict[str, MetricResult]:
    out = {}
    for name, arr in stats.items():
        metric = get_metric(name)
        out[name] = MetricResult(name, metric, metric.aggregate(arr), len(arr), arr)
    return out


def test_step_down_max_t_and_holm_hand_checked():
    rng = np.random.default_rng(0)
    null = rng.standard_normal((999, 1))
    copies = np.hstack([null] * 4)  # four identical metrics: one test, no price for multiplicity
    single = max_t_step_down([1.8], null)[0]
    assert np.allclose(max_t_step_down([1.8] * 4, copies), single)
    independent = rng.standard_normal((999, 4))
    p = max_t_step_down([1.8, 0.0, -1.0, 3.5], independent)
    assert p[3] < p[0] < p[1] <= p[2]  # step-down order follows the statistics
    assert p[0] > single  # independent metrics do cost something
    assert holm([0.01, 0.04, 0.03]).tolist() == pytest.approx([0.03, 0.06, 0.06])
    assert adjust("none", [0.01, 0.2]).tolist() == [0.01, 0.2]
    assert adjust("westfall-young", [0.2], [3.0], null)[0] == 0.2  # never below the raw p (McNemar's floor)


def test_a_consistent_drop_on_correlated_metrics_fails_where_holm_does_not():
    n = 400
    ids = [str(i) for i in range(n)]
    rng = np.random.default_rng(3)
    score = rng.normal(0.6, 0.1, n)
    base = {name: score.reshape(-1, 1) for name in ("rouge1", "rouge2", "rouge_l")}
    noise = rng.normal(0, 0.1, n)
    noise -= noise.mean()
    cand_score = score + noise - 1.9 * noise.std() / np.sqrt(n)  # a drop of 1.9 standard errors: p ~ 0.03
    cand = {name: cand_score.reshape(-1, 1) for name in base}  # three metrics that move as one
    baseline = baseline_of(base, ids)
    effect = {name: 0.001 for name in base}
    per_wy = judge(results_of(cand), ids, GateConfig(min_effect=effect), baseline)
    per_holm = judge(results_of(cand), ids, GateConfig(min_effect=effect, correction="holm"), baseline)
    raw = per_wy[1]["rouge1"]["baseline"]["p_raw"]
    assert 0.05 / 3 < raw < 0.05, raw  # significant alone, not after Bonferroni/Holm for 3
    assert per_wy[0] == "fail" and per_holm[0] == "pass"
    record = per_wy[1]["rouge1"]["baseline"]
    assert record["p_adjusted"] == pytest.approx(raw, abs=0.01) and record["correction"] == "westfall-young"
    assert record["family_size"] == 3 and "adjusted" in per_wy[1]["rouge1"]["reasons"][0]
    assert per_holm[1]["rouge1"]["baseline"]["p_adjusted"] == pytest.approx(min(1, 3 * raw), rel=0.01)


def test_guard_metrics_warn_and_never_fail_but_their_thresholds_do():
    n = 300
    ids = [str(i) for i in range(n)]
    rng = np.random.default_rng(5)
    base = rows(n, 0.7, rng)
    cand = {name: arr.copy() for name, arr in base.items()}
    cand["rouge2"] = cand["rouge2"] * 0.7  # only rouge2 drops, clearly
    baseline = baseline_of(base, ids)
    config = build_config([])
    config.guard = ["rouge2"]
    result, per = judge(results_of(cand), ids, config, baseline)
    assert result == "pass"
    assert per["rouge2"]["status"] == "warn" and per["rouge2"]["role"] == "guard"
    assert "warns, does not fail" in per["rouge2"]["reasons"][0]
    assert per["rouge2"]["baseline"]["family_size"] == 1 and per["rouge1"]["baseline"]["family_size"] == 3
    config.thresholds["rouge2"] = Threshold(min=0.9)
    result, per = judge(results_of(cand), ids, config, baseline)
    assert result == "fail" and per["rouge2"]["threshold_status"] == "fail"
    assert per["rouge2"]["baseline"]["status"] == "warn"  # the regression test is reported apart
    assert judge(results_of(cand), ids, GateConfig(), baseline)[0] == "fail"  # as a primary it fails


def test_primary_names_the_deciding_metrics_and_bad_roles_are_clear_errors(tmp_path):
    path = tmp_path / "t.yml"
    path.write_text("gate: {primary: [exact_match, rouge], correction: holm}\n")
    config = build_config([str(path)])
    assert config.primary == ["exact_match", "rouge1", "rouge2", "rouge_l"] and config.correction == "holm"
    assert config.role("bleu") == "guard" and config.role("rouge2") == "primary"
    path.write_text("gate: {primary: [bleu], guard: [bleu]}\n")
    with pytest.raises(UsageError, match="both primary and guard"):
        build_config([str(path)])
    path.write_text("gate: {correction: bonferroni}\n")
    with pytest.raises(UsageError, match="westfall-young, holm, none"):
        build_config([str(path)])
    stats = rows(50, 0.6, np.random.default_rng(0))
    with pytest.raises(UsageError, match="primary metric chrf not computed"):
        judge(results_of(stats), [], GateConfig(primary=["chrf"]), None)
    lat = {"latency_p95": MetricResult("latency_p95", get_metric("latency_p95"), 0.5, 50)}
    with pytest.raises(UsageError, match="no paired test"):
        judge(lat, [], GateConfig(guard=["latency_p95"]), None)


def test_verdict_reports_thresholds_apart_and_says_what_alpha_means(tmp_path):
    from tests.unit.test_gate import dataset, system, verdict

    data = dataset(120)
    config = GateConfig(thresholds={"bleu": Threshold(min=99.0)})
    base_doc = verdict(data, system(data, 0.6, 1), metrics=("exact_match", "bleu", "rouge1"))
    old = json.loads(json.dumps(base_doc))
    for key in ("checks",):
        old.pop(key)
    for m in old["metrics"].values():  # a verdict written before family-wise control
        for key in ("threshold_status", "role"):
            m.pop(key)
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old))
    v = verdict(data, system(data, 0.6, 2), config=config, baseline=Baseline.load(path),
                metrics=("exact_match", "bleu", "rouge1"))
    assert v["checks"]["thresholds"] == "fail" and v["checks"]["regression"] in ("pass", "fail")
    assert v["gate"]["family"] == ["exact_match", "bleu", "rouge1"] and v["gate"]["correction"] == "westfall-young"
    assert "fails the gate on any of its 3 primary metrics" in v["gate"]["alpha_means"]
    for name in v["gate"]["family"]:
        b = v["metrics"][name]["baseline"]
        assert b["p_adjusted"] >= b["p_raw"] == b["p_value"]
    from llmops.eval.report import summary

    text = "\n".join(summary(v, "v.json").parts)
    assert "Regression tests against the baseline" in text and "**Thresholds**" in text
    assert "What alpha means here" in text
