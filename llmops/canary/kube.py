"""The canary step's access to the Kubernetes API: one client, every call with a timeout, errors mapped.

Owns: ``Kube`` (an ApiClient from a kubeconfig file or the in-cluster config), ``Kube.call`` (timeout on every
request, retry with backoff on 409/429/5xx/connection errors for idempotent calls, API errors turned into
LLMOpsError with the fix), and the few typed accessors the routers and the runner use. Everything Kubernetes goes
through here so the step can be switched onto llmops.k8s (the kubectl-promote code path) in one place.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from llmops.errors import InfraError, InputError, UsageError

RETRY_STATUS = {409, 429, 500, 502, 503, 504}


class NotFound(InputError):
    """The object named does not exist (404)."""


class Kube:
    def __init__(self, kubeconfig: str | None = None, context: str | None = None, *, timeout: float = 15.0,
                 retries: int = 3, api_client: Any = None):
        self.timeout = timeout
        self.retries = retries
        self.calls = 0
        if api_client is not None:
            self.api = api_client
            return
        from kubernetes import config

        try:
            if kubeconfig:
                self.api = config.new_client_from_config(config_file=kubeconfig, context=context or None)
            else:
                try:
                    config.load_incluster_config()
                    from kubernetes import client

                    self.api = client.ApiClient()
                except config.ConfigException:
                    self.api = config.new_client_from_config(context=context or None)
        except (config.ConfigException, OSError, TypeError, ValueError) as exc:
            raise InputError(f"cannot load the Kubernetes configuration: {exc}",
                             "pass kubeconfig (a kubeconfig file) or run inside the cluster") from None

    def close(self) -> None:
        try:
            self.api.close()
        except Exception:  # noqa: BLE001 - closing a pool must never hide the real outcome
            pass

    # ------------------------------------------------------------------ calls
    def call(self, what: str, fn: Callable[..., Any], *args: Any, idempotent: bool = True, **kwargs: Any) -> Any:
        """Run one API call with a timeout; retry 409/429/5xx/connection errors (idempotent calls only)."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError as Urllib3Error

        kwargs.setdefault("_request_timeout", self.timeout)
        delay = 0.5
        for attempt in range(self.retries + 1):
            self.calls += 1
            last = attempt == self.retries or not idempotent
            try:
                return fn(*args, **kwargs)
            except ApiException as exc:
                if exc.status in RETRY_STATUS and not last:
                    time.sleep(delay)
                    delay *= 2
                    continue
                raise _api_error(what, exc) from None
            except (Urllib3Error, OSError) as exc:
                if not last:
                    time.sleep(delay)
                    delay *= 2
                    continue
                raise InfraError(f"Kubernetes API server unreachable while trying to {what}: {exc}",
                                 "check the kubeconfig's server address and that the cluster is up") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def apps(self) -> Any:
        from kubernetes import client

        return client.AppsV1Api(self.api)

    def networking(self) -> Any:
        from kubernetes import client

        return client.NetworkingV1Api(self.api)

    def custom(self) -> Any:
        from kubernetes import client

        return client.CustomObjectsApi(self.api)

    # -------------------------------------------------------------- deployments
    def read_deployment(self, namespace: str, name: str) -> dict:
        obj = self.call(f"read Deployment {namespace}/{name}", self.apps().read_namespaced_deployment, name, namespace)
        return self.api.sanitize_for_serialization(obj)

    def patch_deployment(self, namespace: str, name: str, body: dict) -> dict:
        obj = self.call(f"patch Deployment {namespace}/{name}", self.apps().patch_namespaced_deployment, name,
                        namespace, body, _content_type="application/merge-patch+json")
        return self.api.sanitize_for_serialization(obj)

    def scale_deployment(self, namespace: str, name: str, replicas: int) -> None:
        self.patch_deployment(namespace, name, {"spec": {"replicas": int(replicas)}})

    def annotate_deployment(self, namespace: str, name: str, annotations: dict[str, str | None]) -> None:
        self.patch_deployment(namespace, name, {"metadata": {"annotations": annotations}})


def _api_error(what: str, exc: Any) -> Exception:
    status = exc.status
    reason = (exc.reason or "").strip()
    try:
        import json

        message = json.loads(exc.body or "{}").get("message") or reason
    except (TypeError, ValueError):
        message = reason
    if status == 404:
        return NotFound(f"cannot {what}: not found ({message})",
                          "check the namespace and object names given to canary-step")
    if status in (401, 403):
        return InputError(f"cannot {what}: {status} {message}",
                          "give the workflow's service account get/patch/create/delete on the objects canary-step "
                          "changes (deployments, ingresses, virtualservices or httproutes)")
    if status in (400, 415, 422):
        return UsageError(f"cannot {what}: the API server rejected the request ({status}: {message})",
                          "check that the object has the shape canary-step expects (see docs/actions/canary-step.md)")
    return InfraError(f"cannot {what}: API server answered {status} {message}",
                      "the API server is failing; retry when it is healthy")


# ------------------------------------------------------------------ promotion
def promoted_template(stable: dict, canary: dict) -> dict:
    """The stable Deployment's pod template after promotion: the canary's pods, with the stable's selector labels
    (so the stable Deployment keeps owning its pods and its Service keeps selecting them)."""
    import copy

    template = copy.deepcopy(canary["spec"]["template"])
    selector = ((stable["spec"].get("selector") or {}).get("matchLabels") or {})
    labels = dict((template.get("metadata") or {}).get("labels") or {})
    labels.update(selector)
    template.setdefault("metadata", {})["labels"] = labels
    return template


def promote_stable(kube: Kube, namespace: str, stable: str, canary: str, *, timeout: float) -> dict:
    """Set the stable Deployment to the canary's version (its pod template) and wait until it has rolled out.

    Returns what changed (images before/after). The kubectl-promote path does the same for an image/version."""
    st = kube.read_deployment(namespace, stable)
    ca = kube.read_deployment(namespace, canary)
    template = promoted_template(st, ca)
    kube.patch_deployment(namespace, stable, {"spec": {"template": template}})
    wait_rollout(kube, namespace, stable, timeout=timeout)
    images = lambda d: [c.get("image") for c in d["spec"]["template"]["spec"].get("containers") or []]  # noqa: E731
    return {"deployment": stable, "images_before": images(st), "images_after": images(ca)}


def wait_rollout(kube: Kube, namespace: str, name: str, *, timeout: float, poll: float = 1.0) -> None:
    """Wait like ``kubectl rollout status``: new generation observed, all replicas updated and available."""
    from llmops.errors import CheckFailed

    deadline = time.monotonic() + timeout
    while True:
        d = kube.read_deployment(namespace, name)
        spec, status = d.get("spec") or {}, d.get("status") or {}
        want = int(spec.get("replicas", 1))
        done = (status.get("observedGeneration", 0) >= d["metadata"].get("generation", 0)
                and status.get("updatedReplicas", 0) == want and status.get("availableReplicas", 0) == want
                and status.get("replicas", 0) == want)
        if done:
            return
        if time.monotonic() > deadline:
            raise CheckFailed(f"Deployment {namespace}/{name} did not finish rolling out within {timeout:g}s "
                              f"({status.get('updatedReplicas', 0)} updated, {status.get('availableReplicas', 0)} "
                              f"available of {want})", "check the new pods (kubectl describe pods) and retry")
        time.sleep(poll)
