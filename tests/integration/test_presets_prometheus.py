"""Every metrics preset rendered for a canary and a stable and run against real Prometheus scraping exporters that
expose each server's exact metrics (tests/infra/exporters.py), with known traffic: a healthy stable (2000
requests, no errors) and a canary with 10% server errors, plus a decoy pod (a StatefulSet ``llm-canary-db-0``, or
a ``llm-canary-shadow`` workload / upstream for the routers) that sends 300 errors and must never be counted.

What a user would notice if a preset were wrong: the canary's error count would include the decoy (or the
stable's), the two sides would render the same query, or a latency quantile would come from the other side's
buckets. ``increase()`` extrapolates to the window edges; each side is queried at its own target's last scrape
and over a window that starts before Prometheus's first sample, which leaves only the start-edge extrapolation
(at most first value / increase = 1%): counts are compared within 2%, and the error *ratio* of one side, from
series of one scrape with the same extrapolation, exactly.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest

from llmops.canary import presets, queries
from tests.infra import exporters as ex

pytestmark = [pytest.mark.prometheus]
NS = "prod"
STABLE = {"n": 2000, "errors": 0, "latency": 1.2, "ttft": 0.05}
CANARY = {"n": 1000, "errors": 100, "latency": 4.5, "ttft": 0.3}
HASH = {"llm-stable": "5d8f9c7b4", "llm-canary": "7d9f8c6b5d"}
ROUTERS = ("istio", "nginx")


def _pod(deployment: str) -> str:
    return f"{deployment}-{HASH[deployment]}-x2x4q"


def _drive(e: ex.Exporter, side: dict, **kw) -> None:
    e.record(side["n"] - side["errors"], ok=True, latency=side["latency"], ttft=side["ttft"], **kw)
    e.record(side["errors"], ok=False, latency=side["latency"], ttft=side["ttft"], **kw)


class World:
    def __init__(self) -> None:
        self.exps: dict[str, dict[str, ex.Exporter]] = {}
        self.nginx_up = {"canary": f"{NS}-llm-canary-80", "stable": "", "decoy": f"{NS}-llm-canary-shadow-80"}

    def start(self) -> None:
        for kind in ex.KINDS:
            if kind == "nginx":
                self.exps[kind] = {"controller": ex.Exporter(kind, pod="ingress-nginx-controller-6b7d9-q2w4z",
                                                             namespace=NS, service="llm-stable")}
                continue
            sides = {"stable": ex.Exporter(kind, pod=_pod("llm-stable"), namespace=NS, model="v1"),
                     "canary": ex.Exporter(kind, pod=_pod("llm-canary"), namespace=NS, model="v2")}
            if kind == "istio":
                sides["decoy"] = ex.Exporter(kind, pod="llm-canary-shadow-6c5b4-zz2q9", namespace=NS,
                                             model="shadow", deployment="llm-canary-shadow")
            else:
                sides["decoy"] = ex.Exporter(kind, pod="llm-canary-db-0", namespace=NS, model="shadow",
                                             deployment="llm-canary-db")
            self.exps[kind] = sides
        # Warm-up before the first scrape, so lazily created series exist; 1 error in 10 like the canary, so that
        # the start-edge extrapolation (bounded by first value / increase) is the same for requests and errors.
        warm = {"n": 10, "errors": 1, "latency": 1.0, "ttft": 0.1}
        self.each(lambda e, side, up: _drive(e, warm, canary_upstream=up))

    def each(self, fn) -> None:
        for kind, sides in self.exps.items():
            for name, e in sides.items():
                if kind == "nginx":
                    for side in ("stable", "canary", "decoy"):
                        fn(e, side, self.nginx_up[side])
                else:
                    fn(e, name, "")

    def traffic(self) -> None:
        decoy = {"n": 300, "errors": 300, "latency": 0.1, "ttft": 0.01}
        plan = {"stable": STABLE, "canary": CANARY, "decoy": decoy}
        self.each(lambda e, side, up: _drive(e, plan[side], canary_upstream=up))

    def close(self) -> None:
        for sides in self.exps.values():
            for e in sides.values():
                e.close()


@pytest.fixture(scope="module")
def scraped():
    from tests.infra.prometheus import PrometheusServer

    world = World()
    prom = None
    try:
        world.start()
        jobs = []
        for kind, sides in world.exps.items():
            jobs += ex.scrape_configs(list(sides.values()), job=kind, honor_labels=kind == "nginx")
        prom = PrometheusServer([], extra_scrape_configs=jobs)
        prom.start()
        prom.wait_until_targets_up()
        n_targets = sum(len(s) for s in world.exps.values())
        prom.wait_for_value("count(up == 1)", lambda v: v == n_targets)
        started = time.time() - 8  # before the first sample (~5 s after start)
        time.sleep(2)  # flat samples before the traffic
        world.traffic()
        prom.wait_for_value('sum(tgi_request_count{pod=~"llm-canary-7.*"})', lambda v: v >= 1010)
        prom.wait_for_value('sum(nginx_ingress_controller_requests{canary="prod-llm-canary-80"})',
                            lambda v: v >= 1010)
        prom.wait_for_scrapes_after(time.time())  # every target scraped at least twice after the traffic
        window = f"{math.ceil(time.time() - started + 5)}s"
        yield prom, window
    finally:
        if prom is not None:
            prom.stop()
        world.close()


def _at(prom, kind: str, side: str) -> float:
    """The time of the side's target's last scrape: no extrapolation past the last sample."""
    pod = "ingress-nginx-controller-6b7d9-q2w4z" if kind == "nginx" else _pod(f"llm-{side}")
    return float(prom.query(f'timestamp(up{{job="{kind}", pod="{pod}"}})')[0]["value"][1])


def _value(prom, promql: str, at: float | None = None) -> float | None:
    data = prom.api("/api/v1/query", {"query": promql, **({"time": f"{at:.3f}"} if at else {})})
    result = data["result"]
    assert len(result) <= 1, (promql, result)
    value = float(result[0]["value"][1]) if result else None
    return None if value is None or math.isnan(value) else value


def _render(template: str, side: str, window: str) -> str:
    deployment = presets.regex_escape(f"llm-{side}")
    return queries.render(template, version={"stable": "v1", "canary": "v2"}[side], window=window, namespace=NS,
                          deployment=deployment)


def _bucket(bounds: tuple, value: float) -> tuple[float, float]:
    lo = 0.0
    for b in bounds:
        if value <= b:
            return lo, b
        lo = b
    return lo, math.inf


LATENCY_BOUNDS = {"llmops": (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0), "vllm": ex.VLLM_E2E,
                  "tgi": ex.TGI_DURATION, "sglang": ex.SGLANG_E2E, "istio": tuple(b / 1000 for b in ex.ENVOY_MS),
                  "nginx": ex.GO_DEF_BUCKETS}
TTFT_BOUNDS = {"llmops": (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0), "vllm": ex.VLLM_TTFT,
               "sglang": ex.SGLANG_TTFT, "triton": tuple(b / 1000 for b in ex.TRITON_FIRST_RESPONSE_MS)}


def _check_side(prom, tpl: dict[str, str], side: str, window: str, kind: str, render=_render) -> None:
    want = {"stable": STABLE, "canary": CANARY}[side]
    at = _at(prom, kind, side)
    n = _value(prom, render(tpl["requests"], side, window), at)
    e = _value(prom, render(tpl["errors"], side, window), at) or 0.0
    assert n is not None and abs(n - want["n"]) <= 0.02 * want["n"], (kind, side, n, render(tpl["requests"],
                                                                                                side, window))
    assert abs(e - want["errors"]) <= 0.02 * want["errors"] + 1e-9, (kind, side, e)
    assert abs(e / n - want["errors"] / want["n"]) < 0.002, (kind, side, e, n)
    for name, key, bounds in (("latency_seconds", "latency", LATENCY_BOUNDS), ("ttft_seconds", "ttft", TTFT_BOUNDS)):
        if name not in tpl:
            continue
        # Which requests the server observes: failed ones too for ours and the proxies, else finished ones only.
        n_obs = want["n"] if name == "latency_seconds" and kind in OBSERVE_FAILED else want["n"] - want["errors"]
        hist = _histogram(prom, render(tpl[name], side, window), at)
        got = sorted(b for b in hist if b != math.inf)
        assert len(got) == len(bounds[kind]) and all(math.isclose(a, b) for a, b in zip(got, bounds[kind], strict=False)), \
            (kind, name, got)  # every bound, in seconds
        lo, hi = _bucket(bounds[kind], want[key])
        assert abs(hist[math.inf] - n_obs) <= 0.02 * n_obs, (kind, side, name, hist[math.inf], n_obs)
        for bound, count in hist.items():  # all in the bucket (lo, hi] of the recorded value: none faster
            expect = 0 if bound <= lo + 1e-12 else hist[math.inf] if bound >= hi - 1e-12 else None
            assert expect is None or abs(count - expect) <= 0.02 * n_obs, (kind, side, name, bound, count, expect)


OBSERVE_FAILED = {"llmops", "istio", "nginx"}


def _histogram(prom, promql: str, at: float) -> dict[float, float]:
    result = prom.api("/api/v1/query", {"query": promql, "time": f"{at:.3f}"})["result"]
    assert result and all("le" in r["metric"] for r in result), (promql, result)
    return {math.inf if r["metric"]["le"] == "+Inf" else float(r["metric"]["le"]): float(r["value"][1])
            for r in result}


@pytest.mark.parametrize("kind", ex.KINDS)
def test_preset_counts_each_side_from_its_own_pods(scraped, kind):
    prom, window = scraped
    tpl = presets.templates(kind)
    missing = {presets.CHECK_TEMPLATE[c] for c in presets.get(kind).missing}
    assert set(tpl) | missing == set(queries.DEFAULTS)
    rendered = {side: {k: _render(t, side, window) for k, t in tpl.items()} for side in ("canary", "stable")}
    presets.check_distinct(rendered["canary"], rendered["stable"])
    for side in ("canary", "stable"):
        _check_side(prom, tpl, side, window, kind)


@pytest.mark.parametrize("kind", [k for k in ex.KINDS if k not in ROUTERS])
def test_explicit_selectors_and_pod_template_hash(scraped, kind):
    """canary-selector / stable-selector rendered per side; the stable one pinned to its ReplicaSet's hash."""
    prom, window = scraped
    sides = {"canary": presets.side_templates(kind, presets.pod_selector("llm-canary", namespace=NS)),
             "stable": presets.side_templates(kind, presets.pod_selector("llm-stable", HASH["llm-stable"], NS))}
    for side, tpl in sides.items():
        _check_side(prom, tpl, side, window, kind)
    stale = presets.side_templates(kind, presets.pod_selector("llm-stable", "6f7b8c9d4", NS))
    assert (_value(prom, _render(stale["requests"], "stable", window)) or 0) == 0  # an old ReplicaSet: nothing


@pytest.mark.parametrize("kind", [k for k, p in presets.PRESETS.items() if p.version_label])
def test_version_label_selection(scraped, kind):
    prom, window = scraped
    _check_side(prom, presets.templates(kind, "version"), "canary", window, kind)


def test_extras_return_a_value_for_every_preset(scraped):
    prom, window = scraped
    for kind in ex.KINDS:
        for name, template in presets.templates(kind, extras=True).items():
            if name in presets.get(kind).extras:
                assert _value(prom, _render(template, "canary", window)) is not None, (kind, name)


DASHBOARDS = {"grafana-dashboard.json": ("llmops", "model_version", {"v2": "v2", "v1": "v1"}),
              "grafana-dashboard-vllm.json": ("vllm", "deployment", {"v2": "llm-canary", "v1": "llm-stable"})}
VARIABLES = {"$__rate_interval": None, "$namespace": NS, "$version": ".*", "$stable": "llm-stable",
             "$canary": "llm-canary", "$price_per_1k_tokens": "0.0005"}


@pytest.mark.parametrize("name", list(DASHBOARDS))
def test_grafana_dashboard_queries_answer_canary_vs_stable(scraped, name):
    """Every panel query of the dashboard, with Grafana's variables filled in, returns series from the server's
    metrics; the error-rate panel tells the 10%-error canary from the healthy stable."""
    prom, window = scraped
    kind, side_label, sides = DASHBOARDS[name]
    dash = json.loads((Path(__file__).resolve().parents[2] / "deploy/monitoring" / name).read_text())
    at = _at(prom, kind, "canary")
    exprs = [(panel["title"], t["expr"]) for panel in dash["panels"] for t in panel["targets"]]
    assert len(exprs) >= 10
    for title, expr in exprs:
        promql = expr
        for var, value in VARIABLES.items():
            promql = promql.replace(var, value or window)
        assert "$" not in promql.replace('"$1"', ""), (title, promql)
        result = prom.api("/api/v1/query", {"query": promql, "time": f"{at:.3f}"})["result"]
        assert result, (title, promql)
        if title.startswith("Error rate"):
            rates = {r["metric"][side_label]: float(r["value"][1]) for r in result}
            assert set(sides.values()) <= set(rates), rates
            if side_label == "deployment":  # selected by the two Deployments' pods: the decoy is in neither
                assert set(rates) == set(sides.values()), rates
            assert abs(rates[sides["v2"]] - 0.1) < 0.002 and rates[sides["v1"]] == 0, rates
