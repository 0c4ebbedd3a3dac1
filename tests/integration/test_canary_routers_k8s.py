"""Each traffic provider against the real API server: reconcile, weights as stored, finalize restores."""
from __future__ import annotations

import pytest

from llmops.canary.kube import connect
from llmops.canary.routers import Target, get_router
from llmops.canary.routers.nginx import WEIGHT
from llmops.canary.routers.replicas import ORIGINAL

pytestmark = [pytest.mark.k8s]


def deployment(name: str, version: str, replicas: int) -> dict:
    labels = {"app": "llm", "track": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": {**labels, "version": version}},
                                  "spec": {"containers": [{"name": "server", "image": f"model:{version}"}]}}}}


@pytest.fixture
def kube(k8s_cluster):
    k = connect(kubeconfig=k8s_cluster.kubeconfig, timeout=10)
    yield k
    k.close()


def test_nginx_canary_ingress_lifecycle(kube, k8s_namespace):
    ns = k8s_namespace
    primary = {"metadata": {"name": "llm", "annotations": {"nginx.ingress.kubernetes.io/proxy-body-size": "8m"}},
               "spec": {"ingressClassName": "nginx", "rules": [{"host": "llm.example", "http": {"paths": [
                   {"path": "/", "pathType": "Prefix",
                    "backend": {"service": {"name": "llm-stable", "port": {"number": 80}}}}]}}]}}
    net = kube.networking()
    net.create_namespaced_ingress(ns, primary)
    router = get_router("nginx", kube, Target(ns, "llm-stable", "llm-canary", route="llm"))
    router.reconcile()
    router.set_routes(25)
    canary = net.read_namespaced_ingress("llm-canary", ns)
    assert canary.metadata.annotations["nginx.ingress.kubernetes.io/canary"] == "true"
    assert canary.metadata.annotations[WEIGHT] == "25"
    assert canary.spec.rules[0].http.paths[0].backend.service.name == "llm-canary"
    assert router.get_routes() == 25
    router.reconcile()  # a re-run keeps the weight on the existing canary Ingress
    assert router.get_routes() == 25
    router.finalize()
    router.finalize()  # idempotent
    assert [i.metadata.name for i in net.list_namespaced_ingress(ns).items] == ["llm"]
    assert router.get_routes() == 0
    assert net.read_namespaced_ingress("llm", ns).spec.rules[0].http.paths[0].backend.service.name == "llm-stable"


def test_istio_virtual_service_weights_by_json_patch(kube, k8s_namespace):
    ns = k8s_namespace
    vs = {"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService", "metadata": {"name": "llm"},
          "spec": {"hosts": ["llm"], "http": [{"route": [
              {"destination": {"host": f"llm-stable.{ns}.svc.cluster.local"}, "weight": 100}]}]}}
    custom = kube.custom()
    custom.create_namespaced_custom_object("networking.istio.io", "v1beta1", ns, "virtualservices", vs)
    router = get_router("istio", kube, Target(ns, "llm-stable", "llm-canary", route="llm"))
    router.reconcile()
    router.set_routes(10)
    stored = custom.get_namespaced_custom_object("networking.istio.io", "v1beta1", ns, "virtualservices", "llm")
    assert stored["spec"]["http"][0]["route"] == [
        {"destination": {"host": f"llm-stable.{ns}.svc.cluster.local"}, "weight": 90},
        {"destination": {"host": f"llm-canary.{ns}.svc.cluster.local"}, "weight": 10}]
    assert router.get_routes() == 10
    router.finalize()
    assert router.get_routes() == 0


def test_gateway_api_http_route_weights(kube, k8s_namespace):
    ns = k8s_namespace
    route = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "llm"},
             "spec": {"parentRefs": [{"name": "gw"}], "rules": [
                 {"backendRefs": [{"name": "llm-stable", "port": 80}, {"name": "llm-canary", "port": 80}]}]}}
    custom = kube.custom()
    custom.create_namespaced_custom_object("gateway.networking.k8s.io", "v1", ns, "httproutes", route)
    router = get_router("gateway-api", kube, Target(ns, "llm-stable", "llm-canary", route="llm"))
    assert router.get_routes() == 50  # omitted weights are 1 each
    router.reconcile()
    router.set_routes(75)
    stored = custom.get_namespaced_custom_object("gateway.networking.k8s.io", "v1", ns, "httproutes", "llm")
    assert [b["weight"] for b in stored["spec"]["rules"][0]["backendRefs"]] == [25, 75]
    router.finalize()
    assert router.get_routes() == 0


def test_replicas_split_and_restore(kube, k8s_namespace):
    ns = k8s_namespace
    apps = kube.apps
    apps.create_namespaced_deployment(ns, deployment("llm-stable", "v1", 4))
    apps.create_namespaced_deployment(ns, deployment("llm-canary", "v2", 0))
    router = get_router("replicas", kube, Target(ns, "llm-stable", "llm-canary"))
    router.reconcile()
    router.set_routes(50)
    assert (kube.read_deployment(ns, "llm-stable")["spec"]["replicas"],
            kube.read_deployment(ns, "llm-canary")["spec"]["replicas"]) == (2, 2)
    assert router.get_routes() == 50
    router.reconcile()  # a re-run keeps the recorded total, not the current 2
    router.set_routes(25)
    assert router.get_routes() == 25
    router.finalize()
    stable = kube.read_deployment(ns, "llm-stable")
    assert stable["spec"]["replicas"] == 4 and ORIGINAL not in (stable["metadata"].get("annotations") or {})
    assert kube.read_deployment(ns, "llm-canary")["spec"]["replicas"] == 0
