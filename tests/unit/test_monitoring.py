"""Metrics, PromQL templates, JSON logger and cost tracker: what an operator reads off /metrics, logs and bills."""
from __future__ import annotations

import io
import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from llmops.errors import InputError, UsageError
from llmops.monitoring import queries
from llmops.monitoring.cost import CostTracker, PriceTable, to_jsonable
from llmops.monitoring.logs import RequestLogger
from llmops.monitoring.metrics import RequestSample, ServerMetrics, status_for

# ------------------------------------------------------------------ metrics


def test_each_server_has_its_own_registry_and_version_label():
    a, b = ServerMetrics("v1"), ServerMetrics("v2")
    a.record_request(RequestSample("completions", 200, 0.3, input_tokens=5, output_tokens=7, ttft_s=0.1,
                                   generation_s=0.25, cost=0.002))
    a.record_request(RequestSample("chat", 500, 0.01))
    b.record_request(RequestSample("chat", 400, 0.01))
    assert a.value("llm_requests_total", endpoint="completions", status="ok") == 1
    assert a.value("llm_requests_total", endpoint="chat", status="error") == 1
    assert a.value("llm_requests_total", endpoint="chat", status="invalid") == 0  # pre-created, so rate() works
    assert b.value("llm_requests_total", endpoint="chat", status="invalid") == 1
    assert a.value("llm_input_tokens_total") == 5 and a.value("llm_output_tokens_total") == 7
    assert a.value("llm_cost_usd_total") == pytest.approx(0.002)
    assert a.value("llm_request_duration_seconds_count") == 2
    assert a.value("llm_time_to_first_token_seconds_sum") == pytest.approx(0.1)
    # (0.25 - 0.1) / (7 - 1) seconds per token after the first
    assert a.value("llm_time_per_output_token_seconds_sum") == pytest.approx(0.025)
    text = a.exposition().decode()
    assert 'llm_requests_total{endpoint="completions",model_version="v1",status="ok"} 1.0' in text
    assert "v2" not in text and "_created" not in text


def test_status_label_groups_http_codes():
    assert [status_for(c) for c in (200, 404, 400, 429, 500, 503)] == \
        ["ok", "invalid", "invalid", "invalid", "error", "error"]


def test_quality_gauge_is_the_mean_of_recent_feedback():
    m = ServerMetrics("v1", quality_window=3)
    assert m.value("llm_quality_score") is None  # no score until someone gives one
    for score in (1.0, 0.0, 0.5, 0.25):
        m.record_feedback(score)
    assert m.value("llm_quality_score") == pytest.approx((0.0 + 0.5 + 0.25) / 3)
    assert m.value("llm_feedback_total") == 4
    for bad in (1.5, -0.1, float("nan"), "0.5", True):
        with pytest.raises(ValueError, match="from 0 to 1"):
            m.record_feedback(bad)


def test_model_loaded_and_info():
    m = ServerMetrics("v3")
    assert m.value("llm_model_loaded") == 0
    m.set_loaded("support-bot")
    assert m.value("llm_model_loaded") == 1
    assert m.value("llm_model_info", model_name="support-bot") == 1


# ------------------------------------------------------------------ queries


def test_error_rate_query_renders_ratio_for_one_version_and_namespace():
    q = queries.render(queries.ERROR_RATE, version="v2", window="1m", namespace="prod")
    assert q == ('sum(rate(llm_requests_total{model_version="v2", namespace=~"prod", status="error"}[1m]))'
                 ' / sum(rate(llm_requests_total{model_version="v2", namespace=~"prod"}[1m]))')
    assert 'namespace=~".*"' in queries.render("error_rate", version="v2")


def test_every_template_renders_and_names_its_metric():
    rendered = queries.render_all(version='we"ird\\v', window="30s")
    assert set(rendered) >= {"error_rate", "latency_p99", "ttft_p95", "cost_per_request", "quality"}
    for q in rendered.values():
        assert '{model_version="we\\"ird\\\\v"' in q and "[30s]" in q and "{version}" not in q
    assert rendered["latency_p99"].startswith("histogram_quantile(0.99, sum by (le)")
    assert "llm_time_to_first_token_seconds_bucket" in rendered["ttft_p95"]


@pytest.mark.parametrize("kwargs, message", [
    ({"version": "v1", "window": "5 min"}, "PromQL duration"),
    ({"version": "v1", "namespace": "a b"}, "namespace"),
    ({"version": ""}, "version"),
])
def test_render_rejects_bad_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        queries.render(queries.ERROR_RATE, **kwargs)


# ------------------------------------------------------------------ logs


def _lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_request_log_hashes_prompt_by_default():
    stream = io.StringIO()
    log = RequestLogger("test.logs.private", stream=stream)
    log.request("r1", model_version="v1", prompt="my secret", response="ok", status=200, latency_s=0.5,
                input_tokens=2, output_tokens=1)
    (entry,) = _lines(stream)
    assert "my secret" not in stream.getvalue()
    assert entry["prompt_chars"] == 9 and len(entry["prompt_sha256"]) == 64
    assert entry["latency_ms"] == 500 and entry["level"] == "info" and entry["ts"].endswith("Z")
    assert datetime.fromisoformat(entry["ts"].replace("Z", "+00:00")).utcoffset() == timedelta(0)


def test_request_log_content_is_opt_in_and_errors_log_at_error_level():
    stream = io.StringIO()
    log = RequestLogger("test.logs.content", stream=stream, log_content=True)
    log.request("r2", model_version="v1", prompt="hello", response=None, status=503, latency_s=0.01)
    log.event("model_loaded", model_version="v1", load_seconds=1.5)
    req, event = _lines(stream)
    assert req["prompt"] == "hello" and req["response"] is None and req["level"] == "error"
    assert event["event"] == "model_loaded" and event["load_seconds"] == 1.5


def test_logger_setup_is_idempotent():
    stream = io.StringIO()
    RequestLogger("test.logs.once", stream=stream)
    log = RequestLogger("test.logs.once", stream=stream)
    log.event("x")
    assert len(_lines(stream)) == 1


# ------------------------------------------------------------------ cost


PRICES = {"currency": "EUR", "gpu_hour": 3.6,
          "models": {"default": {"input_per_million": 1, "output_per_million": 2},
                     "v2": {"input_per_million": "0.1", "output_per_million": "0.3"}}}


def test_costs_are_exact_and_use_the_version_price():
    table = PriceTable.from_dict(PRICES)
    rec = table.cost("v1", 1_000_000, 500_000, gpu_seconds=10)
    assert (rec.input_cost, rec.output_cost, rec.compute_cost) == (Decimal(1), Decimal(1), Decimal("0.01"))
    assert rec.total == Decimal("2.01")
    assert table.cost("v2", 10, 10).total == Decimal("0.000004")
    assert table.cost("v9", 0, 0, model_name="v2").total == 0


def test_tracker_sums_per_utc_day_and_version():
    tracker = CostTracker(PriceTable.from_dict(PRICES))
    late = datetime(2025, 3, 1, 23, 30, tzinfo=timezone(timedelta(hours=-5)))  # already 2 March in UTC
    for _ in range(10):
        tracker.track("v2", 100_000, 0, at=late)
    tracker.track("v1", 0, 1_000_000, at=datetime(2025, 3, 2, 1, 0, tzinfo=timezone.utc))
    tracker.track("v1", 1_000_000, 0, at=datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc))
    daily = tracker.daily_summary()
    assert list(daily) == ["2025-03-01", "2025-03-02"]
    assert daily["2025-03-02"]["total_cost"] == Decimal("0.1") + Decimal(2)  # 10 x 0.01, exactly
    assert daily["2025-03-02"]["requests"] == 11
    by_version = tracker.version_summary()
    assert by_version["v1"]["total_cost"] == Decimal(3) and by_version["v2"]["input_tokens"] == 1_000_000
    assert tracker.total() == Decimal("3.1")
    assert to_jsonable(by_version)["v2"]["total_cost"] == "0.1"
    with pytest.raises(ValueError, match="timezone-aware"):
        tracker.track("v1", 1, 1, at=datetime(2025, 1, 1))


@pytest.mark.parametrize("data, message", [
    ({"gpu_hours": 3}, "unknown key"),
    ({"models": {"default": {"input": 1}}}, "unknown key"),
    ({"models": {"default": {"input_per_million": -1}}}, ">= 0"),
    ({"gpu_hour": "cheap"}, "must be a number"),
    ([1, 2], "expected a mapping"),
])
def test_bad_price_tables_name_the_problem(data, message):
    with pytest.raises(UsageError, match=message):
        PriceTable.from_dict(data)


def test_price_table_files(tmp_path):
    path = tmp_path / "prices.yaml"
    path.write_text("gpu_hour: 2\nmodels:\n  default: {input_per_million: 0.5, output_per_million: 1.5}\n")
    assert PriceTable.load(path).price_for("any").output_per_million == Decimal("1.5")
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(InputError, match="not valid JSON"):
        PriceTable.load(tmp_path / "bad.json")
    with pytest.raises(InputError, match="does not exist"):
        PriceTable.load(tmp_path / "missing.yaml")
