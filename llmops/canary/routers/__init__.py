"""Traffic providers, one file each, chosen by name; an unknown name is an error (no silent fallback).

    nginx         NGINX ingress canary annotations on a canary copy of the primary Ingress
    istio         Istio VirtualService destination weights (JSON patch on the custom object)
    gateway-api   Gateway API HTTPRoute backendRef weights (JSON patch on the custom object)
    replicas      no router: scale canary vs stable Deployments so the canary's share of pods ~ the weight
"""
from __future__ import annotations

import importlib

from llmops.canary.kube import Kube
from llmops.canary.routers.base import Router, Target
from llmops.errors import UsageError

PROVIDERS = {
    "nginx": "llmops.canary.routers.nginx:NginxRouter",
    "istio": "llmops.canary.routers.istio:IstioRouter",
    "gateway-api": "llmops.canary.routers.gateway_api:GatewayApiRouter",
    "replicas": "llmops.canary.routers.replicas:ReplicaRouter",
}

__all__ = ["PROVIDERS", "Router", "Target", "get_router"]


def get_router(name: str, kube: Kube, target: Target) -> Router:
    if name not in PROVIDERS:
        raise UsageError(f"unknown traffic provider {name!r}", f"use one of: {', '.join(PROVIDERS)}")
    module, cls = PROVIDERS[name].split(":")
    return getattr(importlib.import_module(module), cls)(kube, target)
