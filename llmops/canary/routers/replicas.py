"""Replica ratio, for clusters with no router: the Service selects both Deployments, so a canary that runs k of
the n pods gets about k/n of the requests.

reconcile records the stable Deployment's replica count (annotation ``llmops.dev/canary-original-replicas`` on the
stable Deployment, kept across re-runs) as the total n. set_routes(w) scales canary to round(n*w/100) (at least 1
when w > 0) and stable to the rest (at least 1 while w < 100). The share is only as fine as the pod count: with 4
pods, 10 % becomes 1 of 4 (25 %); ``effective_weight`` says what was achieved. finalize scales stable back to n
and the canary to 0, and removes the annotation.
"""
from __future__ import annotations

from llmops.canary.routers.base import Router, check_weight
from llmops.errors import UsageError
from llmops.k8s.annotations import CANARY_ORIGINAL_REPLICAS

ORIGINAL = CANARY_ORIGINAL_REPLICAS


def split(total: int, weight: int) -> tuple[int, int]:
    """(stable, canary) replicas for a canary share of ``weight`` % of ``total`` pods."""
    check_weight(weight)
    canary = int(total * weight / 100 + 0.5)  # half up
    if weight > 0:
        canary = max(canary, 1)
    if weight < 100:
        canary = min(canary, max(total - 1, 1))
        return max(total - canary, 1), canary
    return 0, total


def effective_weight(stable: int, canary: int) -> int:
    return round(100 * canary / (stable + canary)) if stable + canary else 0


class ReplicaRouter(Router):
    name = "replicas"
    route_kind = "Deployment"
    needs_route = False

    def _replicas(self, name: str) -> tuple[int, dict]:
        obj = self.kube.read_deployment(self.target.namespace, name)
        return int((obj.get("spec") or {}).get("replicas", 1)), obj

    def total(self) -> int:
        replicas, obj = self._replicas(self.target.stable)
        recorded = ((obj.get("metadata") or {}).get("annotations") or {}).get(ORIGINAL)
        return int(recorded) if recorded else replicas

    def reconcile(self) -> None:
        replicas, obj = self._replicas(self.target.stable)
        if ((obj.get("metadata") or {}).get("annotations") or {}).get(ORIGINAL):
            return
        if replicas < 1:
            raise UsageError(f"stable Deployment {self.target.stable} has 0 replicas",
                             "the replicas provider splits the stable Deployment's pods; scale it up first")
        self.kube.annotate_deployment(self.target.namespace, self.target.stable, {ORIGINAL: str(replicas)})

    def set_routes(self, weight: int) -> None:
        stable, canary = split(self.total(), weight)
        ns = self.target.namespace
        # Grow before shrinking so capacity never dips below the total.
        if canary > self._replicas(self.target.canary)[0]:
            self.kube.scale_deployment(ns, self.target.canary, canary)
            self.kube.scale_deployment(ns, self.target.stable, stable)
        else:
            self.kube.scale_deployment(ns, self.target.stable, stable)
            self.kube.scale_deployment(ns, self.target.canary, canary)

    def get_routes(self) -> int:
        return effective_weight(self._replicas(self.target.stable)[0], self._replicas(self.target.canary)[0])

    def finalize(self) -> None:
        ns = self.target.namespace
        total = self.total()
        self.kube.scale_deployment(ns, self.target.stable, total)
        self.kube.scale_deployment(ns, self.target.canary, 0)
        self.kube.annotate_deployment(ns, self.target.stable, {ORIGINAL: None})

    def describe(self) -> dict:
        return {**super().describe(), "route": f"{self.target.stable}+{self.target.canary}",
                "note": "weight = share of pods; Service must select both Deployments"}
