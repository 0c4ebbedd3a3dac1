"""Safety of kubectl-promote against the real control plane: the Lease lock (contention, queueing, stale takeover, a
race with one winner, the heartbeat), real 409 conflicts retried, and the least-privilege Role in deploy/rbac.yaml
being enough."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import yaml
from kubernetes import client as k8s

from llmops.errors import CheckFailed
from llmops.k8s.change import ChangeSpec
from llmops.k8s.client import connect
from llmops.k8s.lock import LockHeld, TargetLock, lease_state
from llmops.k8s.promote import Options, Outcome, promote
from llmops.k8s.rbac import RULES
from tests.infra import tools
from tests.integration.promote_helpers import ROOT, ModelServer, deployment, lease_holder, leases, outputs, run_cli

pytestmark = [pytest.mark.k8s, pytest.mark.slow, *tools.timeout_marks(240)]


def _create(cluster, ns, name="llm"):
    k8s.AppsV1Api(cluster.api_client).create_namespaced_deployment(ns, deployment(name, "reg/llm:v1"))
    cluster.kubectl("rollout", "status", f"deployment/{name}", "-n", ns, "--timeout=60s")


LEASE = "llmops-promote-deployment-llm"


def test_a_held_lock_stops_a_second_promotion_and_lock_wait_queues(k8s_cluster, k8s_namespace):
    ns = k8s_namespace
    _create(k8s_cluster, ns)
    kube = connect(kubeconfig=k8s_cluster.kubeconfig, namespace=ns)
    lock = TargetLock(kube, "deployment", "llm", ttl=300, holder="other-repo/runs/42", run="https://ci/runs/42")
    lock.acquire()
    try:
        proc = run_cli("--kubeconfig", k8s_cluster.kubeconfig, "--namespace", ns, "--deployment", "llm",
                       "--model-version", "v2", "--force")
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "being promoted by other-repo/runs/42 (https://ci/runs/42)" in proc.stdout
        assert outputs(proc)["result"] == "locked"
        assert lease_holder(k8s_cluster, ns) == "other-repo/runs/42", "lock untouched"

        releaser = threading.Timer(2.0, lock.release)
        releaser.start()
        proc = run_cli("--kubeconfig", k8s_cluster.kubeconfig, "--namespace", ns, "--deployment", "llm",
                       "--model-version", "v2", "--force", "--lock-wait", "60")
        releaser.join()
        assert proc.returncode == 0, proc.stdout + proc.stderr
    finally:
        lock.release()
        kube.close()
    assert not leases(k8s_cluster, ns)


def test_a_stale_lock_is_taken_over_and_a_live_one_is_renewed(k8s_cluster, k8s_namespace):
    ns = k8s_namespace
    _create(k8s_cluster, ns)
    k8s.CoordinationV1Api(k8s_cluster.api_client).create_namespaced_lease(ns, {
        "metadata": {"name": LEASE}, "spec": {"holderIdentity": "crashed-run", "leaseDurationSeconds": 5,
                                              "renewTime": "2020-01-01T00:00:00.500000Z"}})
    proc = run_cli("--kubeconfig", k8s_cluster.kubeconfig, "--namespace", ns, "--deployment", "llm",
                   "--model-version", "v2", "--force")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "took the lock over from crashed-run (it had stopped renewing it)" in proc.stdout
    assert not leases(k8s_cluster, ns)

    kube = connect(kubeconfig=k8s_cluster.kubeconfig, namespace=ns)
    lock = TargetLock(kube, "deployment", "llm", ttl=1.5, holder="long-run")
    lock.acquire()
    try:
        time.sleep(4)  # well past its TTL: the heartbeat keeps it
        holder, expires = lease_state(leases(k8s_cluster, ns)[LEASE])
        assert holder == "long-run" and expires > time.time()
        with pytest.raises(LockHeld, match="being promoted by long-run"):
            TargetLock(kube, "deployment", "llm", ttl=5, holder="second").acquire()
    finally:
        lock.release()
        kube.close()


def test_two_takers_racing_for_the_lock_never_both_win(k8s_cluster, k8s_namespace):
    ns = k8s_namespace
    _create(k8s_cluster, ns)
    for round_ in range(3):
        clients = [connect(kubeconfig=k8s_cluster.kubeconfig, namespace=ns) for _ in range(4)]
        locks = [TargetLock(c, "deployment", "llm", ttl=60, holder=f"taker-{round_}-{i}") for i, c in enumerate(clients)]
        start, results = threading.Barrier(len(locks)), {}

        def take(lock, start=start, results=results):
            start.wait()
            try:
                lock.acquire()
                results[lock.holder] = "won"
            except LockHeld:
                results[lock.holder] = "held"

        threads = [threading.Thread(target=take, args=(lk,)) for lk in locks]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        winners = [h for h, r in results.items() if r == "won"]
        assert len(results) == 4 and len(winners) == 1, results
        assert lease_holder(k8s_cluster, ns) == winners[0]
        for lk in locks:
            lk.release()
        for c in clients:
            c.close()
        assert not leases(k8s_cluster, ns)


def test_a_real_409_conflict_is_retried_from_a_fresh_read(k8s_cluster, k8s_namespace):
    ns = k8s_namespace
    _create(k8s_cluster, ns)
    kube = connect(kubeconfig=k8s_cluster.kubeconfig, namespace=ns)
    other = k8s.AppsV1Api(k8s_cluster.api_client)
    inner, patches = kube.api_client.call_api, []

    def racing_call_api(method, url, *args, **kwargs):
        body = args[1] if len(args) > 1 else kwargs.get("body")
        if method == "PATCH" and isinstance(body, dict) and "spec" in body:
            patches.append(body["metadata"]["resourceVersion"])
            if len(patches) == 1:  # someone else writes between our read and our write
                other.patch_namespaced_deployment("llm", ns, {"metadata": {"labels": {"touched": "by-someone"}}})
        return inner(method, url, *args, **kwargs)

    kube.api_client.call_api = racing_call_api
    try:
        out = promote(kube, Options("llm", ChangeSpec(image="reg/llm:v2"), log=lambda m: None), Outcome())
    finally:
        kube.close()
    assert out.result == "pass"
    assert len(patches) == 2 and patches[0] != patches[1], "the write was refused (409) and redone from a new read"
    dep = other.read_namespaced_deployment("llm", ns)
    assert dep.metadata.labels["touched"] == "by-someone", "the other writer's change survives"
    assert dep.spec.template.spec.containers[0].image == "reg/llm:v2"


def _ci_token(cluster, ns) -> str:
    """Create deploy/rbac.yaml's ServiceAccount/Role/RoleBinding in ``ns`` and return a token of that account."""
    core, rbac = k8s.CoreV1Api(cluster.api_client), k8s.RbacAuthorizationV1Api(cluster.api_client)
    for doc in yaml.safe_load_all((ROOT / "deploy" / "rbac.yaml").read_text()):
        create = {"ServiceAccount": core.create_namespaced_service_account, "Role": rbac.create_namespaced_role,
                  "RoleBinding": rbac.create_namespaced_role_binding}[doc["kind"]]
        create(ns, doc)
    return core.create_namespaced_service_account_token(
        "llmops-promoter", ns, {"spec": {"expirationSeconds": 3600}}).status.token


def _rbac_kubeconfig(cluster, ns, tmp_path: Path) -> str:
    admin = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    admin["users"] = [{"name": "admin", "user": {"token": _ci_token(cluster, ns)}}]
    path = tmp_path / "ci-kubeconfig"
    path.write_text(yaml.safe_dump(admin))
    return str(path)


def test_deploy_rbac_yaml_grants_exactly_what_the_code_declares(tmp_path):
    role = next(d for d in yaml.safe_load_all((ROOT / "deploy" / "rbac.yaml").read_text()) if d["kind"] == "Role")
    granted = {(g, r): tuple(rule["verbs"]) for rule in role["rules"] for g in rule["apiGroups"]
               for r in rule["resources"]}
    assert granted == RULES


def test_least_privilege_role_is_enough_for_promote_rollback_and_blue_green(k8s_cluster, k8s_namespace, tmp_path):
    ns = k8s_namespace
    _create(k8s_cluster, ns)
    kubeconfig = _rbac_kubeconfig(k8s_cluster, ns, tmp_path)
    denied = run_cli("--kubeconfig", kubeconfig, "--namespace", "default", "--deployment", "llm", "--force",
                     "--model-version", "v2")
    assert denied.returncode == 2 and "forbidden (403)" in denied.stdout and "deploy/rbac.yaml" in denied.stdout
    server = ModelServer()
    try:
        server.healthy = False
        proc = run_cli("--kubeconfig", kubeconfig, "--namespace", ns, "--deployment", "llm", "--force",
                       "--model-version", "v2", "--health-url", server.url + "/health", "--health-timeout", "1")
        assert proc.returncode == 1 and "rolled back to revision 1" in proc.stdout, proc.stdout + proc.stderr
        server.healthy = True
        proc = run_cli("--kubeconfig", kubeconfig, "--namespace", ns, "--deployment", "llm", "--force",
                       "--model-version", "v3", "--health-url", server.url + "/health", "--dry-run")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        proc = run_cli("--kubeconfig", kubeconfig, "--namespace", ns, "--deployment", "llm", "--force",
                       "--model-version", "v3", "--health-url", server.url + "/health")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        proc = run_cli("--kubeconfig", kubeconfig, "--namespace", ns, "--deployment", "llm", "--rollback")
        assert proc.returncode == 0 and outputs(proc)["new-version"] == "v1", proc.stdout + proc.stderr
        proc = run_cli("--kubeconfig", kubeconfig, "--namespace", ns, "--deployment", "nope", "--force",
                       "--model-version", "v3")
        assert proc.returncode == 2 and "deployments there: llm" in proc.stdout, proc.stdout
    finally:
        server.close()
    apps = k8s.AppsV1Api(k8s_cluster.api_client)
    for color, replicas in (("blue", 1), ("green", 0)):
        apps.create_namespaced_deployment(ns, deployment(f"bg-{color}", "reg/llm:v1", replicas=replicas,
                                                         labels={"app": "bg", "color": color}))
    k8s.CoreV1Api(k8s_cluster.api_client).create_namespaced_service(ns, {"metadata": {"name": "bg"}, "spec": {
        "selector": {"app": "bg", "color": "blue"}, "ports": [{"port": 80}]}})
    proc = run_cli("--kubeconfig", kubeconfig, "--namespace", ns, "--deployment", "bg", "--force",
                   "--strategy", "blue-green", "--model-version", "v2", "--scale-down-delay", "0")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_library_errors_keep_their_exit_codes(k8s_cluster, k8s_namespace):
    """The canary step reuses promote(): a failed rollout is a CheckFailed with the restored revision in it."""
    ns = k8s_namespace
    _create(k8s_cluster, ns)
    k8s_cluster.kubelet.set_behavior("reg/llm:never", "crashloop")
    kube = connect(kubeconfig=k8s_cluster.kubeconfig, namespace=ns)
    out = Outcome()
    try:
        with pytest.raises(CheckFailed, match="rolled back to revision 1"):
            promote(kube, Options("llm", ChangeSpec(image="reg/llm:never"), timeout=3, log=lambda m: None), out)
    finally:
        kube.close()
    assert out.rolled_back and kube.calls < 40


def test_in_cluster_config_inside_a_pod(k8s_cluster, k8s_namespace, tmp_path, monkeypatch):
    """Run from a pod: the service account token, CA and namespace files, no kubeconfig at all."""
    from kubernetes.config import incluster_config

    from llmops.k8s import client as client_mod

    ns = k8s_namespace
    _create(k8s_cluster, ns)
    cfg = yaml.safe_load(Path(k8s_cluster.kubeconfig).read_text())
    host, port = cfg["clusters"][0]["cluster"]["server"].rsplit("//", 1)[1].rsplit(":", 1)
    token, ns_file = tmp_path / "token", tmp_path / "namespace"
    token.write_text(_ci_token(k8s_cluster, ns))
    ns_file.write_text(ns)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", host)
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", port)
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(token))
    monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", cfg["clusters"][0]["cluster"]["certificate-authority"])
    monkeypatch.setattr(client_mod, "IN_CLUSTER_NS", ns_file)
    kube = connect()
    try:
        assert kube.source == "in-cluster service account" and kube.namespace == ns
        out = promote(kube, Options("llm", ChangeSpec(model_version="v2"), log=lambda m: None), Outcome())
    finally:
        kube.close()
    assert out.result == "pass" and out.revision == "2"
