"""Istio VirtualService weights: ``spec.http[i].route[j].destination.host`` + ``weight`` (JSON patch)."""
from __future__ import annotations

from llmops.canary.routers.weighted import WeightedRoutes, renamed_copy


class IstioRouter(WeightedRoutes):
    name = "istio"
    route_kind = "VirtualService"
    group = "networking.istio.io"
    version = "v1beta1"
    plural = "virtualservices"
    rules_key = "http"
    dests_key = "route"

    def dest_name(self, dest: dict) -> str:
        return str((dest.get("destination") or {}).get("host", ""))

    def matches(self, dest: dict, service: str) -> bool:
        host = self.dest_name(dest)  # short name or FQDN (svc.ns.svc.cluster.local)
        return host == service or host.startswith(service + ".")

    def renamed(self, dest: dict, service: str) -> dict:
        host = self.dest_name(dest)
        suffix = host[len(self.target.stable_svc):] if host.startswith(self.target.stable_svc + ".") else ""
        return renamed_copy(dest, ("destination", "host"), service + suffix)
