"""kubectl-promote --strategy blue-green against the real control plane: the Service moves only after the new colour
is healthy, a failure before the switch never touches it, a failure after the switch switches straight back."""
from __future__ import annotations

import time

import pytest
from kubernetes import client as k8s

from tests.infra import tools
from tests.integration.promote_helpers import ModelServer, deployment, leases, outputs, run_cli

pytestmark = [pytest.mark.k8s, pytest.mark.slow, *tools.timeout_marks(240)]


def _setup(cluster, ns):
    apps, core = k8s.AppsV1Api(cluster.api_client), k8s.CoreV1Api(cluster.api_client)
    for color, replicas in (("blue", 2), ("green", 0)):
        apps.create_namespaced_deployment(ns, deployment(f"llm-{color}", "reg/llm:v1", replicas=replicas,
                                                         labels={"app": "llm", "color": color}))
    core.create_namespaced_service(ns, {"metadata": {"name": "llm"}, "spec": {
        "selector": {"app": "llm", "color": "blue"}, "ports": [{"port": 80, "targetPort": 8000}]}})
    for color in ("blue", "green"):
        cluster.kubectl("rollout", "status", f"deployment/llm-{color}", "-n", ns, "--timeout=60s")
    return apps, core


def _selector(core, ns):
    return core.read_namespaced_service("llm", ns).spec.selector["color"]


@pytest.fixture
def bg(k8s_cluster, k8s_namespace):
    apps, core = _setup(k8s_cluster, k8s_namespace)
    seen: list[tuple[str, str]] = []  # (path probed, Service colour at that moment)
    server = ModelServer(on_get=lambda path: seen.append((path, _selector(core, k8s_namespace))))
    try:
        yield apps, core, server, seen
    finally:
        server.close()


def _promote(cluster, ns, server, *extra):
    return run_cli("--kubeconfig", cluster.kubeconfig, "--namespace", ns, "--deployment", "llm", "--force",
                   "--strategy", "blue-green", "--service", "llm", "--health-url", server.url + "/health/{color}",
                   "--health-interval", "0.3", *extra)


def test_switches_the_service_only_after_the_new_colour_is_healthy(k8s_cluster, k8s_namespace, bg):
    apps, core, server, seen = bg
    ns = k8s_namespace
    proc = _promote(k8s_cluster, ns, server, "--model-version", "v2", "--scale-down-delay", "0")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _selector(core, ns) == "green"
    probes = [(path, colour) for path, colour in seen if path.startswith("/health")]
    assert probes and all(path == "/health/green" and colour == "blue" for path, colour in probes), seen
    green, blue = (apps.read_namespaced_deployment(f"llm-{c}", ns) for c in ("green", "blue"))
    assert green.spec.replicas == 2 and green.spec.template.spec.containers[0].env[0].value == "v2"
    assert blue.spec.replicas == 0, "the old colour is scaled down after the delay"
    ann = core.read_namespaced_service("llm", ns).metadata.annotations
    assert ann["llmops.dev/active-color"] == "green" and ann["llmops.dev/model-version"] == "v2"
    assert not leases(k8s_cluster, ns), "the lock (a Lease) is released"
    assert outputs(proc)["previous-version"] == "v1" and outputs(proc)["new-version"] == "v2"

    # one-click rollback: blue is scaled back up, then the Service points at it again
    proc = run_cli("--kubeconfig", k8s_cluster.kubeconfig, "--namespace", ns, "--deployment", "llm",
                   "--strategy", "blue-green", "--rollback", "--scale-down-delay", "0")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _selector(core, ns) == "blue" and outputs(proc)["new-version"] == "v1"
    assert apps.read_namespaced_deployment("llm-blue", ns).status.available_replicas == 2


def test_failed_check_never_touches_the_service(k8s_cluster, k8s_namespace, bg):
    apps, core, server, seen = bg
    ns = k8s_namespace
    server.down.add("/health/green")
    proc = _promote(k8s_cluster, ns, server, "--model-version", "v2", "--health-timeout", "2")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "the Service still points at blue (v1)" in proc.stdout
    assert _selector(core, ns) == "blue" and all(colour == "blue" for _, colour in seen)
    green = apps.read_namespaced_deployment("llm-green", ns)
    assert green.spec.replicas == 0 and green.spec.template.spec.containers[0].env[0].value == "v1"
    assert outputs(proc)["rolled-back"] == "true"


def test_failure_after_the_switch_switches_back(k8s_cluster, k8s_namespace, bg):
    apps, core, server, seen = bg
    ns = k8s_namespace

    def break_green_once_live(path):
        if _selector(core, ns) == "green":
            server.down.add("/health/green")

    server.on_get = lambda path: (seen.append((path, _selector(core, ns))), break_green_once_live(path))
    proc = _promote(k8s_cluster, ns, server, "--model-version", "v2", "--scale-down-delay", "20")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "switched the Service back to blue" in proc.stdout
    assert _selector(core, ns) == "blue"
    assert apps.read_namespaced_deployment("llm-blue", ns).spec.replicas == 2, "blue was never scaled down"


def test_blue_green_needs_a_colour_selector(k8s_cluster, k8s_namespace, bg):
    apps, core, server, _ = bg
    ns = k8s_namespace
    core.patch_namespaced_service("llm", ns, {"spec": {"selector": {"app": "llm", "color": "red"}}})
    proc = _promote(k8s_cluster, ns, server, "--model-version", "v2")
    assert proc.returncode == 2 and "color=blue or color=green" in proc.stdout


def test_dry_run_shows_both_changes_and_writes_nothing(k8s_cluster, k8s_namespace, bg):
    apps, core, server, _ = bg
    ns = k8s_namespace
    before = core.read_namespaced_service("llm", ns).metadata.resource_version
    proc = _promote(k8s_cluster, ns, server, "--model-version", "v2", "--dry-run")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "+  replicas: 2" in proc.stdout and "+    color: green" in proc.stdout
    assert core.read_namespaced_service("llm", ns).metadata.resource_version == before
    assert apps.read_namespaced_deployment("llm-green", ns).spec.replicas == 0
    rollback = run_cli("--kubeconfig", k8s_cluster.kubeconfig, "--namespace", ns, "--deployment", "llm",
                       "--strategy", "blue-green", "--rollback", "--dry-run")
    assert rollback.returncode == 0, rollback.stdout + rollback.stderr
    assert "+    color: green" in rollback.stdout and "+  replicas: 2" in rollback.stdout, "the scale-up is shown"
    assert outputs(rollback)["new-version"] == "v1"
    assert apps.read_namespaced_deployment("llm-green", ns).spec.replicas == 0


def test_rollback_after_a_killed_promotion_keeps_the_live_colour_and_restores_the_idle_one(
        k8s_cluster, k8s_namespace, bg):
    from tests.integration.promote_helpers import start_cli

    apps, core, server, _ = bg
    ns = k8s_namespace
    k8s_cluster.kubelet.set_behavior("reg/llm:v2-stuck", "unready")
    proc = start_cli("--kubeconfig", k8s_cluster.kubeconfig, "--namespace", ns, "--deployment", "llm", "--force",
                     "--strategy", "blue-green", "--image", "reg/llm:v2-stuck", "--model-version", "v2",
                     "--lock-ttl", "3")
    try:
        tools.wait_until(lambda: apps.read_namespaced_deployment("llm-green", ns).spec.replicas == 2, 60,
                         what="green to be scaled up with v2")
        time.sleep(0.5)
    finally:
        proc.kill()
        proc.communicate(timeout=30)
    back = run_cli("--kubeconfig", k8s_cluster.kubeconfig, "--namespace", ns, "--deployment", "llm",
                   "--strategy", "blue-green", "--rollback", "--scale-down-delay", "0")
    assert back.returncode == 0, back.stdout + back.stderr
    assert outputs(back)["new-version"] == "v1" and "still selects blue" in back.stdout
    assert _selector(core, ns) == "blue", "the half-updated green never gets the traffic"
    green = apps.read_namespaced_deployment("llm-green", ns)
    assert green.spec.replicas == 0 and green.spec.template.spec.containers[0].image == "reg/llm:v1"
    assert not leases(k8s_cluster, ns)
