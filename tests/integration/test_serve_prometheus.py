"""Real Prometheus (Debian's, 1 s scrapes) scraping the model server: the PromQL the canary step will run reads back
the error rate that was injected, the cost per request and quality that were served, and the alert rules load."""
from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from llmops.monitoring import queries
from llmops.monitoring.cost import PriceTable
from llmops.monitoring.logs import RequestLogger
from llmops.serve.faults import Faults
from llmops.serve.generators import EchoGenerator, read_model_info
from llmops.serve.server import ModelServer
from tests.infra import tools

pytestmark = [pytest.mark.prometheus, *tools.timeout_marks(180)]
ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "drill"
T = 30


def _server(version: str, **kw) -> ModelServer:
    log = RequestLogger(f"test.integration.{version}", stream=io.StringIO())
    return ModelServer(EchoGenerator(), read_model_info(None, version=version), logger=log, **kw)


@pytest.fixture
def servers() -> Iterator[dict[str, ModelServer]]:
    prices = PriceTable.from_dict({"models": {"default": {"input_per_million": 1000, "output_per_million": 3000}}})
    made = {
        "stable": _server("v1", prices=prices, quality_score=0.9),
        "canary": _server("v2", prices=prices, faults=Faults(error_rate=0.25, seed=11)),
    }
    try:
        for server in made.values():
            server.start().wait_ready(30)
        yield made
    finally:
        for server in made.values():
            server.stop()


def _scrape_job(servers: dict[str, ModelServer]) -> dict:
    targets = [f"127.0.0.1:{s.port}" for s in servers.values()]
    return {"job_name": "llm", "static_configs": [{"targets": targets, "labels": {"namespace": NAMESPACE}}]}


def test_promql_error_rate_matches_the_injected_rate(prometheus_server, servers):
    prom = prometheus_server(extra_scrape_configs=[_scrape_job(servers)],
                             rule_files=[ROOT / "deploy/monitoring/llmops-alerts.rules.yml"])
    prom.wait_until_targets_up(30)  # the first scrape sees every request series at 0
    canary, stable = servers["canary"], servers["stable"]
    n = 400
    codes = [requests.post(canary.url + "/v1/completions", json={"prompt": "a b c", "max_tokens": 2},
                           timeout=T).status_code for _ in range(n)]
    for _ in range(50):
        assert requests.post(stable.url + "/v1/completions", json={"prompt": "a b c", "max_tokens": 2},
                             timeout=T).status_code == 200
    for score in (0.6, 0.8):
        requests.post(canary.url + "/v1/feedback", json={"score": score}, timeout=T).raise_for_status()
    injected = codes.count(500) / n
    assert 0.18 <= injected <= 0.32  # the seeded draw is close to the configured 25%

    # Wait until Prometheus has scraped all of it, then ask what the canary step will ask.
    prom.wait_for_value(f'sum(llm_requests_total{{model_version="v2", namespace="{NAMESPACE}"}})',
                        lambda v: v == n, timeout=30)
    prom.wait_for_value('sum(llm_requests_total{model_version="v1"})', lambda v: v == 50, timeout=30)
    q = queries.render_all(version="v2", window="5m", namespace=NAMESPACE)
    assert prom.query_value(q["error_rate"]) == pytest.approx(injected, abs=1e-6)
    assert prom.query_value(queries.render("error_rate", version="v1", window="5m")) == 0
    # Only successful requests cost money: 3 input words x 1000/M + 2 output words x 3000/M each.
    ok = n - codes.count(500)
    assert prom.query_value(q["cost_per_request"]) == pytest.approx(ok * 0.009 / n, rel=1e-6)
    assert prom.wait_for_value(q["quality"], lambda v: v == pytest.approx(0.7), timeout=30) == pytest.approx(0.7)
    assert prom.query_value(queries.render("quality", version="v1", window="5m")) == pytest.approx(0.9)
    # Histogram series appear with their first observation: when every request above landed between two scrapes,
    # Prometheus never sees the buckets increase and rate() stays 0/0 (NaN). Live traffic keeps coming, so keep
    # serving (one more request per poll) until the p99 is a number.
    def p99() -> float | None:
        requests.post(canary.url + "/v1/completions", json={"prompt": "a b c", "max_tokens": 2}, timeout=T)
        value = prom.query_value(q["latency_p99"])
        return value if value is not None and value == value else None

    latency = tools.wait_until(p99, 30, 0.5, "a p99 latency that is a number")
    assert latency is not None and 0 < latency <= 0.05  # echo answers within the first bucket
    for name, promql in q.items():  # every template is valid PromQL with one series (or none) as the answer
        assert len(prom.query(promql)) <= 1, name

    rules = prom.api("/api/v1/rules")["groups"]
    assert {r["name"] for g in rules for r in g["rules"]} == {
        "LLMHighErrorRate", "LLMHighLatencyP99", "LLMQualityDrop", "LLMCostSpike"}
    assert all(r["health"] != "err" for g in rules for r in g["rules"])


def test_injected_latency_shows_in_the_p99_query(prometheus_server):
    slow = _server("v-slow", faults=Faults(latency_ms=300))
    try:
        slow.start().wait_ready(30)
        prom = prometheus_server([f"127.0.0.1:{slow.port}"])
        prom.wait_until_targets_up(30)
        for _ in range(8):
            requests.post(slow.url + "/v1/completions", json={"prompt": "x"}, timeout=T).raise_for_status()
        prom.wait_for_value('sum(llm_requests_total{model_version="v-slow"})', lambda v: v == 8, timeout=30)
        p99 = prom.query_value(queries.render("latency_p99", version="v-slow", window="5m"))
        # 300 ms injected: p99 lands in the (0.25, 0.5] bucket, or the next one when a loaded machine adds time.
        assert 0.25 < p99 <= 1.0
    finally:
        slow.stop()
