"""kubectl-promote under faults, on the real control plane: a SIGKILLed run, two cancels during the undo, an API-server
outage, ``kubectl rollout undo`` after a promotion, a dead lock holder, a verdict for another version, a Role without
watch, and a vLLM-style server. The invariant each test checks: when the command ends, either the new version is fully
rolled out and passed its health check, or the previous version is live; the exit code and ``result`` say which; no
lock outlives its holder by more than its TTL; a re-run converges."""
from __future__ import annotations

import json
import signal
import time
from datetime import datetime, timedelta, timezone

import pytest
from kubernetes import client as k8s

from llmops.k8s.lock import lease_state
from tests.infra import tools
from tests.integration.promote_helpers import (
    ModelServer,
    deployment,
    kubeconfig_for_role,
    leases,
    outputs,
    parse_outputs,
    run_cli,
    start_cli,
)

pytestmark = [pytest.mark.k8s, pytest.mark.slow, *tools.timeout_marks(300)]
LEASE = "llmops-promote-deployment-llm"


def _apps(cluster):
    return k8s.AppsV1Api(cluster.api_client)


def _dep(cluster, ns):
    return _apps(cluster).read_namespaced_deployment("llm", ns)


def _image(cluster, ns) -> str:
    return _dep(cluster, ns).spec.template.spec.containers[0].image


def _create(cluster, ns, **kw):
    _apps(cluster).create_namespaced_deployment(ns, deployment("llm", "reg/llm:v1", **kw))
    cluster.kubectl("rollout", "status", "deployment/llm", "-n", ns, "--timeout=60s")


def _rolled_out(cluster, ns, timeout: int = 60) -> bool:
    return cluster.kubectl("rollout", "status", "deployment/llm", "-n", ns, f"--timeout={timeout}s",
                           check=False).returncode == 0


def _base(cluster, ns):
    return ("--kubeconfig", cluster.kubeconfig, "--namespace", ns, "--deployment", "llm")


def _wait_for_image(cluster, ns, image):
    tools.wait_until(lambda: _image(cluster, ns) == image, 60, what=f"the template to become {image}")


def _lease_expires(cluster, ns) -> float:
    lease = leases(cluster, ns).get(LEASE)
    return lease_state(lease)[1] if lease and lease_state(lease)[0] else 0.0


def test_sigkill_mid_rollout_then_rerun_rolls_back_instead_of_a_false_pass(k8s_cluster, k8s_namespace):
    ns = k8s_namespace
    _create(k8s_cluster, ns)
    k8s_cluster.kubelet.set_behavior("reg/llm:v2-stuck", "unready")
    args = (*_base(k8s_cluster, ns), "--image", "reg/llm:v2-stuck", "--force", "--timeout", "5", "--lock-ttl", "3")
    proc = start_cli(*args, "--timeout", "300")
    try:
        _wait_for_image(k8s_cluster, ns, "reg/llm:v2-stuck")
        time.sleep(0.5)
    finally:
        proc.kill()
        proc.communicate(timeout=30)
    killed_at = time.time()
    assert _lease_expires(k8s_cluster, ns) <= killed_at + 3 + 0.5, "a dead holder's lock lasts at most its TTL"

    rerun = run_cli(*args, "--lock-wait", "30")
    out = outputs(rerun)
    assert rerun.returncode == 1 and out["result"] == "fail" and out["rolled-back"] == "true", rerun.stdout
    assert "already runs reg/llm:v2-stuck" in rerun.stdout and "rolled back to revision 1 (v1)" in rerun.stdout
    assert "took the lock over from" in rerun.stdout
    assert _image(k8s_cluster, ns) == "reg/llm:v1" and _rolled_out(k8s_cluster, ns)
    assert not leases(k8s_cluster, ns)


def test_sigint_then_sigterm_during_the_undo_leaves_it_and_rollback_restores_the_old_version(
        k8s_cluster, k8s_namespace):
    ns = k8s_namespace
    _create(k8s_cluster, ns)
    k8s_cluster.kubelet.set_behavior("reg/llm:v1", "ready", ready_delay=10)  # restored pods start slowly
    server = ModelServer()
    server.healthy = False
    try:
        proc = start_cli(*_base(k8s_cluster, ns), "--image", "reg/llm:v2", "--model-version", "v2", "--force",
                         "--health-url", server.url + "/health", "--health-timeout", "120")
        tools.wait_until(lambda: server.hits > 0, 90, what="the health check of v2 to start")
        proc.send_signal(signal.SIGINT)  # GitHub's cancel: SIGINT ...
        _wait_for_image(k8s_cluster, ns, "reg/llm:v1")  # the undo is written
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)  # ... then SIGTERM, while the undo still rolls out
        text, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        server.close()
    out = parse_outputs(text)
    assert proc.returncode == 130 and out["result"] == "cancelled", text
    assert out["rolled-back"] == "true" and "left in place" in text and "ALSO failed" not in text, text
    assert _image(k8s_cluster, ns) == "reg/llm:v1"
    assert _rolled_out(k8s_cluster, ns)
    live = _dep(k8s_cluster, ns).metadata.annotations["deployment.kubernetes.io/revision"]
    assert out["revision"] == live, "the revision output names the revision that is live"

    back = run_cli(*_base(k8s_cluster, ns), "--rollback")
    assert back.returncode == 0 and outputs(back)["new-version"] == "v1", back.stdout + back.stderr
    assert "interrupted promotion" in back.stdout
    assert _image(k8s_cluster, ns) == "reg/llm:v1", "--rollback must not bring the cancelled v2 back"
    assert not leases(k8s_cluster, ns)


def test_api_server_outage_mid_rollout_exits_3_and_a_rerun_converges(k8s_cluster, k8s_namespace):
    ns = k8s_namespace
    _create(k8s_cluster, ns)
    k8s_cluster.kubelet.set_behavior("reg/llm:v2-slow", "ready", ready_delay=4)
    args = (*_base(k8s_cluster, ns), "--image", "reg/llm:v2-slow", "--force", "--lock-ttl", "5")
    proc = start_cli(*args, "--retry-budget", "4")
    down_at = None
    try:
        _wait_for_image(k8s_cluster, ns, "reg/llm:v2-slow")
        k8s_cluster.stop_apiserver()
        down_at = time.monotonic()
        text, _ = proc.communicate(timeout=90)
        exited_at = time.time()
    finally:
        if proc.poll() is None:
            proc.kill()
        if down_at is not None:
            time.sleep(max(0.0, 20 - (time.monotonic() - down_at)))  # a 20 s outage
            k8s_cluster.start_apiserver()
    assert proc.returncode == 3, text
    assert "Nothing was undone" in text and "run the same command again" in text, text
    assert "ALSO failed" not in text
    assert _lease_expires(k8s_cluster, ns) <= exited_at + 5 + 0.5, "the lock expires a TTL after the last beat"

    rerun = run_cli(*args, "--lock-wait", "30")
    assert rerun.returncode == 0 and outputs(rerun)["result"] == "pass", rerun.stdout + rerun.stderr
    assert "interrupted" in rerun.stdout
    assert _image(k8s_cluster, ns) == "reg/llm:v2-slow" and _rolled_out(k8s_cluster, ns, 5)
    assert not leases(k8s_cluster, ns)


def test_the_default_retry_budget_rides_out_a_20s_outage(k8s_cluster, k8s_namespace):
    ns = k8s_namespace
    _create(k8s_cluster, ns)
    k8s_cluster.kubelet.set_behavior("reg/llm:v2-slow", "ready", ready_delay=4)
    proc = start_cli(*_base(k8s_cluster, ns), "--image", "reg/llm:v2-slow", "--force")  # retry budget: 60 s
    try:
        _wait_for_image(k8s_cluster, ns, "reg/llm:v2-slow")
        k8s_cluster.stop_apiserver()
        try:
            time.sleep(20)
        finally:
            k8s_cluster.start_apiserver()
        text, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and parse_outputs(text)["result"] == "pass", text
    assert "retry" in text, "the outage was noticed and retried"
    assert _image(k8s_cluster, ns) == "reg/llm:v2-slow" and _rolled_out(k8s_cluster, ns, 5)
    assert not leases(k8s_cluster, ns)


def test_kubectl_rollout_undo_after_a_promotion_does_not_bring_a_lock_back(k8s_cluster, k8s_namespace):
    ns = k8s_namespace
    _create(k8s_cluster, ns)
    assert run_cli(*_base(k8s_cluster, ns), "--model-version", "v2", "--force").returncode == 0
    k8s_cluster.kubectl("rollout", "undo", "deployment/llm", "-n", ns)
    assert _rolled_out(k8s_cluster, ns)
    proc = run_cli(*_base(k8s_cluster, ns), "--model-version", "v3", "--force")
    assert proc.returncode == 0 and outputs(proc)["result"] == "pass", proc.stdout + proc.stderr
    for rs in _apps(k8s_cluster).list_namespaced_replica_set(ns).items:
        assert not [k for k in rs.metadata.annotations or {} if "lock" in k], "no ReplicaSet carries a lock"


def _lease_time(ago: float = 0.0) -> str:
    return (datetime.now(timezone.utc) - timedelta(seconds=ago)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _plant_lease(cluster, ns, holder: str, duration: int) -> None:
    now = _lease_time()
    k8s.CoordinationV1Api(cluster.api_client).create_namespaced_lease(ns, {
        "metadata": {"name": LEASE}, "spec": {"holderIdentity": holder, "leaseDurationSeconds": duration,
                                              "acquireTime": now, "renewTime": now}})


def _holder_dies(cluster, ns, ago: float) -> None:
    """The holder stopped renewing ``ago`` seconds ago (its last renewTime moves back), as a crashed run leaves it."""
    k8s.CoordinationV1Api(cluster.api_client).patch_namespaced_lease(
        LEASE, ns, {"spec": {"renewTime": _lease_time(ago)}}, _content_type="application/merge-patch+json")


def test_a_dead_holder_never_blocks_a_rollback_and_the_message_says_how_to_clear_it(k8s_cluster, k8s_namespace):
    ns = k8s_namespace
    _create(k8s_cluster, ns)
    assert run_cli(*_base(k8s_cluster, ns), "--model-version", "v2", "--force").returncode == 0
    _plant_lease(k8s_cluster, ns, "crashed-run", 30)  # live while a promotion looks at it, however slow its start
    locked = run_cli(*_base(k8s_cluster, ns), "--model-version", "v3", "--force")
    assert locked.returncode == 1 and outputs(locked)["result"] == "locked", locked.stdout
    assert f"kubectl delete lease -n {ns} {LEASE}" in locked.stdout and "break-lock" in locked.stdout

    _holder_dies(k8s_cluster, ns, 31)  # it never renews: its last renewal is now older than its 30 s TTL

    back = run_cli(*_base(k8s_cluster, ns), "--rollback")
    assert back.returncode == 0 and outputs(back)["new-version"] == "v1", back.stdout + back.stderr
    assert "took the lock over from crashed-run" in back.stdout

    _plant_lease(k8s_cluster, ns, "live-run", 600)
    broken = run_cli(*_base(k8s_cluster, ns), "--model-version", "v3", "--force", "--break-lock")
    assert broken.returncode == 0, broken.stdout + broken.stderr
    assert "took the lock over from live-run (break-lock)" in broken.stdout
    assert not leases(k8s_cluster, ns)


def test_a_verdict_for_another_version_is_refused_before_anything_is_written(k8s_cluster, k8s_namespace, tmp_path):
    ns = k8s_namespace
    _create(k8s_cluster, ns)
    verdict = tmp_path / "verdict.json"
    verdict.write_text(json.dumps({"result": "pass", "model": {"version": "v7"}}))
    proc = run_cli(*_base(k8s_cluster, ns), "--model-version", "v8", "--verdict", str(verdict))
    assert proc.returncode == 2 and "is for model version v7, not v8" in proc.stdout, proc.stdout
    assert outputs(proc)["result"] == "error"
    assert _dep(k8s_cluster, ns).metadata.generation == 1 and not leases(k8s_cluster, ns)
    ok = run_cli(*_base(k8s_cluster, ns), "--model-version", "v7", "--verdict", str(verdict))
    assert ok.returncode == 0, ok.stdout + ok.stderr


def test_a_role_without_watch_is_refused_before_anything_is_written(k8s_cluster, k8s_namespace, tmp_path):
    ns = k8s_namespace
    _create(k8s_cluster, ns)
    kubeconfig = kubeconfig_for_role(k8s_cluster, ns, [
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "patch"]},
        {"apiGroups": ["apps"], "resources": ["replicasets"], "verbs": ["list"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update",
                                                                                 "delete"]}], tmp_path)
    proc = run_cli("--kubeconfig", kubeconfig, "--namespace", ns, "--deployment", "llm", "--force",
                   "--model-version", "v2")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "may not watch deployments.apps" in proc.stdout and "nothing was changed" in proc.stdout
    assert _dep(k8s_cluster, ns).metadata.generation == 1 and not leases(k8s_cluster, ns)


def test_a_vllm_style_server_proves_the_new_version_through_v1_models(k8s_cluster, k8s_namespace):
    ns = k8s_namespace
    _create(k8s_cluster, ns)
    asked = []

    def on_get(path):
        if path == "/v1/models":
            asked.append(path)
            if len(asked) == 2:  # the new pods take over after a while
                server.models = ["v2"]

    server = ModelServer(on_get=on_get)
    server.empty_health, server.models, server.require_model = True, ["v1"], True
    try:
        proc = run_cli(*_base(k8s_cluster, ns), "--model-version", "v2", "--force", "--smoke-test",
                       "--health-url", server.url + "/health", "--health-interval", "0.2")
        assert proc.returncode == 0 and outputs(proc)["result"] == "pass", proc.stdout + proc.stderr
        assert f"{server.url}/v1/models lists v1, not 'v2'" in proc.stdout, "the old id was seen and waited out"
        assert f"{server.url}/v1/models lists v2; smoke completion (model v2) answered" in proc.stdout
        assert server.posted and server.posted[-1]["model"] == "v2"

        server.models = ["v2"]  # a server that never shows v3 is not proof: rolled back
        stale = run_cli(*_base(k8s_cluster, ns), "--model-version", "v3", "--force", "--health-url",
                        server.url + "/health", "--health-timeout", "1", "--health-interval", "0.2")
    finally:
        server.close()
    assert stale.returncode == 1 and "lists v2, not 'v3'" in stale.stdout, stale.stdout
    assert outputs(stale)["rolled-back"] == "true"
    assert _dep(k8s_cluster, ns).spec.template.spec.containers[0].env[0].value == "v2"
