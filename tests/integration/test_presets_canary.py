"""Whole canaries judged on the metrics of the servers teams run: scripts/canary_step.py walks the weights of a
real HTTPRoute / VirtualService / Ingress on the test control plane, with ``--metrics-preset <server>`` (each
Deployment's pod pattern, or the router's own labels; the nginx canary takes the preset's templates as a queries
file from ``bin/metrics_preset.py`` instead, the other way a user can run them), against real Prometheus scraping exporters with each server's exact exposition
(tests/infra/exporters.py) that serve the split traffic. A healthy canary is promoted; a canary answering 30% of
its requests with server errors is rolled back before it reaches 100%, traffic back on stable.

One Prometheus serves all scenarios (its first scrape takes ~5 s), each in its own namespace, and the six canaries
run at the same time (they mostly wait for their windows).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.infra import exporters as ex
from tests.infra.traffic import Splitter, deployment, nginx_canary_weight

pytestmark = [pytest.mark.k8s, pytest.mark.prometheus, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = [(kind, provider, healthy) for kind, provider in (("vllm", "gateway-api"), ("tgi", "gateway-api"),
                                                              ("istio", "istio")) for healthy in (True, False)]
SCENARIOS.append(("nginx", "nginx", False))  # the controller's canary label, through the preset's `or`
BAD = 0.3  # share of the bad canary's requests answered 500 (as in test_canary_step): caught in 5 s windows of the
# first weight even when a loaded machine sends only a few dozen requests per window
FAST = ["--interval", "5s", "--min-requests", "20", "--failure-limit", "1", "--max-latency-increase", "off"]


@pytest.fixture(scope="module")
def stacks(k8s_cluster):
    from tests.infra.prometheus import PrometheusServer

    worlds, jobs, prom = {}, [], None
    try:
        for kind, _provider, healthy in SCENARIOS:
            ns = k8s_cluster.namespace()
            if kind == "nginx":  # one controller sees both sides; the canary backend fails
                ctrl = ex.Exporter(kind, pod="ingress-nginx-controller-6b7d9-q2w4z", namespace=ns,
                                   service="llm-stable", error_rate=BAD)
                worlds[(kind, healthy)] = (ns, {"controller": ctrl})
                jobs += ex.scrape_configs([ctrl], job="nginx-bad", honor_labels=True)
                continue
            pods = {"stable": ex.Exporter(kind, pod="llm-stable-5d8f9c7b4-x2x4q", namespace=ns, model="v1"),
                    "canary": ex.Exporter(kind, pod="llm-canary-7d9f8c6b5d-q2w4z", namespace=ns, model="v2",
                                          error_rate=0.0 if healthy else BAD)}
            worlds[(kind, healthy)] = (ns, pods)
            jobs += ex.scrape_configs(list(pods.values()), job=f"{kind}-{'ok' if healthy else 'bad'}")
        prom = PrometheusServer([], extra_scrape_configs=jobs)
        prom.start()
        prom.wait_until_targets_up()
        yield worlds, prom
    finally:
        if prom is not None:
            prom.stop()
        for _ns, pods in worlds.values():
            for e in pods.values():
                e.close()


def _route(k8s_cluster, ns: str, provider: str) -> None:
    from kubernetes import client

    custom = client.CustomObjectsApi(k8s_cluster.api_client)
    if provider == "nginx":
        client.NetworkingV1Api(k8s_cluster.api_client).create_namespaced_ingress(ns, {
            "metadata": {"name": "llm"}, "spec": {"rules": [{"http": {"paths": [{
                "path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": "llm-stable", "port": {"number": 80}}}}]}}]}})
    elif provider == "istio":
        custom.create_namespaced_custom_object("networking.istio.io", "v1beta1", ns, "virtualservices", {
            "apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService", "metadata": {"name": "llm"},
            "spec": {"hosts": ["llm"], "http": [{"route": [{"destination": {"host": "llm-stable"}}]}]}})
    else:
        custom.create_namespaced_custom_object("gateway.networking.k8s.io", "v1", ns, "httproutes", {
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "llm"},
            "spec": {"rules": [{"backendRefs": [{"name": "llm-stable", "port": 80}]}]}})


def _weight(k8s_cluster, ns: str, provider: str) -> int:
    from kubernetes import client

    if provider == "nginx":
        return nginx_canary_weight(client.NetworkingV1Api(k8s_cluster.api_client), ns)
    custom = client.CustomObjectsApi(k8s_cluster.api_client)
    group, version, plural, rules, dests = {
        "istio": ("networking.istio.io", "v1beta1", "virtualservices", "http", "route"),
        "gateway-api": ("gateway.networking.k8s.io", "v1", "httproutes", "rules", "backendRefs")}[provider]
    obj = custom.get_namespaced_custom_object(group, version, ns, plural, "llm", _request_timeout=5)
    weights = {d.get("destination", {}).get("host") or d.get("name"): d.get("weight", 0)
               for d in obj["spec"][rules][0][dests]}
    return int(weights.get("llm-canary", 0))


def test_whole_canaries_on_the_servers_own_metrics(k8s_cluster, stacks, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(SCENARIOS)) as pool:
        runs = {s: pool.submit(_scenario, k8s_cluster, stacks, tmp_path / f"{s[0]}-{s[2]}", *s) for s in SCENARIOS}
    for future in runs.values():
        future.result()  # re-raises the scenario's assertion, with the scenario in its message


def _scenario(k8s_cluster, stacks, tmp_path: Path, kind: str, provider: str, healthy: bool) -> None:
    from kubernetes import client

    tmp_path.mkdir()
    worlds, prom = stacks
    ns, pods = worlds[(kind, healthy)]
    where = f"{kind} {'healthy' if healthy else 'errors'}"
    apps = client.AppsV1Api(k8s_cluster.api_client)
    apps.create_namespaced_deployment(ns, deployment("llm-stable", "v1", 4))
    apps.create_namespaced_deployment(ns, deployment("llm-canary", "v2", 1))
    _route(k8s_cluster, ns, provider)
    queries = tmp_path / "queries.yaml"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INPUT_", "GITHUB_"))}
    env.update(PYTHONPATH=str(ROOT), GITHUB_OUTPUT=str(tmp_path / "out.txt"))
    preset = subprocess.run([sys.executable, str(ROOT / "bin" / "metrics_preset.py"), kind],
                            capture_output=True, text=True, env=env, timeout=60, check=True)
    queries.write_text(preset.stdout)
    urls = ((pods["controller"].url + "/stable", pods["controller"].url + "/canary") if kind == "nginx"
            else (pods["stable"].url, pods["canary"].url))
    load = Splitter(lambda: _weight(k8s_cluster, ns, provider), *urls, 15 if healthy else 30)
    load.start()
    try:
        steps = "50,100" if healthy else "20,50,100"
        proc = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "canary_step.py"), "--provider", provider, "--namespace", ns,
             "--stable", "llm-stable", "--canary", "llm-canary", "--route", "llm", "--prometheus-url", prom.url,
             "--kubeconfig", k8s_cluster.kubeconfig, "--report", str(tmp_path / "report.json"),
             "--rollout-timeout", "60", "--steps", steps, *FAST,
             *(["--queries", str(queries)] if kind == "nginx" else ["--metrics-preset", kind])],
            capture_output=True, text=True, env=env, timeout=300)
    finally:
        load.stop()
    log = proc.stdout + proc.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    windows = report["windows"]
    where += f" {[(w.get('weight'), w.get('requests'), w.get('errors'), w.get('outcome')) for w in windows]}"
    assert report["selection"]["metrics_preset"] == ("llmops" if kind == "nginx" else kind), (where, report)
    first = windows[0]["queries"]["requests"]
    assert first["canary"] != first["stable"] and "llm-canary" in first["canary"], (where, first)
    if healthy:
        assert proc.returncode == 0, (where, log)
        assert windows[-1]["weight"] == 100 and windows[-1]["outcome"] == "pass", (where, log)
        assert all(w["outcome"] in ("pass", "inconclusive") for w in windows), (where, log)  # too little traffic
    else:
        assert proc.returncode == 1, (where, log[-3000:])
        assert all(w["weight"] < 100 for w in windows), (where, log)  # rolled back before reaching 100%
        failed = [w for w in windows if any(c["name"] == "error_rate" and c["outcome"] == "fail"
                                            for c in w["checks"])]
        assert failed, (where, log[-3000:])  # rolled back for its errors
        # Above 30% is possible: a series born inside the window (the servers create them on first use) loses
        # its first sample's count, and the error series is born with fewer than the request series.
        assert failed[-1]["errors"]["stable"] == 0 and failed[-1]["error_rate"]["canary"] > 0.03, (where, failed)
        assert _weight(k8s_cluster, ns, provider) == 0, where
    assert load.sent["canary"] > 0 and load.sent["stable"] > 0, where
