"""What a promotion changes in a Deployment, as data: the container, the strategic-merge patch, the record, the diff.

A promotion sets the container image and/or the model version (env ``MODEL_VERSION`` / ``MODEL_URI``, or a pod
template annotation), and writes a record on the Deployment (``kubernetes.io/change-cause`` plus the ``llmops.dev/*``
annotations listed in ``annotations``; the legacy ``llmops-actions/*`` record is removed). The Deployment controller copies Deployment annotations to the ReplicaSet it creates, so every revision
in ``kubectl rollout history`` says which model, commit, run and verdict it came from. Patches are strategic merges
(containers and env merged by name, as ``kubectl set image`` / ``set env`` do) carrying the resourceVersion they were
computed from, so a concurrent write turns into a 409 that is retried from a fresh read.
"""
from __future__ import annotations

import copy
import difflib
from dataclasses import dataclass, field
from datetime import datetime, timezone

import yaml

from llmops.errors import UsageError
from llmops.k8s import annotations as keys
from llmops.k8s.annotations import MODEL_URI, MODEL_VERSION, PREFIX

CHANGE_CAUSE = "kubernetes.io/change-cause"
ENV_VERSION, ENV_URI = "MODEL_VERSION", "MODEL_URI"


@dataclass
class ChangeSpec:
    image: str | None = None
    model_version: str | None = None
    model_uri: str | None = None
    version_via: str = "env"  # env | annotation
    container: str | None = None
    git_sha: str = ""
    run_url: str = ""
    verdict_sha256: str = ""
    verdict_result: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def validate(self) -> None:
        if not (self.image or self.model_version or self.model_uri):
            raise UsageError("nothing to promote: give --image and/or --model-version / --model-uri",
                             "set the image or model-version input")
        if self.version_via not in ("env", "annotation"):
            raise UsageError(f"--version-via must be env or annotation, got {self.version_via!r}")

    @property
    def new_version(self) -> str:
        return self.model_version or self.image or self.model_uri or ""


def pick_container(template: dict, name: str | None, where: str) -> tuple[int, dict]:
    containers = (template.get("spec") or {}).get("containers") or []
    names = [c.get("name") for c in containers]
    if name:
        if name not in names:
            raise UsageError(f"{where} has no container {name!r}; its containers: {', '.join(names) or 'none'}",
                             "set the container input to one of these")
        return names.index(name), containers[names.index(name)]
    if len(containers) == 1:
        return 0, containers[0]
    raise UsageError(f"{where} has {len(containers)} containers ({', '.join(names)}); say which one to change",
                     "set the container input (--container) to one of these")


def env_value(container: dict, key: str) -> str | None:
    return next((e.get("value") for e in container.get("env") or [] if e.get("name") == key), None)


def current_version(dep: dict, container_name: str | None) -> str:
    """What the Deployment runs now: our record, else MODEL_VERSION, else the image."""
    template = dep["spec"]["template"]
    _, container = pick_container(template, container_name, "deployment")
    return (env_value(container, ENV_VERSION)
            or keys.get((template.get("metadata") or {}).get("annotations"), MODEL_VERSION)
            or container.get("image", ""))


def record_annotations(spec: ChangeSpec, image: str, now: datetime | None = None) -> dict[str, str | None]:
    """The Deployment annotations a promotion writes; keys it has no value for are removed (None)."""
    values = {"model-version": spec.model_version, "model-uri": spec.model_uri, "image": image,
              "git-sha": spec.git_sha, "run-url": spec.run_url, "verdict-sha256": spec.verdict_sha256,
              "verdict-result": spec.verdict_result,
              "promoted-at": (now or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ")}
    out: dict[str, str | None] = {PREFIX + k: (v or None) for k, v in values.items()}
    cause = [f"{k}={values[k]}" for k in ("model-version", "image", "git-sha", "run-url") if values[k]]
    out[CHANGE_CAUSE] = "llmops kubectl-promote " + " ".join(cause)
    out.update(spec.extra)
    return out


def apply_to_template(template: dict, spec: ChangeSpec, where: str) -> dict:
    """The pod template after the change (used for no-op detection and blue-green)."""
    template = copy.deepcopy(template)
    _, container = pick_container(template, spec.container, where)
    if spec.image:
        container["image"] = spec.image
    if spec.version_via == "env":
        env = container.setdefault("env", [])
        for key, value in ((ENV_VERSION, spec.model_version), (ENV_URI, spec.model_uri)):
            if not value:
                continue
            entry = next((e for e in env if e.get("name") == key), None)
            if entry is None:
                env.append({"name": key, "value": value})
            else:
                entry.pop("valueFrom", None)
                entry["value"] = value
    else:
        annotations = template.setdefault("metadata", {}).setdefault("annotations", {})
        if spec.model_version:
            annotations[MODEL_VERSION] = spec.model_version
        if spec.model_uri:
            annotations[MODEL_URI] = spec.model_uri
    return template


def build_patch(dep: dict, spec: ChangeSpec, where: str, *, replicas: int | None = None,
                now: datetime | None = None) -> dict:
    """Strategic-merge patch for the promotion, guarded by the Deployment's resourceVersion."""
    template = dep["spec"]["template"]
    _, container = pick_container(template, spec.container, where)
    c_patch: dict = {"name": container["name"]}
    if spec.image:
        c_patch["image"] = spec.image
    t_patch: dict = {"spec": {"containers": [c_patch]}}
    if spec.version_via == "env":
        env = [{"name": k, "value": v, **({"valueFrom": None} if any(
                   e.get("name") == k and "valueFrom" in e for e in container.get("env") or []) else {})}
               for k, v in ((ENV_VERSION, spec.model_version), (ENV_URI, spec.model_uri)) if v]
        if env:
            c_patch["env"] = env
    else:
        t_ann = {MODEL_VERSION: spec.model_version, MODEL_URI: spec.model_uri}
        t_patch["metadata"] = {"annotations": {k: v for k, v in t_ann.items() if v}}
    record = record_annotations(spec, spec.image or container.get("image", ""), now)
    live = dep["metadata"].get("annotations") or {}
    record.update({k: None for k in live if k.startswith(keys.LEGACY_PREFIX)})  # the pre-llmops.dev/ record
    patch: dict = {
        "metadata": {"resourceVersion": dep["metadata"]["resourceVersion"], "annotations": record},
        "spec": {"template": t_patch},
    }
    if replicas is not None:
        patch["spec"]["replicas"] = replicas
    return patch


_VOLATILE_META = ("managedFields", "resourceVersion", "generation", "uid", "creationTimestamp", "selfLink")


def _view(obj: dict) -> dict:
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in _VOLATILE_META}
    return {"metadata": meta, "spec": obj.get("spec") or {}}


def diff_text(before: dict, after: dict, name: str) -> str:
    """Unified diff of what a change does to an object (status and bookkeeping fields left out)."""
    a = yaml.safe_dump(_view(before), sort_keys=True, default_flow_style=False).splitlines(keepends=True)
    b = yaml.safe_dump(_view(after), sort_keys=True, default_flow_style=False).splitlines(keepends=True)
    return "".join(difflib.unified_diff(a, b, f"{name} (live)", f"{name} (after promotion)"))
