"""kubectl-promote (rolling) against the real control plane: what a user sees when a promotion works, stalls, fails
its health check, is cancelled, or is rolled back by hand — and that the result matches kubectl's own undo."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from kubernetes import client as k8s

from tests.infra import tools
from tests.integration.promote_helpers import (
    ROOT,
    SCRIPT,
    ModelServer,
    deployment,
    leases,
    outputs,
    run_cli,
    write_verdict,
)

pytestmark = [pytest.mark.k8s, pytest.mark.slow, *tools.timeout_marks(240)]


@pytest.fixture
def server():
    with ModelServer() as srv:
        yield srv


def _apps(cluster):
    return k8s.AppsV1Api(cluster.api_client)


def _read(cluster, ns, name="llm"):
    return _apps(cluster).read_namespaced_deployment(name, ns)


def _create(cluster, ns, name="llm", image="reg/llm:v1", **kw):
    _apps(cluster).create_namespaced_deployment(ns, deployment(name, image, **kw))
    res = cluster.kubectl("rollout", "status", f"deployment/{name}", "-n", ns, "--timeout=60s", check=False)
    assert res.returncode == 0, res.stderr


def _history(cluster, ns, name="llm"):
    return cluster.kubectl("rollout", "history", f"deployment/{name}", "-n", ns).stdout


def _template(dep):
    t = k8s.ApiClient().sanitize_for_serialization(dep.spec.template)
    t["metadata"]["labels"].pop("pod-template-hash", None)
    return t


def test_promote_succeeds_and_every_revision_says_what_it_is(k8s_cluster, k8s_namespace, tmp_path, server):
    ns = k8s_namespace
    _create(k8s_cluster, ns)
    proc = run_cli("--kubeconfig", k8s_cluster.kubeconfig, "--namespace", ns, "--deployment", "llm",
                   "--image", "reg/llm:v2", "--model-version", "v2", "--model-uri", "s3://m/v2",
                   "--verdict", write_verdict(tmp_path / "v.json"), "--git-sha", "abc123",
                   "--health-url", server.url + "/health", "--smoke-test")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = outputs(proc)
    assert out["result"] == "pass" and out["rolled-back"] == "false"
    assert out["previous-version"] == "v1" and out["new-version"] == "v2" and out["revision"] == "2"
    dep = _read(k8s_cluster, ns)
    c = dep.spec.template.spec.containers[0]
    assert c.image == "reg/llm:v2"
    assert {e.name: e.value for e in c.env} == {"MODEL_VERSION": "v2", "MODEL_URI": "s3://m/v2"}
    ann = dep.metadata.annotations
    assert ann["llmops.dev/model-version"] == "v2" and ann["llmops.dev/git-sha"] == "abc123"
    assert ann["llmops.dev/verdict-result"] == "pass" and len(ann["llmops.dev/verdict-sha256"]) == 64
    assert not leases(k8s_cluster, ns), "the lock (a Lease) must be released"
    assert not [k for k in ann if "lock" in k], "no lock on the Deployment (its ReplicaSets would copy it)"
    assert "model-version=v2" in _history(k8s_cluster, ns).strip().splitlines()[-1]
    assert server.hits >= 1


def test_stalled_rollout_rolls_back_like_kubectl_rollout_undo(k8s_cluster, k8s_namespace, tmp_path):
    ns = k8s_namespace
    k8s_cluster.kubelet.set_behavior("reg/llm:v3-bad", "unready")
    for name in ("llm", "twin"):
        _create(k8s_cluster, ns, name, deadline=4)
        k8s_cluster.kubectl("set", "image", f"deployment/{name}", "llm-model=reg/llm:v2", "-n", ns)
        k8s_cluster.kubectl("rollout", "status", f"deployment/{name}", "-n", ns, "--timeout=60s")
    # the twin goes through kubectl: set image, rollout status (fails), rollout undo
    k8s_cluster.kubectl("set", "image", "deployment/twin", "llm-model=reg/llm:v3-bad", "-n", ns)
    stalled = k8s_cluster.kubectl("rollout", "status", "deployment/twin", "-n", ns, "--timeout=60s", check=False)
    assert "exceeded its progress deadline" in stalled.stderr
    k8s_cluster.kubectl("rollout", "undo", "deployment/twin", "-n", ns)
    k8s_cluster.kubectl("rollout", "status", "deployment/twin", "-n", ns, "--timeout=60s")

    proc = run_cli("--kubeconfig", k8s_cluster.kubeconfig, "--namespace", ns, "--deployment", "llm",
                   "--image", "reg/llm:v3-bad", "--force")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "exceeded its progress deadline" in proc.stdout and "rolled back to revision 2" in proc.stdout
    assert outputs(proc)["rolled-back"] == "true" and outputs(proc)["result"] == "fail"
    ours, theirs = _read(k8s_cluster, ns, "llm"), _read(k8s_cluster, ns, "twin")
    assert ours.spec.template.spec.containers[0].image == "reg/llm:v2"
    expected = _template(theirs)
    expected["metadata"]["labels"] = {"app": "llm"}
    assert _template(ours) == expected
    assert ours.metadata.annotations["deployment.kubernetes.io/revision"] == \
        theirs.metadata.annotations["deployment.kubernetes.io/revision"] == "4"
    assert ours.status.updated_replicas == ours.status.available_replicas == 2


def test_failing_health_check_rolls_back(k8s_cluster, k8s_namespace, tmp_path, server):
    ns = k8s_namespace
    _create(k8s_cluster, ns)
    server.healthy = False
    proc = run_cli("--kubeconfig", k8s_cluster.kubeconfig, "--namespace", ns, "--deployment", "llm",
                   "--model-version", "v2", "--verdict", write_verdict(tmp_path / "v.json"),
                   "--health-url", server.url + "/health", "--health-timeout", "3", "--health-interval", "0.5")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "health check failed" in proc.stdout and "503" in proc.stdout
    assert "rolled back to revision 1 (v1)" in proc.stdout
    dep = _read(k8s_cluster, ns)
    assert [e.value for e in dep.spec.template.spec.containers[0].env] == ["v1"]
    assert outputs(proc)["rolled-back"] == "true" and outputs(proc)["revision"] == "3"


def test_no_rollback_leaves_the_failed_version(k8s_cluster, k8s_namespace, server):
    ns = k8s_namespace
    _create(k8s_cluster, ns)
    server.healthy = False
    proc = run_cli("--kubeconfig", k8s_cluster.kubeconfig, "--namespace", ns, "--deployment", "llm", "--force",
                   "--model-version", "v2", "--health-url", server.url + "/health", "--health-timeout", "1",
                   "--no-rollback")
    assert proc.returncode == 1 and "--no-rollback" in proc.stdout
    assert _read(k8s_cluster, ns).spec.template.spec.containers[0].env[0].value == "v2"


def test_rollback_mode_and_to_revision(k8s_cluster, k8s_namespace):
    ns = k8s_namespace
    _create(k8s_cluster, ns)
    for version in ("v2", "v3"):
        proc = run_cli("--kubeconfig", k8s_cluster.kubeconfig, "--namespace", ns, "--deployment", "llm",
                       "--model-version", version, "--force")
        assert proc.returncode == 0, proc.stdout
    proc = run_cli("--kubeconfig", k8s_cluster.kubeconfig, "--namespace", ns, "--deployment", "llm", "--rollback")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert outputs(proc)["new-version"] == "v2" and outputs(proc)["rolled-back"] == "true"
    proc = run_cli("--kubeconfig", k8s_cluster.kubeconfig, "--namespace", ns, "--deployment", "llm", "--rollback",
                   "--to-revision", "1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _read(k8s_cluster, ns).spec.template.spec.containers[0].env[0].value == "v1"
    proc = run_cli("--kubeconfig", k8s_cluster.kubeconfig, "--namespace", ns, "--deployment", "llm", "--rollback",
                   "--to-revision", "99")
    assert proc.returncode == 2 and "has no revision 99" in proc.stdout


def test_dry_run_changes_nothing_and_prints_the_diff(k8s_cluster, k8s_namespace):
    ns = k8s_namespace
    _create(k8s_cluster, ns)
    before = _read(k8s_cluster, ns)
    proc = run_cli("--kubeconfig", k8s_cluster.kubeconfig, "--namespace", ns, "--deployment", "llm",
                   "--image", "reg/llm:v9", "--force", "--dry-run")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "-        image: reg/llm:v1" in proc.stdout and "+        image: reg/llm:v9" in proc.stdout
    assert outputs(proc)["result"] == "dry-run"
    after = _read(k8s_cluster, ns)
    assert after.metadata.resource_version == before.metadata.resource_version
    assert after.metadata.generation == before.metadata.generation
    assert run_cli("--kubeconfig", k8s_cluster.kubeconfig, "--namespace", ns, "--deployment", "llm", "--force",
                   "--model-version", "v2", "--model-uri", "s3://m/v2").returncode == 0
    proc = run_cli("--kubeconfig", k8s_cluster.kubeconfig, "--namespace", ns, "--deployment", "llm", "--rollback",
                   "--dry-run")
    assert proc.returncode == 0 and outputs(proc)["new-version"] == "v1", proc.stdout + proc.stderr
    assert outputs(proc)["revision"] == "3", "the number the restored template would be live under"
    proc = run_cli("--kubeconfig", k8s_cluster.kubeconfig, "--namespace", ns, "--deployment", "llm", "--force",
                   "--model-version", "v3", "--dry-run")
    assert "sets MODEL_URI=s3://m/v2 and only --model-version changes" in proc.stdout, proc.stdout


def test_cancelled_step_rolls_back_before_exiting(k8s_cluster, k8s_namespace):
    ns = k8s_namespace
    _create(k8s_cluster, ns)
    k8s_cluster.kubelet.set_behavior("reg/llm:v2-slow", "unready")
    env = {"PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, str(SCRIPT), "--kubeconfig", k8s_cluster.kubeconfig, "--namespace", ns,
                             "--deployment", "llm", "--image", "reg/llm:v2-slow", "--force", "--timeout", "120"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    with tools.kill_on_exit(proc):
        tools.wait_until(lambda: _read(k8s_cluster, ns).spec.template.spec.containers[0].image == "reg/llm:v2-slow",
                         60, what="the promotion to start")
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        text, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, text
    assert "rolled back" in text and "cancelled" in text
    dep = _read(k8s_cluster, ns)
    assert dep.spec.template.spec.containers[0].image == "reg/llm:v1"
    assert not leases(k8s_cluster, ns), "the lock is released"


def test_bad_inputs_against_the_cluster_give_clear_errors(k8s_cluster, k8s_namespace):
    ns = k8s_namespace
    _create(k8s_cluster, ns)
    two = deployment("two", "reg/a:1", containers=[{"name": "model", "image": "reg/a:1"},
                                                   {"name": "sidecar", "image": "reg/b:1"}])
    _apps(k8s_cluster).create_namespaced_deployment(ns, two)
    base = ("--kubeconfig", k8s_cluster.kubeconfig, "--force", "--image", "reg/x:2")
    cases = [
        (("--namespace", ns, "--deployment", "nope"), "deployment 'nope' not found", "llm, two"),
        (("--namespace", "no-such-ns", "--deployment", "llm"), "namespace 'no-such-ns' does not exist", ""),
        (("--namespace", ns, "--deployment", "two"), "has 2 containers (model, sidecar)", "container input"),
        (("--namespace", ns, "--deployment", "llm", "--container", "x"), "no container 'x'", "llm-model"),
        (("--namespace", ns, "--deployment", "llm", "--context", "prod"), "context 'prod' is not in", "llmops-test"),
    ]
    with ThreadPoolExecutor(len(cases)) as pool:  # independent refusals: start the CLIs side by side
        procs = list(pool.map(lambda case: run_cli(*base, *case[0]), cases))
    for (args, message, also), proc in zip(cases, procs, strict=True):
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert message in proc.stdout and also in proc.stdout, proc.stdout
        assert "Traceback" not in proc.stdout + proc.stderr
    assert json.loads(k8s_cluster.kubectl("get", "deploy/two", "-n", ns, "-o", "json").stdout)[
        "metadata"]["generation"] == 1, "a refused promotion must not touch the deployment"
