"""Small in-memory stand-ins for the canary unit tests: a Prometheus answering from a table, a Kube holding
Deployments. Real servers are in tests/integration."""
from __future__ import annotations

import copy
import re

from llmops.canary.kube import NotFound
from llmops.errors import InfraError


def kind_of(promql: str) -> str:
    if 'status="error"' in promql:
        return "errors"
    for needle, kind in (("increase(llm_requests_total", "requests"), ("llm_request_duration", "latency_seconds"),
                         ("time_to_first", "ttft_seconds"), ("llm_cost", "cost_per_request"), ("quality", "quality")):
        if needle in promql:
            return kind
    raise AssertionError(promql)


class FakeProm:
    """``values[(kind, version)]`` -> float or None; ``down`` makes every call an InfraError."""

    def __init__(self, values: dict | None = None):
        self.values = dict(values or {})
        self.down = False
        self.queries = 0
        self.seen: list[str] = []

    def check_online(self) -> None:
        if self.down:
            raise InfraError("Prometheus at http://fake is unreachable")

    def query_value(self, promql: str, at=None):
        self.check_online()
        self.queries += 1
        self.seen.append(promql)
        version = re.search(r'model_version="([^"]*)"', promql).group(1)
        return self.values.get((kind_of(promql), version))

    def query_buckets(self, promql: str, at=None):
        return self.query_value(promql, at)


def counts(canary_n, canary_e, stable_n, stable_e, canary="v2", stable="v1") -> dict:
    return {("requests", canary): canary_n, ("errors", canary): canary_e,
            ("requests", stable): stable_n, ("errors", stable): stable_e}


class FakeKube:
    """Deployments only (what the replicas router, the state and the promotion touch)."""

    def __init__(self, deployments: dict[str, dict]):
        self.deployments = copy.deepcopy(deployments)
        self.calls = 0
        self.log: list[tuple] = []
        self.fail_after: int | None = None
        self.on_patch = None  # called before each patch (e.g. to deliver signals in the middle of a cleanup)

    def _tick(self):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise InfraError("Kubernetes API server unreachable (fake)")

    def read_deployment(self, namespace, name):
        self._tick()
        if name not in self.deployments:
            raise NotFound(f"cannot read Deployment {namespace}/{name}: not found")
        return copy.deepcopy(self.deployments[name])

    def patch_deployment(self, namespace, name, body):
        self._tick()
        if self.on_patch:
            self.on_patch(name, body)
        _merge(self.deployments[name], body)
        self.log.append(("patch", name, body))
        return copy.deepcopy(self.deployments[name])

    def scale_deployment(self, namespace, name, replicas):
        self.patch_deployment(namespace, name, {"spec": {"replicas": replicas}})
        d = self.deployments[name]
        d["status"] = {"observedGeneration": 1, "replicas": replicas, "updatedReplicas": replicas,
                       "availableReplicas": replicas}

    def annotate_deployment(self, namespace, name, annotations):
        self.patch_deployment(namespace, name, {"metadata": {"annotations": annotations}})

    def close(self):
        pass


def _merge(target: dict, patch: dict) -> None:
    for k, v in patch.items():
        if v is None:
            target.pop(k, None)
        elif isinstance(v, dict) and isinstance(target.get(k), dict):
            _merge(target[k], v)
        else:
            target[k] = copy.deepcopy(v)


def deployment(name: str, version: str, replicas: int, image: str) -> dict:
    return {"metadata": {"name": name, "generation": 1, "annotations": {}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "llm", "track": name}},
                     "template": {"metadata": {"labels": {"app": "llm", "track": name, "version": version}},
                                  "spec": {"containers": [{"name": "server", "image": image}]}}},
            "status": {"observedGeneration": 1, "replicas": replicas, "updatedReplicas": replicas,
                       "availableReplicas": replicas}}
