"""The canary step's access to the Kubernetes API, on kubectl-promote's code path (llmops.k8s).

Owns: ``Kube`` (a thin view over ``llmops.k8s.client.Kube``: the same connect — kubeconfig file, kubeconfig secret,
in-cluster —, timeouts, retries with backoff on 409/429/5xx/connection errors, and error mapping), the few typed
accessors the routers, the state and the runner use, the canary's version as kubectl-promote records it, and
``promote_stable``: the stable Deployment gets the canary's image and model version through
``llmops.k8s.promote.promote`` (lock, strategic-merge patch, wait like ``kubectl rollout status``, undo on failure).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from llmops.errors import UsageError
from llmops.k8s.client import NotFound

__all__ = ["Kube", "NotFound", "canary_version_of", "promote_stable"]


class Kube:
    def __init__(self, kubeconfig: str | None = None, context: str | None = None, *, namespace: str = "default",
                 kubeconfig_data: str | None = None, timeout: float = 15.0, client: Any = None,
                 allow_exec: bool = False):
        if client is None:
            from llmops.k8s.client import connect

            client = connect(kubeconfig=kubeconfig, kubeconfig_data=kubeconfig_data, context=context,
                             namespace=namespace, timeout=timeout, allow_exec=allow_exec)
        self.k8s = client
        self.api = client.api_client

    @property
    def calls(self) -> int:
        return self.k8s.calls

    def close(self) -> None:
        self.k8s.close()

    def call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> dict:
        """One API call with a timeout and retries; returns the JSON body as a dict; errors are LLMOpsError."""
        return self.k8s.call(fn, *args, what=what, **kwargs)

    def networking(self) -> Any:
        from kubernetes import client

        return client.NetworkingV1Api(self.api)

    def custom(self) -> Any:
        from kubernetes import client

        return client.CustomObjectsApi(self.api)

    # -------------------------------------------------------------- deployments
    def read_deployment(self, namespace: str, name: str) -> dict:
        return self.call(f"read deployment {namespace}/{name}", self.k8s.apps.read_namespaced_deployment, name,
                         namespace)

    def patch_deployment(self, namespace: str, name: str, body: dict) -> dict:
        return self.call(f"patch deployment {namespace}/{name}", self.k8s.apps.patch_namespaced_deployment, name,
                         namespace, body, _content_type="application/merge-patch+json")

    def scale_deployment(self, namespace: str, name: str, replicas: int) -> None:
        self.patch_deployment(namespace, name, {"spec": {"replicas": int(replicas)}})

    def annotate_deployment(self, namespace: str, name: str, annotations: dict[str, str | None]) -> None:
        self.patch_deployment(namespace, name, {"metadata": {"annotations": annotations}})


def canary_version_of(dep: dict, container: str | None, label: str | None) -> str:
    """The model version a Deployment serves: a pod label when ``label`` is given, else what kubectl-promote
    records (its annotation, else the container's MODEL_VERSION env)."""
    from llmops.k8s.change import ENV_VERSION, MODEL_VERSION, pick_container

    template = dep["spec"]["template"]
    name = dep["metadata"]["name"]
    if label:
        return ((template.get("metadata") or {}).get("labels") or {}).get(label, "")
    _, c = pick_container(template, container, f"deployment {name}")
    env = next((e.get("value") for e in c.get("env") or [] if e.get("name") == ENV_VERSION), None)
    return ((template.get("metadata") or {}).get("annotations") or {}).get(MODEL_VERSION) or env or ""


def promote_stable(kube: Kube, namespace: str, stable: str, canary: str, *, container: str | None,
                   timeout: float, log: Callable[[str], None]) -> dict:
    """Hand over to kubectl-promote: set the stable Deployment to the canary's image and model version, wait for
    the rollout (undone by kubectl-promote if it fails). Returns what changed."""
    from llmops.k8s.change import ENV_URI, ENV_VERSION, ChangeSpec, pick_container
    from llmops.k8s.promote import Options, Outcome, promote

    ca = kube.read_deployment(namespace, canary)
    _, c = pick_container(ca["spec"]["template"], container, f"deployment {namespace}/{canary}")
    env = {e.get("name"): e.get("value") for e in c.get("env") or []}
    change = ChangeSpec(image=c.get("image"), model_version=env.get(ENV_VERSION), model_uri=env.get(ENV_URI),
                        container=container, extra={"llmops-actions/promoted-by": "canary-step"})
    if not change.image:
        raise UsageError(f"canary Deployment {canary} has no image to promote")
    if kube.k8s.namespace != namespace:
        raise UsageError(f"kube client is bound to namespace {kube.k8s.namespace!r}, not {namespace!r}")
    out = promote(kube.k8s, Options(deployment=stable, change=change, timeout=timeout, log=log), Outcome())
    return {"deployment": stable, "previous_version": out.previous_version, "new_version": out.new_version,
            "image": change.image, "revision": out.revision, "steps": [f"{n}: {d}" for n, d in out.steps]}
