"""Gateway API HTTPRoute weights: ``spec.rules[i].backendRefs[j].name`` + ``weight`` (JSON patch).

An omitted backendRef weight means 1 in the Gateway API; canary-step always writes both weights (summing to 100).
"""
from __future__ import annotations

from llmops.canary.routers.weighted import WeightedRoutes, renamed_copy


class GatewayApiRouter(WeightedRoutes):
    name = "gateway-api"
    route_kind = "HTTPRoute"
    group = "gateway.networking.k8s.io"
    version = "v1"
    plural = "httproutes"
    rules_key = "rules"
    dests_key = "backendRefs"

    def dest_name(self, dest: dict) -> str:
        return str(dest.get("name", "")) if dest.get("kind", "Service") == "Service" else ""

    def renamed(self, dest: dict, service: str) -> dict:
        return renamed_copy(dest, ("name",), service)

    def weight_of(self, dest: dict) -> int:
        return int(dest.get("weight", 1))
