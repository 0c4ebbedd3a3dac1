"""Connecting to the API server and calling it safely: the one place that knows how a request can fail.

- ``connect()`` builds an ApiClient from, in order: a kubeconfig given as a secret (YAML or base64 YAML; written 0600
  to the runner's temp dir, masked, removed by ``close()``), a kubeconfig file, in-cluster config (inside a pod), the
  default kubeconfig (``$KUBECONFIG`` / ``~/.kube/config``).
- ``Kube`` is the one client both actions use (kubectl-promote and canary-step): ``Kube.call(fn, *args, what=)``
  runs one API call with a timeout, returns the JSON body as a dict (camelCase, as the API sends it), retries
  409/429/5xx and connection errors with capped exponential backoff for up to ``retry_budget`` seconds (an API
  server restart or a short outage is ridden out; a longer one is an InfraError, exit 3), and maps what is left to
  LLMOpsError. The typed accessors (``apps``, ``core``, ``coordination``, ``authorization``, ``networking()``,
  ``custom()``) and the few Deployment helpers the canary step uses (``read_deployment(namespace, name)``,
  ``patch_deployment``, ``scale_deployment``, ``annotate_deployment``) all go through it.
- ``Kube.calls`` counts HTTP requests (the ApiClient's ``call_api`` is wrapped), for benchmarks and the summary.
- ``retrying()`` is the same backoff loop for a read-compute-write closure (retried whole on 409).
"""
from __future__ import annotations

import base64
import json
import logging
import os
import random
import stat
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from llmops.errors import InfraError, InputError, UsageError

T = TypeVar("T")
RETRY_STATUS = frozenset({409, 429, 500, 502, 503, 504})
IN_CLUSTER_NS = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
log = logging.getLogger(__name__)


class NotFound(InputError):
    """The API said 404 for the object named in ``message``."""


class Conflict(InfraError):
    """409 after every retry: someone else keeps changing the object."""


def _api_message(exc: Any) -> str:
    try:
        body = json.loads(exc.body or "{}")
        return str(body.get("message") or exc.reason or "")
    except (TypeError, ValueError):
        return str(exc.reason or exc.body or "")


def api_error(exc: Any, what: str, server: str = "") -> Exception:
    """Map an ``ApiException`` left after retries to the error a user can act on."""
    status, message = getattr(exc, "status", 0) or 0, _api_message(exc)
    if status == 401:
        return UsageError(f"{what}: the API server rejected the credentials (401 Unauthorized)",
                          "refresh the kubeconfig's token or client certificate")
    if status == 403:
        from llmops.k8s.rbac import describe
        return UsageError(f"{what}: forbidden (403): {message}",
                          f"bind the CI service account to the Role in deploy/rbac.yaml ({describe()})")
    if status == 404:
        return NotFound(f"{what}: not found ({message})")
    if status == 409:
        return Conflict(f"{what}: the object kept changing under us (409 Conflict after retries): {message}",
                        "another controller or pipeline is writing it; run again when it is quiet")
    if status in (400, 422):
        return InputError(f"{what}: the API server refused the change ({status}): {message}")
    return InfraError(f"{what}: API server {server} answered {status} {message}".replace("  ", " "),
                      "check the API server's health and retry")


def is_connection_error(exc: BaseException) -> bool:
    import urllib3.exceptions as ux
    return isinstance(exc, (ux.HTTPError, ConnectionError, TimeoutError))


DEFAULT_RETRY_BUDGET = 60.0


def backoff_delay(attempt: int, base: float = 0.25, cap: float = 5.0) -> float:
    """Full-jitter exponential backoff: attempt 1 -> up to ``base``, doubling, never above ``cap``."""
    return random.uniform(0.5, 1.0) * min(cap, base * (2 ** (attempt - 1)))


def retrying(fn: Callable[[], T], *, what: str, budget: float = DEFAULT_RETRY_BUDGET, server: str = "",
             sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
             on_retry: Callable[[str], None] | None = None) -> T:
    """Run ``fn`` (which must be safe to repeat: a read, or read-compute-guarded-write) with backoff.

    Retried for up to ``budget`` seconds: 409 Conflict, 429 (honouring Retry-After), 5xx, connection errors and
    timeouts. Anything else, or the failure that finds the budget spent, becomes an LLMOpsError naming ``what``
    (unreachable: InfraError, exit 3).
    """
    from kubernetes.client.exceptions import ApiException

    start, attempt = clock(), 0
    while True:
        attempt += 1
        try:
            return fn()
        except ApiException as exc:
            delay = backoff_delay(attempt)
            retry_after = (exc.headers or {}).get("Retry-After") if exc.status == 429 else None
            if retry_after and str(retry_after).isdigit():
                delay = min(float(retry_after), 10.0)
            if exc.status not in RETRY_STATUS or clock() - start + delay > budget:
                raise api_error(exc, what, server) from None
            reason = f"{exc.status} {exc.reason}"
        except Exception as exc:  # noqa: BLE001 - only connection errors are retried, the rest re-raised
            if not is_connection_error(exc):
                raise
            delay = backoff_delay(attempt)
            if clock() - start + delay > budget:
                raise InfraError(f"{what}: cannot reach the Kubernetes API server {server} (tried for "
                                 f"{clock() - start:.0f}s): {type(exc).__name__}: {str(exc)[:300]}",
                                 "check the kubeconfig's server address, the network path from the runner, and "
                                 "that the cluster is up; raise retry-budget to ride out longer outages") from None
            reason = type(exc).__name__
        if on_retry:
            on_retry(f"{what}: {reason}; retry {attempt} in {delay:.1f}s")
        sleep(delay)


@dataclass
class Kube:
    """An ApiClient plus what every caller needs: the namespace, a per-call timeout, a call counter."""

    api_client: Any
    namespace: str
    timeout: float = 30.0
    retry_budget: float = DEFAULT_RETRY_BUDGET
    calls: int = 0
    source: str = ""
    _temp_files: list[Path] = field(default_factory=list)

    @property
    def server(self) -> str:
        return str(getattr(self.api_client.configuration, "host", ""))

    @property
    def apps(self) -> Any:
        from kubernetes import client
        return client.AppsV1Api(self.api_client)

    @property
    def core(self) -> Any:
        from kubernetes import client
        return client.CoreV1Api(self.api_client)

    @property
    def coordination(self) -> Any:
        from kubernetes import client
        return client.CoordinationV1Api(self.api_client)

    @property
    def authorization(self) -> Any:
        from kubernetes import client
        return client.AuthorizationV1Api(self.api_client)

    def networking(self) -> Any:
        from kubernetes import client
        return client.NetworkingV1Api(self.api_client)

    def custom(self) -> Any:
        from kubernetes import client
        return client.CustomObjectsApi(self.api_client)

    def request_timeout(self, read: float | None = None) -> tuple[float, float]:
        return (min(10.0, self.timeout), read or self.timeout)

    def call(self, fn: Callable[..., Any], *args: Any, what: str, retry: bool = True, **kwargs: Any) -> dict:
        """One typed-API call returning the raw JSON body as a dict, with a timeout.

        ``retry=True``: retried with backoff, failures mapped to LLMOpsError. ``retry=False``: one attempt and the
        ApiException left as it is, for a read-compute-write closure that the caller runs under ``retrying()``.
        """
        kwargs.setdefault("_request_timeout", self.request_timeout())
        kwargs["_preload_content"] = False

        def once() -> dict:
            resp = fn(*args, **kwargs)
            data = resp.data
            return json.loads(data) if data else {}

        if not retry:
            return once()
        return self.retrying(once, what=what)

    def retrying(self, fn: Callable[[], T], *, what: str, budget: float | None = None) -> T:
        """``retrying()`` with this client's budget and server name."""
        return retrying(fn, what=what, budget=self.retry_budget if budget is None else budget, server=self.server,
                        on_retry=log.warning)

    # The Deployment helpers the canary step uses (namespace given per call: it works on two Deployments).
    def read_deployment(self, namespace: str, name: str) -> dict:
        return self.call(self.apps.read_namespaced_deployment, name, namespace,
                         what=f"read deployment {namespace}/{name}")

    def patch_deployment(self, namespace: str, name: str, body: dict) -> dict:
        return self.call(self.apps.patch_namespaced_deployment, name, namespace, body,
                         _content_type="application/merge-patch+json", what=f"patch deployment {namespace}/{name}")

    def scale_deployment(self, namespace: str, name: str, replicas: int) -> dict:
        return self.patch_deployment(namespace, name, {"spec": {"replicas": int(replicas)}})

    def annotate_deployment(self, namespace: str, name: str, annotations: dict[str, str | None]) -> dict:
        return self.patch_deployment(namespace, name, {"metadata": {"annotations": annotations}})

    def close(self) -> None:
        for path in self._temp_files:
            path.unlink(missing_ok=True)
        self._temp_files.clear()
        close = getattr(self.api_client, "close", None)
        if close:
            close()

    def __enter__(self) -> Kube:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _count_calls(kube: Kube) -> None:
    original = kube.api_client.call_api

    def counted(*args: Any, **kwargs: Any) -> Any:
        kube.calls += 1
        return original(*args, **kwargs)

    kube.api_client.call_api = counted


def _decode_secret(text: str) -> str:
    """A kubeconfig secret may be YAML or base64 of YAML (both are common); never echo it."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        doc = None
    if isinstance(doc, dict):
        return text
    try:
        decoded = base64.b64decode("".join(text.split()), validate=True).decode("utf-8")
        if isinstance(yaml.safe_load(decoded), dict):
            return decoded
    except (ValueError, UnicodeDecodeError, yaml.YAMLError):
        pass
    raise InputError("the kubeconfig secret is neither kubeconfig YAML nor base64 of it (its content is not shown)",
                     "store the file's content (cat ~/.kube/config) or its base64 as the secret")


def write_secret_kubeconfig(text: str, directory: str | None = None) -> Path:
    """Write a kubeconfig secret 0600 into the runner temp dir; the caller removes it."""
    from llmops.k8s.kubeconfig import mask_secret

    mask_secret(text)
    content = _decode_secret(text)
    folder = directory or os.environ.get("RUNNER_TEMP") or tempfile.gettempdir()
    fd, name = tempfile.mkstemp(prefix="llmops-kubeconfig-", suffix=".yaml", dir=folder)
    try:
        os.fchmod(fd, stat.S_IRUSR | stat.S_IWUSR)
        os.write(fd, content.encode("utf-8"))
    finally:
        os.close(fd)
    return Path(name)


def _load_file(path: Path, context: str | None, allow_exec: bool = False) -> tuple[Any, str]:
    from kubernetes import config
    from kubernetes.config.config_exception import ConfigException

    from llmops.k8s.kubeconfig import review, tidy_token

    label = "the kubeconfig secret" if path.name.startswith("llmops-kubeconfig-") else str(path)
    try:
        raw = path.read_text(encoding="utf-8")
        doc = yaml.safe_load(raw)
    except OSError as exc:
        raise InputError(f"cannot read kubeconfig {label}: {exc.strerror}",
                         "pass an existing, readable kubeconfig file (kubeconfig input / --kubeconfig)") from None
    except yaml.YAMLError:
        raise InputError(f"kubeconfig {label} is not valid YAML", "check the file") from None
    if not isinstance(doc, dict) or not doc.get("clusters"):
        raise InputError(f"kubeconfig {label} has no clusters", "pass a kubeconfig with clusters, users, contexts")
    contexts = [c.get("name") for c in doc.get("contexts") or [] if isinstance(c, dict)]
    if context and context not in contexts:
        raise UsageError(f"context {context!r} is not in kubeconfig {label}; it has: {', '.join(map(str, contexts))}",
                         "set the context input to one of these")
    secret = label == "the kubeconfig secret"
    review(doc, secret=secret, context=context, allow_exec=allow_exec, log=log.info,
           label=label if secret else f"kubeconfig {label}")
    try:
        api_client = config.new_client_from_config(config_file=str(path), context=context or None,
                                                   persist_config=False)
    except ConfigException as exc:
        raise InputError(f"kubeconfig {label} cannot be used: {exc}", "check its cluster/user entries") from None
    tidy_token(api_client.configuration)
    active = context or doc.get("current-context")
    ns = next((c.get("context", {}).get("namespace") for c in doc.get("contexts") or []
               if isinstance(c, dict) and c.get("name") == active), None)
    return api_client, ns or ""


def connect(*, kubeconfig: str | None = None, kubeconfig_data: str | None = None, context: str | None = None,
            namespace: str | None = None, timeout: float = 30.0, retry_budget: float = DEFAULT_RETRY_BUDGET,
            temp_dir: str | None = None, allow_exec: bool = False) -> Kube:
    """Build a counted, timed client. Raises InputError/UsageError for bad config (nothing is contacted yet).

    ``allow_exec``: a kubeconfig secret may run exec / auth-provider commands and read a tokenFile
    (``llmops.k8s.kubeconfig.review``); a kubeconfig file always may, and its commands are logged."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    temp: list[Path] = []
    if kubeconfig_data and kubeconfig_data.strip():
        path = write_secret_kubeconfig(kubeconfig_data, temp_dir)
        temp.append(path)
        source = "kubeconfig secret"
    elif kubeconfig:
        path, source = Path(kubeconfig).expanduser(), f"kubeconfig {kubeconfig}"
    elif os.environ.get("KUBERNETES_SERVICE_HOST"):
        path, source = None, "in-cluster service account"
    else:
        env = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
        path = Path(env or "~/.kube/config").expanduser()
        source = f"default kubeconfig {path}"
        if not path.exists():
            raise UsageError("no cluster credentials: no kubeconfig given, not running in a pod, and "
                             f"{path} does not exist",
                             "set the kubeconfig (file) or kubeconfig-data (secret) input")
    try:
        if path is None:
            try:
                cfg = client.Configuration()
                config.load_incluster_config(client_configuration=cfg)
            except ConfigException as exc:
                raise InputError(f"in-cluster config failed: {exc}", "pass a kubeconfig instead") from None
            api_client = client.ApiClient(cfg)
            default_ns = IN_CLUSTER_NS.read_text().strip() if IN_CLUSTER_NS.exists() else ""
        else:
            api_client, default_ns = _load_file(path, context, allow_exec)
    except BaseException:
        for p in temp:
            p.unlink(missing_ok=True)
        raise
    kube = Kube(api_client, namespace or default_ns or "default", timeout=timeout, retry_budget=retry_budget,
                source=source, _temp_files=temp)
    _count_calls(kube)
    return kube
