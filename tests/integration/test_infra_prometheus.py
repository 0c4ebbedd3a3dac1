"""Exercises the real Prometheus fixture the way the canary-analysis issues will.

Owns: proof that ``prometheus_server`` scrapes a ``prometheus_client``
exporter started in the test and answers PromQL (instant values, recording
rules) with the values the exporter exposed.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from tests.infra import tools

pytestmark = tools.timeout_marks(90)


@pytest.fixture
def exporter() -> Iterator[tuple[str, CollectorRegistry]]:
    registry = CollectorRegistry()
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        yield f"127.0.0.1:{server.server_port}", registry
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_prometheus_scrapes_exporter_and_answers_promql(prometheus_server, exporter):
    target, registry = exporter
    requests = Counter("llmops_test_requests", "requests served", ["code"], registry=registry)
    latency = Gauge("llmops_test_p95_latency_seconds", "p95 latency", registry=registry)
    requests.labels(code="200").inc(97)
    requests.labels(code="500").inc(3)
    latency.set(0.25)

    prom = prometheus_server([target], job="model")
    assert prom.url.startswith("http://127.0.0.1:")
    assert prom.wait_for_value('up{job="model"}', lambda v: v == 1.0) == 1.0
    error_ratio = ('sum(llmops_test_requests_total{code=~"5.."}) '
                   '/ sum(llmops_test_requests_total)')
    assert prom.wait_for_value(error_ratio) == pytest.approx(0.03)
    assert prom.wait_for_value("llmops_test_p95_latency_seconds") == pytest.approx(0.25)

    latency.set(1.5)  # a later scrape sees the new value
    assert prom.wait_for_value("llmops_test_p95_latency_seconds", lambda v: v > 1) == pytest.approx(1.5)
    series = prom.query('llmops_test_requests_total{job="model"}')
    assert sorted(s["metric"]["code"] for s in series) == ["200", "500"]


def test_prometheus_evaluates_rule_files(prometheus_server, exporter, tmp_path):
    target, registry = exporter
    Gauge("llmops_test_queue_depth", "queue depth", registry=registry).set(21)
    rules = tmp_path / "rules.yml"
    rules.write_text(
        "groups:\n"
        "- name: test\n"
        "  rules:\n"
        "  - record: job:llmops_test_queue_depth:doubled\n"
        "    expr: 2 * llmops_test_queue_depth\n"
        "  - alert: QueueTooDeep\n"
        "    expr: llmops_test_queue_depth > 10\n"
    )
    prom = prometheus_server([target], rule_files=[rules])
    prom.check_rules(rules)
    assert prom.wait_for_value("job:llmops_test_queue_depth:doubled") == 42.0
    assert prom.wait_for_value('ALERTS{alertname="QueueTooDeep",alertstate="firing"}') == 1.0
