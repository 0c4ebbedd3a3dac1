"""One live window on canned Prometheus answers: counts and histograms in, pooled checks out, explained; missing
series and templates that cannot tell the versions apart are configuration errors."""
from __future__ import annotations

import pytest

from llmops.canary import queries
from llmops.canary.analysis import AnalysisConfig, Limits, Side, analyse
from llmops.errors import InputError, UsageError
from tests.unit.canary_fakes import FakeProm, counts

CANARY, STABLE = Side("v2", "llm-canary"), Side("v1", "llm-stable")
DEFAULT_LIMITS = {"error_rate": Limits(0.05, 0.2), "latency_p99": Limits(None, 0.5)}
FAST = {"0.1": 390, "0.5": 400, "+Inf": 400}
FAST_S = {"0.1": 3500, "0.5": 3600, "+Inf": 3600}


def run(values, weight=10, evidence=None, **cfg):
    cfg.setdefault("limits", DEFAULT_LIMITS)
    prom = FakeProm(values)
    ev = {} if evidence is None else evidence
    return analyse(prom, AnalysisConfig(**cfg), CANARY, STABLE, "prod", 30, weight=weight, evidence=ev,
                   min_requests=50), prom


def test_healthy_canary_is_recorded_with_counts_queries_and_pooled_evidence():
    values = {**counts(400, 2, 3600, 20), ("latency_seconds", "v2"): FAST, ("latency_seconds", "v1"): FAST_S}
    result, prom = run(values)
    err, lat = result["checks"]
    assert err["name"] == "error_rate" and err["outcome"] in ("pass", "pending")
    assert err["evidence"]["relative"]["canary_requests"] == 400
    assert err["evidence"]["absolute"]["events"] == 2
    assert lat["window"]["bound"] == 0.1 and list(lat["window"]["canary"]) == [10, 400]  # 10 of 400 above 0.1 s
    assert result["counts"]["canary"]["latency_seconds"] == FAST  # the what-if input format, replayable
    assert 'model_version="v2", namespace=~"prod"' in result["queries"]["requests"]["canary"]
    assert "sum by (le)" in result["queries"]["latency_seconds"]["stable"] and "[30s]" in prom.seen[0]


def test_evidence_is_pooled_across_windows():
    ev: dict = {}
    for _ in range(3):
        result, _ = run(counts(400, 4, 3600, 36), evidence=ev, limits={"error_rate": Limits(0.05, 0.2)})
    assert result["checks"][0]["evidence"]["relative"]["canary_requests"] == 1200


def test_slow_canary_fails_on_bucket_counts():
    slow = {"0.1": 100, "0.5": 380, "+Inf": 400}
    result, _ = run({**counts(400, 0, 3600, 0), ("latency_seconds", "v2"): slow, ("latency_seconds", "v1"): FAST_S})
    lat = result["checks"][1]
    assert lat["outcome"] == "fail" and "shown more than 50% worse" in lat["reason"]


def test_absolute_latency_limit_between_bounds_is_tested_at_the_next_bound():
    limits = {"latency_p99": Limits(0.3, None)}
    slow = {"0.1": 100, "0.5": 300, "+Inf": 400}
    result, _ = run({**counts(400, 0, 3600, 0), ("latency_seconds", "v2"): slow}, limits=limits)
    lat = result["checks"][0]
    assert lat["window"]["max_bound"] == 0.5 and lat["outcome"] == "fail"


@pytest.mark.parametrize("policy,counts_as", [("fail", "fail"), ("wait", "wait"), ("pass", "not_evaluated")])
def test_a_missing_histogram_is_reported_as_not_evaluated_never_dropped(policy, counts_as):
    # Traffic is there, but the stable's histogram is absent (mislabelled): the relative check cannot be evaluated.
    result, _ = run({**counts(400, 0, 3600, 0), ("latency_seconds", "v2"): FAST}, on_no_data=policy)
    lat = result["checks"][1]
    assert lat["outcome"] == "no_data" and lat["counts_as"] == counts_as
    assert "no stable latency_seconds histogram although the stable served 3600 requests" in lat["reason"]


def test_a_missing_stable_series_while_it_serves_is_a_configuration_error_with_the_query():
    with pytest.raises(UsageError, match=r"stable's requests series is absent .*model_version=\\?\"v1"):
        run({("requests", "v2"): 400, ("errors", "v2"): 0})
    with pytest.raises(UsageError, match="canary's requests series is absent"):
        run({("requests", "v1"): 3600, ("errors", "v1"): 0})


def test_missing_error_series_means_zero_errors():
    result, _ = run({("requests", "v2"): 400, ("requests", "v1"): 3600}, limits={"error_rate": Limits(0.05, 0.2)})
    assert result["errors"] == {"canary": 0, "stable": 0} and result["checks"][0]["outcome"] != "fail"


def test_quality_is_a_gauge_lower_is_worse():
    limits = {"quality": Limits(0.7, 0.1)}
    result, _ = run({**counts(400, 0, 3600, 0), ("quality", "v2"): 0.6, ("quality", "v1"): 0.9}, limits=limits)
    q = result["checks"][0]
    assert q["outcome"] == "fail" and "below min 0.7" in q["reason"] and "more than 10% lower" in q["reason"]


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
    f.write_text("latency_p99: histogram_quantile(0.99, x)\n")
    with pytest.raises(InputError, match="now 'latency_seconds'"):
        queries.load(str(f))


def test_a_template_that_cannot_tell_canary_from_stable_is_refused(tmp_path):
    f = tmp_path / "q.yaml"
    f.write_text("errors: sum(increase(llm_requests_total{{status=\"error\"}}[{window}]))\n")
    with pytest.raises(UsageError, match="renders the same PromQL for canary and stable"):
        queries.load(str(f))


def test_label_values_are_escaped():
    q = queries.render(queries.DEFAULTS["requests"], version='v"2', window="5s", namespace="", deployment="d")
    assert 'model_version="v\\"2"' in q and 'namespace=~".*"' in q


def test_at_full_weight_earlier_evidence_still_applies():
    ev: dict = {}
    lim = {"error_rate": Limits(None, 0.2)}
    for _ in range(4):  # at 50 % the canary has 5x the stable's errors, not yet decisive at 1e-12
        run(counts(400, 20, 400, 4), weight=50, evidence=ev, limits=lim, alpha=1e-12)
    before = ev["error_rate"]["relative"]["loglik"][:]
    result, _ = run(counts(800, 40, 0, 0), weight=100, evidence=ev, limits=lim, alpha=1e-12)
    err = result["checks"][0]
    assert ev["error_rate"]["relative"]["loglik"] == before  # nothing to compare at 100 % ...
    assert err["evidence"]["relative"]["log_accept"] < 0 and not err["accepted"]  # ... but it is not forgotten
