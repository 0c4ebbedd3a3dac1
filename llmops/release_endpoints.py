"""Owns ``Endpoints``: where the main job's release goes and what it watches (staging, production, Prometheus),
filled by the sandbox (``llmops.sandbox.world``) or by ``bin/run_pipeline.py``'s flags for a real cluster; used by
``llmops.pipeline_deploy``."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Endpoints:
    """Where the release goes and what it watches: the sandbox's (``llmops.sandbox.world``) or a real cluster's
    (bin/run_pipeline.py's flags)."""

    kubeconfig: str
    staging_namespace: str
    staging_deployment: str
    staging_url: str
    production_namespace: str
    stable: str
    canary: str
    route: str
    canary_url: str
    stable_url: str
    prometheus_url: str
    provider: str = "nginx"
    traffic_url: str = ""  # a real cluster's ingress: the pipeline sends live traffic there during the canaries
    canary_args: tuple[str, ...] = ()  # more canary-step flags (the sandbox's latency limits)
