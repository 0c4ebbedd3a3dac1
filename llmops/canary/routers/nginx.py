"""NGINX ingress canary: a copy of the primary Ingress pointing at the canary Service, weighted by annotation.

reconcile: read the primary Ingress, copy its class, rules and TLS into ``<route>-canary`` with every backend that
names the stable Service switched to the canary Service, annotated ``nginx.ingress.kubernetes.io/canary: "true"``
and ``canary-weight: "0"`` (created, or replaced when it exists). set_routes: merge-patch the ``canary-weight``
annotation. finalize: delete the canary Ingress (the primary Ingress is never changed).
"""
from __future__ import annotations

import copy

from llmops.canary.kube import NotFound
from llmops.canary.routers.base import Router, check_weight
from llmops.errors import UsageError
from llmops.k8s.annotations import CANARY_OF, LEGACY_PREFIX, PREFIX

CANARY = "nginx.ingress.kubernetes.io/canary"
WEIGHT = "nginx.ingress.kubernetes.io/canary-weight"
OWNER = CANARY_OF
# Annotations of the primary that must not be copied: they belong to the primary object or to its tooling.
_SKIP_PREFIXES = ("kubectl.kubernetes.io/", "nginx.ingress.kubernetes.io/canary", PREFIX, LEGACY_PREFIX)


class NginxRouter(Router):
    name = "nginx"
    route_kind = "Ingress"

    @property
    def canary_name(self) -> str:
        return f"{self.target.route}-canary"

    def _net(self):
        return self.kube.networking()

    def _read(self, name: str) -> dict | None:
        try:
            return self.kube.call(self._net().read_namespaced_ingress, name, self.target.namespace,
                                  what=f"read Ingress {self.target.namespace}/{name}")
        except NotFound:
            return None

    def canary_body(self, primary: dict, weight: int = 0) -> dict:
        """The canary Ingress for a primary Ingress (a pure function, unit-tested)."""
        spec = copy.deepcopy(primary.get("spec") or {})
        switched = 0
        for path in _backends(spec):
            svc = path.get("service") or {}
            if svc.get("name") == self.target.stable_svc:
                svc["name"] = self.target.canary_svc
                switched += 1
        if not switched:
            raise UsageError(f"Ingress {self.target.route} has no backend for the stable Service "
                             f"{self.target.stable_svc}", "pass stable-service: the Service the primary Ingress "
                             "routes to")
        meta = primary.get("metadata") or {}
        annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if not k.startswith(_SKIP_PREFIXES)}
        annotations.update({CANARY: "true", WEIGHT: str(check_weight(weight)), OWNER: self.target.route})
        return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                "metadata": {"name": self.canary_name, "namespace": self.target.namespace,
                             "labels": dict(meta.get("labels") or {}), "annotations": annotations},
                "spec": spec}

    def reconcile(self) -> None:
        ns = self.target.namespace
        primary = self._read(self.target.route)
        if primary is None:
            raise UsageError(f"Ingress {ns}/{self.target.route} not found",
                             "route must name the primary Ingress that serves the stable version")
        existing = self._read(self.canary_name)
        if existing is None:
            self.kube.call(self._net().create_namespaced_ingress, ns, self.canary_body(primary),
                           what=f"create Ingress {ns}/{self.canary_name}")
            return
        if (existing["metadata"].get("annotations") or {}).get(OWNER) != self.target.route:
            raise UsageError(f"Ingress {ns}/{self.canary_name} exists and was not created by canary-step",
                             "rename or delete it; canary-step owns <route>-canary")
        weight = int((existing["metadata"].get("annotations") or {}).get(WEIGHT, "0") or 0)
        body = self.canary_body(primary, weight)
        body["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"]
        self.kube.call(self._net().replace_namespaced_ingress, self.canary_name, ns, body,
                       what=f"replace Ingress {ns}/{self.canary_name}")

    def patch_body(self, weight: int) -> dict:
        return {"metadata": {"annotations": {WEIGHT: str(check_weight(weight))}}}

    def set_routes(self, weight: int) -> None:
        ns = self.target.namespace
        self.kube.call(self._net().patch_namespaced_ingress, self.canary_name, ns, self.patch_body(weight),
                       _content_type="application/merge-patch+json",
                       what=f"set the canary weight on Ingress {ns}/{self.canary_name}")

    def get_routes(self) -> int:
        obj = self._read(self.canary_name)
        if obj is None:
            return 0
        annotations = obj["metadata"].get("annotations") or {}
        if annotations.get(CANARY) != "true":
            return 0
        return int(annotations.get(WEIGHT, "0") or 0)

    def finalize(self) -> None:
        ns = self.target.namespace
        try:
            self.kube.call(self._net().delete_namespaced_ingress, self.canary_name, ns,
                           what=f"delete Ingress {ns}/{self.canary_name}")
        except NotFound:
            pass  # already gone: finalize is idempotent


def _backends(spec: dict):
    if spec.get("defaultBackend"):
        yield spec["defaultBackend"]
    for rule in spec.get("rules") or []:
        for path in (rule.get("http") or {}).get("paths") or []:
            if path.get("backend"):
                yield path["backend"]
