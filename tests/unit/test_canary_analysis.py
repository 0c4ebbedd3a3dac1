"""One analysis window on canned Prometheus answers: outcomes, no-data policy, and what the record explains."""
from __future__ import annotations

import pytest

from llmops.canary import queries
from llmops.canary.analysis import AnalysisConfig, Limits, Side, analyse
from llmops.errors import InputError, UsageError
from tests.unit.canary_fakes import FakeProm, counts

CANARY, STABLE = Side("v2", "llm-canary"), Side("v1", "llm-stable")
DEFAULT_LIMITS = {"error_rate": Limits(0.05, 0.2), "latency_p99": Limits(None, 0.5)}


def run(values, **cfg):
    cfg.setdefault("limits", DEFAULT_LIMITS)
    prom = FakeProm(values)
    return analyse(prom, AnalysisConfig(**cfg), CANARY, STABLE, "prod", 30), prom


def test_healthy_canary_passes_with_values_and_queries_recorded():
    values = {**counts(400, 2, 3600, 20), ("latency_p99", "v2"): 0.09, ("latency_p99", "v1"): 0.08}
    result, prom = run(values)
    assert result["outcome"] == "pass", result["reason"]
    err = result["checks"][0]
    assert err["name"] == "error_rate" and err["samples"] == {"canary": 400, "stable": 3600}
    assert [t["test"] for t in err["tests"]] == ["binomial", "conditional-binomial"]
    assert all(0 <= t["p_value"] <= 1 for t in err["tests"])
    assert 'model_version="v2", namespace=~"prod"' in result["queries"]["requests"]["canary"]
    assert "[30s]" in result["queries"]["errors"]["stable"]
    assert result["checks"][1]["queries"]["canary"] in prom.seen


def test_error_spike_fails_with_the_reason():
    result, _ = run({**counts(400, 40, 3600, 20), ("latency_p99", "v2"): 0.09, ("latency_p99", "v1"): 0.08})
    assert result["outcome"] == "fail"
    assert "10.00% is above max 5.00%" in result["reason"] and "more than 20% worse" in result["reason"]


def test_latency_relative_limit():
    result, _ = run({**counts(400, 0, 3600, 0), ("latency_p99", "v2"): 0.5, ("latency_p99", "v1"): 0.1})
    assert result["outcome"] == "fail" and "latency_p99" in result["reason"]


def test_too_little_traffic_waits_even_when_errors_look_bad():
    result, _ = run({**counts(10, 5, 500, 0), ("latency_p99", "v2"): 9.0, ("latency_p99", "v1"): 0.1},
                    min_requests=50)
    assert result["outcome"] == "inconclusive"
    assert "too little traffic: the canary served 10 requests" in result["reason"]


@pytest.mark.parametrize("policy,outcome", [("fail", "fail"), ("wait", "inconclusive"), ("pass", "pass")])
def test_no_data_is_a_named_outcome_with_a_policy(policy, outcome):
    # Traffic is there, but the latency histogram gives NaN / no series for the canary.
    result, _ = run({**counts(400, 0, 3600, 0), ("latency_p99", "v1"): 0.1}, on_no_data=policy)
    lat = result["checks"][1]
    assert lat["outcome"] == "no_data" and lat["counts_as"] == {"fail": "fail", "wait": "inconclusive"}.get(
        policy, "pass")
    assert result["outcome"] == outcome


def test_canary_not_scraped_at_all_is_no_data_not_too_little_traffic():
    values = {("requests", "v1"): 3600, ("errors", "v1"): 0}
    result, _ = run(values, limits={"error_rate": Limits(0.05, 0.2)})
    assert result["checks"][0]["outcome"] == "no_data" and result["outcome"] == "fail"


def test_missing_error_series_means_zero_errors():
    result, _ = run({("requests", "v2"): 400, ("requests", "v1"): 3600}, limits={"error_rate": Limits(0.05, 0.2)})
    assert result["errors"] == {"canary": 0, "stable": 0} and result["outcome"] == "pass"


def test_quality_lower_is_worse():
    limits = {"quality": Limits(0.7, 0.1)}
    result, _ = run({**counts(400, 0, 3600, 0), ("quality", "v2"): 0.6, ("quality", "v1"): 0.9}, limits=limits)
    assert result["outcome"] == "fail"
    assert "below min 0.7" in result["reason"] and "more than 10% lower" in result["reason"]
    result, _ = run({**counts(400, 0, 3600, 0), ("quality", "v2"): 0.88, ("quality", "v1"): 0.9}, limits=limits)
    assert result["outcome"] == "pass"


def test_custom_templates_file(tmp_path):
    f = tmp_path / "q.yaml"
    f.write_text('requests: sum(increase(my_requests{{app="{deployment}", v="{version}"}}[{window}]))\n')
    templates = queries.load(str(f))
    assert queries.render(templates["requests"], version="v2", window="30s", namespace="", deployment="d") == \
        'sum(increase(my_requests{app="d", v="v2"}[30s]))'
    f.write_text("latency: up\n")
    with pytest.raises(InputError, match="unknown query name 'latency'"):
        queries.load(str(f))
    f.write_text('requests: sum(x{{a="{pod}"}})\n')
    with pytest.raises(UsageError, match="unknown placeholder 'pod'"):
        queries.load(str(f))


def test_label_values_are_escaped():
    q = queries.render(queries.DEFAULTS["requests"], version='v"2', window="5s", namespace="", deployment="d")
    assert 'model_version="v\\"2"' in q and 'namespace=~".*"' in q


def test_at_full_weight_stable_has_no_traffic_so_only_absolute_limits_apply():
    # At 100% the stable serves nothing: relative limits have nothing to compare with (not a failure) ...
    result, _ = run({**counts(400, 2, 0, 0), ("latency_p99", "v2"): 0.09})
    assert result["outcome"] == "pass", result["reason"]
    assert all("relative limit not applied" in c["note"] for c in result["checks"])
    # ... while the absolute error-rate limit still catches a bad canary.
    result, _ = run({**counts(400, 60, 0, 0), ("latency_p99", "v2"): 0.09})
    assert result["outcome"] == "fail" and "above max 5.00%" in result["reason"]
