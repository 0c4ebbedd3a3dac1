"""Exercises the real control plane the way the deploy/rollback issues will.

Owns: proof that the ``k8s_cluster`` fixture behaves like a cluster a user
deploys to: Deployments roll out (and stall with ProgressDeadlineExceeded when
the new pods never become Ready), ``kubectl rollout undo`` restores the previous
revision, Service/Ingress patches stick, and Istio VirtualService / Gateway
API HTTPRoute custom objects accept creates and JSON patches.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from tests.infra import tools

pytestmark = tools.timeout_marks(120)

STRATEGIC = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"


def deployment(name: str, image: str, replicas: int = 2, deadline: int = 600) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "progressDeadlineSeconds": deadline,
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": labels},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "server", "image": image,
                                         "ports": [{"containerPort": 8080}]}]},
            },
        },
    }


def rollout_complete(apps: k8s.AppsV1Api, name: str, ns: str) -> k8s.V1Deployment | None:
    """The deployment when its rollout is complete (what `kubectl rollout status` checks)."""
    d = apps.read_namespaced_deployment(name, ns)
    st, want = d.status, d.spec.replicas
    done = (
        (st.observed_generation or 0) >= d.metadata.generation
        and (st.updated_replicas or 0) == want
        and (st.replicas or 0) == want
        and (st.available_replicas or 0) == want
    )
    return d if done else None


def condition(d: k8s.V1Deployment, ctype: str) -> Any:
    return next((c for c in (d.status.conditions or []) if c.type == ctype), None)


def pod_images(core: k8s.CoreV1Api, ns: str, app: str) -> list[tuple[str, bool]]:
    pods = core.list_namespaced_pod(ns, label_selector=f"app={app}").items
    out = []
    for p in pods:
        ready = any(c.type == "Ready" and c.status == "True" for c in (p.status.conditions or []))
        out.append((p.spec.containers[0].image, ready))
    return sorted(out)


def set_image(apps: k8s.AppsV1Api, name: str, ns: str, image: str) -> None:
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "server", "image": image}]}}}}
    apps.patch_namespaced_deployment(name, ns, patch, _content_type=STRATEGIC)


def test_kubeconfig_works_for_python_client_and_kubectl(k8s_cluster, kubectl_bin):
    cfg = k8s.Configuration()
    k8s_config.load_kube_config(config_file=k8s_cluster.kubeconfig, client_configuration=cfg)
    assert cfg.ssl_ca_cert and cfg.verify_ssl, "client must verify TLS with the cluster CA"
    with k8s.ApiClient(cfg) as api:
        names = [n.metadata.name for n in k8s.CoreV1Api(api).list_namespace().items]
    assert "default" in names and "kube-system" in names

    out = k8s_cluster.kubectl("get", "namespaces", "-o", "name").stdout
    assert "namespace/default" in out.split()
    assert k8s_cluster.kubectl("auth", "can-i", "create", "deployments").stdout.strip() == "yes"


def test_deployment_rollout_completes_after_template_change(k8s_cluster, k8s_namespace):
    apps, core, ns = k8s.AppsV1Api(k8s_cluster.api_client), k8s.CoreV1Api(k8s_cluster.api_client), k8s_namespace
    apps.create_namespaced_deployment(ns, deployment("model", "registry.local/model:v1", replicas=3))
    d = tools.wait_until(lambda: rollout_complete(apps, "model", ns), 30, what="v1 rollout")
    assert condition(d, "Available").status == "True"
    assert pod_images(core, ns, "model") == [("registry.local/model:v1", True)] * 3

    gen_before = d.metadata.generation
    set_image(apps, "model", ns, "registry.local/model:v2")
    d = tools.wait_until(lambda: rollout_complete(apps, "model", ns), 30, what="v2 rollout")
    assert d.metadata.generation == gen_before + 1
    assert d.status.observed_generation == d.metadata.generation
    assert (d.status.updated_replicas, d.status.available_replicas) == (3, 3)
    assert condition(d, "Progressing").reason == "NewReplicaSetAvailable"
    # the old ReplicaSet was scaled down: only v2 pods remain, all Ready
    tools.wait_until(lambda: pod_images(core, ns, "model") == [("registry.local/model:v2", True)] * 3,
                     15, what="only v2 pods")
    status = k8s_cluster.kubectl("rollout", "status", "deployment/model", "-n", ns, "--timeout=20s")
    assert "successfully rolled out" in status.stdout


@pytest.mark.parametrize("failure", ["unready", "crashloop"])
def test_stalled_rollout_hits_deadline_and_undo_restores_previous(k8s_cluster, k8s_namespace, failure):
    apps, core, ns = k8s.AppsV1Api(k8s_cluster.api_client), k8s.CoreV1Api(k8s_cluster.api_client), k8s_namespace
    good, bad = "registry.local/llm:v1", f"registry.local/llm:v2-{failure}"
    k8s_cluster.kubelet.set_behavior(bad, failure)
    apps.create_namespaced_deployment(ns, deployment("llm", good, replicas=2, deadline=3))
    tools.wait_until(lambda: rollout_complete(apps, "llm", ns), 30, what="v1 rollout")

    set_image(apps, "llm", ns, bad)

    def stalled() -> k8s.V1Deployment | None:
        d = apps.read_namespaced_deployment("llm", ns)
        c = condition(d, "Progressing")
        return d if c is not None and c.reason == "ProgressDeadlineExceeded" else None

    d = tools.wait_until(stalled, 30, what="ProgressDeadlineExceeded")
    assert condition(d, "Progressing").status == "False"
    # maxUnavailable=0: the old pods keep serving while the new one never gets Ready
    assert d.status.available_replicas == 2
    assert d.status.updated_replicas == 1
    assert d.status.unavailable_replicas == 1
    images = pod_images(core, ns, "llm")
    assert images.count((good, True)) == 2 and (bad, False) in images
    if failure == "crashloop":
        def restarted() -> bool:
            pods = core.list_namespaced_pod(ns, label_selector="app=llm").items
            return any(p.spec.containers[0].image == bad and p.status.container_statuses
                       and p.status.container_statuses[0].restart_count >= 2 for p in pods)
        tools.wait_until(restarted, 10, what="crash-looping pod restarts")
    failed = k8s_cluster.kubectl("rollout", "status", "deployment/llm", "-n", ns, "--timeout=10s", check=False)
    assert failed.returncode != 0 and "exceeded its progress deadline" in failed.stderr

    undo = k8s_cluster.kubectl("rollout", "undo", "deployment/llm", "-n", ns)
    assert "rolled back" in undo.stdout
    d = tools.wait_until(lambda: rollout_complete(apps, "llm", ns), 30, what="rollback")
    assert d.spec.template.spec.containers[0].image == good
    assert d.metadata.annotations["deployment.kubernetes.io/revision"] == "3"
    tools.wait_until(lambda: pod_images(core, ns, "llm") == [(good, True)] * 2, 15, what="only v1 pods")


def test_kubelet_ready_delay_holds_back_availability(k8s_cluster, k8s_namespace):
    apps, ns = k8s.AppsV1Api(k8s_cluster.api_client), k8s_namespace
    k8s_cluster.kubelet.set_behavior("registry.local/slow:", "ready", ready_delay=3.0)
    started = time.monotonic()
    apps.create_namespaced_deployment(ns, deployment("slow", "registry.local/slow:v1", replicas=1))
    tools.wait_until(lambda: rollout_complete(apps, "slow", ns), 30, what="slow rollout")
    assert time.monotonic() - started >= 3.0


def test_service_selector_and_ingress_annotation_patches(k8s_cluster, k8s_namespace):
    core, net, ns = k8s.CoreV1Api(k8s_cluster.api_client), k8s.NetworkingV1Api(k8s_cluster.api_client), k8s_namespace
    core.create_namespaced_service(ns, {
        "metadata": {"name": "model"},
        "spec": {"selector": {"app": "model", "track": "stable"},
                 "ports": [{"port": 80, "targetPort": 8080}]},
    })
    core.patch_namespaced_service("model", ns, {"spec": {"selector": {"track": "canary"}}},
                                  _content_type=STRATEGIC)
    svc = core.read_namespaced_service("model", ns)
    assert svc.spec.selector == {"app": "model", "track": "canary"}

    net.create_namespaced_ingress(ns, {
        "metadata": {"name": "model-canary", "annotations": {"nginx.ingress.kubernetes.io/canary": "true"}},
        "spec": {"rules": [{"host": "model.example.test", "http": {"paths": [{
            "path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": "model", "port": {"number": 80}}}}]}}]},
    })
    net.patch_namespaced_ingress(
        "model-canary", ns,
        {"metadata": {"annotations": {"nginx.ingress.kubernetes.io/canary-weight": "25"}}},
        _content_type=MERGE,
    )
    ing = net.read_namespaced_ingress("model-canary", ns)
    assert ing.metadata.annotations == {"nginx.ingress.kubernetes.io/canary": "true",
                                        "nginx.ingress.kubernetes.io/canary-weight": "25"}
    assert ing.spec.rules[0].http.paths[0].backend.service.name == "model"


def test_virtualservice_and_httproute_create_and_json_patch(k8s_cluster, k8s_namespace):
    co, ns = k8s.CustomObjectsApi(k8s_cluster.api_client), k8s_namespace
    vs = {
        "apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
        "metadata": {"name": "model"},
        "spec": {"hosts": ["model"], "http": [{"route": [
            {"destination": {"host": "model", "subset": "stable"}, "weight": 90},
            {"destination": {"host": "model", "subset": "canary"}, "weight": 10}]}]},
    }
    co.create_namespaced_custom_object("networking.istio.io", "v1beta1", ns, "virtualservices", vs)
    ops = [{"op": "replace", "path": "/spec/http/0/route/0/weight", "value": 50},
           {"op": "replace", "path": "/spec/http/0/route/1/weight", "value": 50}]
    co.patch_namespaced_custom_object("networking.istio.io", "v1beta1", ns, "virtualservices", "model",
                                      ops, _content_type=JSON_PATCH)
    got = co.get_namespaced_custom_object("networking.istio.io", "v1beta1", ns, "virtualservices", "model")
    assert [r["weight"] for r in got["spec"]["http"][0]["route"]] == [50, 50]
    with pytest.raises(ApiException) as exc:  # documented trap: no strategic merge on CRs
        co.patch_namespaced_custom_object("networking.istio.io", "v1beta1", ns, "virtualservices", "model",
                                          {"spec": {"hosts": ["x"]}}, _content_type=STRATEGIC)
    assert exc.value.status == 415

    route = {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "model"},
        "spec": {"parentRefs": [{"name": "gw"}], "rules": [{"backendRefs": [
            {"name": "model-stable", "port": 80, "weight": 100},
            {"name": "model-canary", "port": 80, "weight": 0}]}]},
    }
    co.create_namespaced_custom_object("gateway.networking.k8s.io", "v1", ns, "httproutes", route)
    ops = [{"op": "test", "path": "/spec/rules/0/backendRefs/1/name", "value": "model-canary"},
           {"op": "replace", "path": "/spec/rules/0/backendRefs/0/weight", "value": 80},
           {"op": "replace", "path": "/spec/rules/0/backendRefs/1/weight", "value": 20}]
    co.patch_namespaced_custom_object("gateway.networking.k8s.io", "v1", ns, "httproutes", "model",
                                      ops, _content_type=JSON_PATCH)
    got = co.get_namespaced_custom_object("gateway.networking.k8s.io", "v1", ns, "httproutes", "model")
    assert [b["weight"] for b in got["spec"]["rules"][0]["backendRefs"]] == [80, 20]
    listed = k8s_cluster.kubectl("get", "httproutes.gateway.networking.k8s.io", "-n", ns, "-o", "name").stdout
    assert listed.split() == ["httproute.gateway.networking.k8s.io/model"]
