"""Patch bodies of each traffic provider (pure logic; the real API server is in tests/integration)."""
from __future__ import annotations

import pytest

from llmops.canary.routers import PROVIDERS, Target, get_router
from llmops.canary.routers.gateway_api import GatewayApiRouter
from llmops.canary.routers.istio import IstioRouter
from llmops.canary.routers.nginx import CANARY, OWNER, WEIGHT, NginxRouter
from llmops.canary.routers.replicas import effective_weight, split
from llmops.errors import UsageError

T = Target("prod", "llm-stable", "llm-canary", route="llm")


def test_registry_names_and_unknown_provider():
    assert set(PROVIDERS) == {"nginx", "istio", "gateway-api", "replicas"}
    with pytest.raises(UsageError, match="unknown traffic provider 'traefik'") as exc:
        get_router("traefik", None, T)
    assert "nginx, istio, gateway-api, replicas" in exc.value.hint


def test_route_is_required_except_for_replicas():
    with pytest.raises(UsageError, match="needs route"):
        get_router("istio", None, Target("prod", "a", "b"))
    assert get_router("replicas", None, Target("prod", "a", "b")).name == "replicas"


def _ingress():
    return {"metadata": {"name": "llm", "labels": {"app": "llm"},
                         "annotations": {"nginx.ingress.kubernetes.io/proxy-body-size": "8m",
                                         "kubectl.kubernetes.io/last-applied-configuration": "{...}"}},
            "spec": {"ingressClassName": "nginx", "tls": [{"hosts": ["llm.example"], "secretName": "tls"}],
                     "rules": [{"host": "llm.example", "http": {"paths": [
                         {"path": "/", "pathType": "Prefix",
                          "backend": {"service": {"name": "llm-stable", "port": {"number": 80}}}},
                         {"path": "/other", "pathType": "Prefix",
                          "backend": {"service": {"name": "other", "port": {"number": 80}}}}]}}]}}


def test_nginx_canary_ingress_copies_primary_and_switches_backend():
    body = NginxRouter(None, T).canary_body(_ingress(), 5)
    assert body["metadata"]["name"] == "llm-canary"
    ann = body["metadata"]["annotations"]
    assert ann[CANARY] == "true" and ann[WEIGHT] == "5" and ann[OWNER] == "llm"
    assert ann["nginx.ingress.kubernetes.io/proxy-body-size"] == "8m"
    assert not any(k.startswith("kubectl.kubernetes.io/") for k in ann)
    paths = body["spec"]["rules"][0]["http"]["paths"]
    assert paths[0]["backend"]["service"]["name"] == "llm-canary"
    assert paths[1]["backend"]["service"]["name"] == "other"  # only the stable backend moves
    assert body["spec"]["tls"] == _ingress()["spec"]["tls"] and body["spec"]["ingressClassName"] == "nginx"
    assert _ingress()["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] == "llm-stable"


def test_nginx_weight_patch_and_missing_stable_backend():
    r = NginxRouter(None, T)
    assert r.patch_body(25) == {"metadata": {"annotations": {WEIGHT: "25"}}}
    with pytest.raises(ValueError):
        r.patch_body(101)
    with pytest.raises(UsageError, match="no backend for the stable Service x"):
        NginxRouter(None, Target("prod", "x", "y", route="llm")).canary_body(_ingress())


def _vs(with_canary: bool):
    dests = [{"destination": {"host": "llm-stable.prod.svc.cluster.local", "port": {"number": 80}}, "weight": 100}]
    if with_canary:
        dests.append({"destination": {"host": "llm-canary.prod.svc.cluster.local", "port": {"number": 80}},
                      "weight": 0})
    return {"spec": {"hosts": ["llm"], "http": [
        {"match": [{"uri": {"prefix": "/admin"}}], "route": [{"destination": {"host": "admin"}}]},
        {"route": dests}]}}


def test_istio_json_patch_tests_then_sets_both_weights():
    ops = IstioRouter(None, T).patch_ops(_vs(True), 25)
    assert ops == [
        {"op": "test", "path": "/spec/http/1/route/0", "value": _vs(True)["spec"]["http"][1]["route"][0]},
        {"op": "add", "path": "/spec/http/1/route/0/weight", "value": 75},
        {"op": "test", "path": "/spec/http/1/route/1", "value": _vs(True)["spec"]["http"][1]["route"][1]},
        {"op": "add", "path": "/spec/http/1/route/1/weight", "value": 25},
    ]


def test_istio_adds_a_canary_destination_when_missing_and_reads_weight():
    r = IstioRouter(None, T)
    ops = r.patch_ops(_vs(False), 0)
    assert ops[-1] == {"op": "add", "path": "/spec/http/1/route/-", "value": {
        "destination": {"host": "llm-canary.prod.svc.cluster.local", "port": {"number": 80}}, "weight": 0}}
    assert r.canary_weight(_vs(False)) == 0
    vs = _vs(True)
    vs["spec"]["http"][1]["route"][0]["weight"], vs["spec"]["http"][1]["route"][1]["weight"] = 90, 10
    assert r.canary_weight(vs) == 10


def test_istio_rejects_rules_with_third_destination_or_no_stable():
    vs = _vs(True)
    vs["spec"]["http"][1]["route"].append({"destination": {"host": "third"}, "weight": 0})
    with pytest.raises(UsageError, match="more than the stable and canary"):
        IstioRouter(None, T).patch_ops(vs, 10)
    with pytest.raises(UsageError, match="no rule routing to the stable Service"):
        IstioRouter(None, Target("prod", "nope", "llm-canary", route="llm")).patch_ops(_vs(True), 10)


def test_gateway_api_backend_refs_weights():
    route = {"spec": {"rules": [{"backendRefs": [{"name": "llm-stable", "port": 80}]}]}}
    r = GatewayApiRouter(None, T)
    assert r.canary_weight(route) == 0
    ops = r.patch_ops(route, 10)
    assert ops[1] == {"op": "add", "path": "/spec/rules/0/backendRefs/0/weight", "value": 90}
    assert ops[2] == {"op": "add", "path": "/spec/rules/0/backendRefs/-",
                      "value": {"name": "llm-canary", "port": 80, "weight": 10}}
    route["spec"]["rules"][0]["backendRefs"].append({"name": "llm-canary", "port": 80})  # weights omitted = 1
    assert r.canary_weight(route) == 50


@pytest.mark.parametrize("total,weight,expected", [
    (10, 0, (10, 0)), (10, 5, (9, 1)), (10, 25, (7, 3)), (10, 50, (5, 5)), (10, 100, (0, 10)),
    (1, 5, (1, 1)), (4, 10, (3, 1)), (2, 75, (1, 1)),
])
def test_replica_split_keeps_both_sides_serving(total, weight, expected):
    assert split(total, weight) == expected


def test_effective_weight_reports_the_achieved_share():
    assert effective_weight(3, 1) == 25 and effective_weight(0, 0) == 0
