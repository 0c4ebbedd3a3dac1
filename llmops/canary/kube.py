"""The canary step's Kubernetes helpers, on kubectl-promote's client and promotion (llmops.k8s).

Owns: the canary's version as kubectl-promote records it (``canary_version_of``) and ``promote_stable``: the stable
Deployment gets the canary's image and model version through ``llmops.k8s.promote.promote`` (Lease lock,
strategic-merge patch, wait like ``kubectl rollout status``, undo on failure). The client is
``llmops.k8s.client.Kube`` itself (one class, one retry/timeout/409 policy for both actions); ``connect`` here is
``llmops.k8s.client.connect`` with the canary step's retry budget (``RETRY_BUDGET``: a canary step that cannot
reach the API server leaves traffic as it is and exits 3 within a window's patience, rather than a promotion's).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from llmops.errors import UsageError
from llmops.k8s import client
from llmops.k8s.client import Kube, NotFound

__all__ = ["RETRY_BUDGET", "Kube", "NotFound", "canary_version_of", "connect", "promote_stable"]
RETRY_BUDGET = 15.0


def connect(**kwargs: Any) -> Kube:
    """``llmops.k8s.client.connect`` with the canary step's retry budget unless one is given."""
    kwargs.setdefault("retry_budget", RETRY_BUDGET)
    return client.connect(**kwargs)


def canary_version_of(dep: dict, container: str | None, label: str | None) -> str:
    """The model version a Deployment serves: a pod label when ``label`` is given, else what kubectl-promote
    records (its annotation, else the container's MODEL_VERSION env)."""
    from llmops.k8s import annotations as keys
    from llmops.k8s.change import ENV_VERSION, pick_container

    template = dep["spec"]["template"]
    name = dep["metadata"]["name"]
    if label:
        return ((template.get("metadata") or {}).get("labels") or {}).get(label, "")
    _, c = pick_container(template, container, f"deployment {name}")
    env = next((e.get("value") for e in c.get("env") or [] if e.get("name") == ENV_VERSION), None)
    return keys.get((template.get("metadata") or {}).get("annotations"), keys.MODEL_VERSION) or env or ""


def promote_stable(kube: Kube, namespace: str, stable: str, canary: str, *, container: str | None,
                   timeout: float, log: Callable[[str], None]) -> dict:
    """Hand over to kubectl-promote: set the stable Deployment to the canary's image and model version, wait for
    the rollout (undone by kubectl-promote if it fails). Returns what changed."""
    from llmops.k8s.annotations import PROMOTED_BY
    from llmops.k8s.change import ENV_URI, ENV_VERSION, ChangeSpec, pick_container
    from llmops.k8s.promote import Options, Outcome, promote

    ca = kube.read_deployment(namespace, canary)
    _, c = pick_container(ca["spec"]["template"], container, f"deployment {namespace}/{canary}")
    env = {e.get("name"): e.get("value") for e in c.get("env") or []}
    change = ChangeSpec(image=c.get("image"), model_version=env.get(ENV_VERSION), model_uri=env.get(ENV_URI),
                        container=container, extra={PROMOTED_BY: "canary-step"})
    if not change.image:
        raise UsageError(f"canary Deployment {canary} has no image to promote")
    if kube.namespace != namespace:
        raise UsageError(f"kube client is bound to namespace {kube.namespace!r}, not {namespace!r}")
    out = promote(kube, Options(deployment=stable, change=change, timeout=timeout, log=log), Outcome())
    return {"deployment": stable, "previous_version": out.previous_version, "new_version": out.new_version,
            "image": change.image, "revision": out.revision, "steps": [f"{n}: {d}" for n, d in out.steps]}
