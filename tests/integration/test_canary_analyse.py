"""canary-step --mode analyse as a user runs it before the first canary: scripts/canary_step.py against real
Prometheus scraping exporters with vLLM's / TGI's exact metrics (tests/infra/exporters.py).

What a user would notice: a healthy pair passes (exit 0) and a canary with 10% server errors fails (exit 1), each
with the window record (requests and errors per side, every check with the PromQL it ran); a wrong preset or
selector is exit 2 with what to fix, never a traceback; Prometheus down is exit 3. With explicit selectors no
cluster is used at all; with the default pod selection the Deployments are only read (their resourceVersion does
not change), and a Deployment that is mid-rollout is counted by its current ReplicaSet's pods only.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.infra import exporters as ex

pytestmark = [pytest.mark.prometheus]
ROOT = Path(__file__).resolve().parents[2]
NS = "prod"
PODS = {"stable": "llm-stable-5d8f9c7b4-x2x4q", "canary": "llm-canary-7d9f8c6b5d-q2w4z",
        "bad": "llm-bad-7d9f8c6b5d-q2w4z"}
TRAFFIC = {"stable": (2000, 0), "canary": (1000, 0), "bad": (1000, 100)}  # (requests, of which errors)


def _drive(e: ex.Exporter, n: int, errors: int) -> None:
    e.record(n - errors, ok=True, latency=1.2, ttft=0.05)
    e.record(errors, ok=False, latency=1.2, ttft=0.05)


def _scraped(exporters: dict[str, ex.Exporter], traffic: dict[str, tuple[int, int]], probe: str):
    from tests.infra.prometheus import PrometheusServer

    for e in exporters.values():
        _drive(e, 2, 1)  # lazily created series (vLLM's status="5xx") exist before the first scrape
    prom = PrometheusServer([], extra_scrape_configs=ex.scrape_configs(list(exporters.values()), job="pods"))
    prom.start()
    try:
        prom.wait_until_targets_up()
        prom.wait_for_value("count(up == 1)", lambda v: v == len(exporters))
        time.sleep(6)  # flat samples first: increase() extrapolates by (gap to now) / (sampled span), keep it small
        for name, (n, errors) in traffic.items():
            _drive(exporters[name], n, errors)
        prom.wait_for_value(probe, lambda v: v >= 1000)
        prom.wait_for_scrapes_after(time.time())  # every target scraped again after the traffic
    except BaseException:
        prom.stop()
        raise
    return prom


@pytest.fixture(scope="module")
def vllm_world():
    exps = {name: ex.Exporter("vllm", pod=pod, namespace=NS, model=name) for name, pod in PODS.items()}
    prom = None
    try:
        prom = _scraped(exps, TRAFFIC, 'sum(http_requests_total{pod=~"llm-bad-.*"})')
        yield prom
    finally:
        if prom is not None:
            prom.stop()
        for e in exps.values():
            e.close()


def _analyse(tmp_path: Path, prom_url: str, *args: str) -> tuple[int, str, dict | None]:
    report = tmp_path / "analyse.json"
    report.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INPUT_", "GITHUB_", "KUBECONFIG"))}
    env.update(PYTHONPATH=str(ROOT), HOME=str(tmp_path))  # no ~/.kube/config to fall back on
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "canary_step.py"), "--mode", "analyse",
                           "--prometheus-url", prom_url, "--namespace", NS, "--interval", "60s",
                           "--report", str(report), *args], capture_output=True, text=True, env=env, timeout=120)
    log = proc.stdout + proc.stderr
    assert "Traceback" not in log, log
    return proc.returncode, log, json.loads(report.read_text()) if report.exists() else None


def _near(value: float, want: float) -> bool:
    return abs(value - want) <= 0.15 * want


def _sel(name: str) -> str:
    return f'pod=~"llm-{name}-.*", namespace="{NS}"'


def test_analyse_with_explicit_selectors_needs_no_cluster(vllm_world, tmp_path):
    prom = vllm_world
    base = ["--metrics-preset", "vllm", "--stable-selector", _sel("stable")]
    rc, log, record = _analyse(tmp_path, prom.url, *base, "--canary-selector", _sel("canary"))
    assert rc == 0, log
    w = record["window"]
    assert record["result"] == "pass" and record["kubernetes_calls"] == 0
    # increase() extrapolates the seconds of samples to the window's end (up to one scrape): counts within 15%
    assert _near(w["requests"]["canary"], 1000) and _near(w["requests"]["stable"], 2000), w["requests"]
    assert w["errors"] == {"canary": 0, "stable": 0}
    checks = {c["name"]: c for c in w["checks"]}
    assert set(checks) == {"error_rate", "latency_p99"}  # the enabled limits (defaults)
    assert 'pod=~"llm-canary-.*"' in checks["error_rate"]["promql"]["errors"]["canary"]
    assert 'status="5xx"' in checks["error_rate"]["promql"]["errors"]["stable"]
    assert "vllm:e2e_request_latency_seconds_bucket" in checks["latency_p99"]["promql"]["latency_seconds"]["canary"]
    assert record["selection"]["selection"] == "explicit"

    rc, log, record = _analyse(tmp_path, prom.url, *base, "--canary-selector", _sel("bad"))
    assert rc == 1, log
    w = record["window"]
    assert record["result"] == "fail" and "error_rate" in record["failed"]
    assert _near(w["errors"]["canary"], 100) and w["errors"]["stable"] == 0, w["errors"]
    assert 'pod=~"llm-bad-.*"' in w["queries"]["errors"]["canary"]


@pytest.mark.parametrize("args, says", [
    (["--metrics-preset", "ollama"], "vllm"),
    (["--metrics-preset", "vllm", "--canary-selector", "pod=llm-canary"], "label matchers"),
    (["--metrics-preset", "vllm", "--canary-selector", _sel("nothing")], "returned no series"),
    (["--metrics-preset", "vllm", "--canary-selector", _sel("stable")], "identical"),
    (["--metrics-preset", "tgi", "--canary-selector", _sel("canary"), "--max-ttft-increase", "0.5"],
     "max-ttft-p95 and max-ttft-increase to off"),
])
def test_a_bad_preset_or_selector_is_exit_2_with_the_fix(vllm_world, tmp_path, args, says):
    rc, log, _ = _analyse(tmp_path, vllm_world.url, "--stable-selector", _sel("stable"), *args)
    assert rc == 2, log
    assert says in log, log


def test_prometheus_down_is_exit_3(tmp_path):
    from tests.infra.prometheus import PrometheusServer

    prom = PrometheusServer([])
    prom.start()
    prom.stop()  # a real Prometheus, stopped: nothing listens on its port any more
    rc, log, _ = _analyse(tmp_path, prom.url, "--metrics-preset", "vllm", "--canary-selector", _sel("canary"),
                          "--stable-selector", _sel("stable"))
    assert rc == 3, log
    assert "unreachable" in log


def _deployment(name: str, image: str) -> dict:
    labels = {"app": "llm", "track": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 1, "progressDeadlineSeconds": 600, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "tgi", "image": image}]}}}}


@pytest.mark.k8s
@pytest.mark.slow
def test_default_pod_selection_reads_the_deployments_and_pins_a_rollout(k8s_cluster, tmp_path):
    """TGI labels nothing with the model: each side is its Deployment's pods. The canary Deployment is mid-rollout
    (its new revision's pods never get Ready), and its OLD ReplicaSet's pod still serves with 20% errors: the
    analysis counts the current ReplicaSet's pods only, and reads the cluster without writing to it."""
    from kubernetes import client

    from llmops.canary import presets
    from tests.infra import tools

    ns = k8s_cluster.namespace()
    apps = client.AppsV1Api(k8s_cluster.api_client)
    k8s_cluster.kubelet.set_behavior("tgi:analyse-rollout", "unready")
    apps.create_namespaced_deployment(ns, _deployment("llm-stable", "tgi:analyse-stable"))
    apps.create_namespaced_deployment(ns, _deployment("llm-canary", "tgi:analyse-v1"))
    hashes = {}
    for name in ("llm-stable", "llm-canary"):
        tools.wait_until(lambda n=name: _hash(k8s_cluster, ns, n), 30, 0.2, f"{name}'s ReplicaSet")
        hashes[name] = _hash(k8s_cluster, ns, name)
    old = hashes["llm-canary"]
    apps.patch_namespaced_deployment("llm-canary", ns, {"spec": {"template": {"spec": {"containers": [
        {"name": "tgi", "image": "tgi:analyse-rollout"}]}}}})
    tools.wait_until(lambda: _hash(k8s_cluster, ns, "llm-canary") not in (None, old), 30, 0.2, "the new ReplicaSet")
    new = _hash(k8s_cluster, ns, "llm-canary")
    exps = {"stable": ex.Exporter("tgi", pod=f"llm-stable-{hashes['llm-stable']}-x2x4q", namespace=ns),
            "canary": ex.Exporter("tgi", pod=f"llm-canary-{new}-q2w4z", namespace=ns),
            "old": ex.Exporter("tgi", pod=f"llm-canary-{old}-b7b7b", namespace=ns)}
    prom = None
    try:
        prom = _scraped(exps, {"stable": (2000, 0), "canary": (1000, 0), "old": (1000, 200)},
                        'sum(tgi_request_count{pod=~"llm-canary-.*"})')
        before = {d.metadata.name: d.metadata.resource_version for d in apps.list_namespaced_deployment(ns).items}
        common = ["--metrics-preset", "tgi", "--canary", "llm-canary", "--stable", "llm-stable",
                  "--kubeconfig", k8s_cluster.kubeconfig]
        rc, log, record = _analyse(tmp_path, prom.url, *common, "--namespace", ns, "--provider", "replicas")
        assert rc == 0, log
        assert record["weight"] == 50 and record["weight_from"] == "replicas route"  # 1 canary pod of 2, read
        assert record["selection"]["selectors"]["canary"] == presets.pod_selector("llm-canary", new, ns)
        assert any("rolling out" in n and new in n for n in record["notes"]), record["notes"]
        w = record["window"]
        assert _near(w["requests"]["canary"], 1000) and w["errors"]["canary"] == 0, w
        assert f"llm-canary-{new}-" in w["queries"]["requests"]["canary"]
        assert "llm-stable-" in w["queries"]["requests"]["stable"]
        after = {d.metadata.name: d.metadata.resource_version for d in apps.list_namespaced_deployment(ns).items}
        assert after == before  # read-only
    finally:
        if prom is not None:
            prom.stop()
        for e in exps.values():
            e.close()


def _hash(k8s_cluster, ns: str, name: str) -> str | None:
    from llmops.canary import presets
    from llmops.errors import UsageError

    try:
        return presets.current_pod_template_hash(k8s_cluster.api_client, ns, name)
    except UsageError:
        return None
