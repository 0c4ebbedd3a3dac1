"""Which series are the canary's and which the stable's: canary-step's metrics-preset / canary-selector /
stable-selector / queries inputs resolved into the templates each side is rendered with.

``resolve`` (no cluster): the preset's templates (llmops.canary.presets), the explicit selectors baked in per side
when given, the queries file's overrides on top; refuses (exit 2) a preset that cannot measure an enabled check and
templates whose canary and stable renderings are the same. Modes:

==========  ===============================================================================================
version     llmops (the default) without selectors: today's built-in templates, ``model_version="{version}"``
pods        other servers without selectors: the anchored pod pattern of each Deployment (``{deployment}``
            regex-escaped at render time); ``pin`` narrows a side to its current ReplicaSet's
            pod-template-hash while that Deployment is mid-rollout (pods of an older ReplicaSet still serve)
router      istio / nginx: the proxy's own labels for each Deployment (destination_workload, canary upstream)
explicit    canary-selector / stable-selector: the user's PromQL label matchers, one template set per side
==========  ===============================================================================================

``pin`` reads the two Deployments and their ReplicaSets (GET / LIST only: it never writes).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from llmops.canary import presets, queries
from llmops.errors import UsageError


@dataclass(frozen=True)
class Selection:
    preset: str
    mode: str  # version | pods | router | explicit
    canary: dict[str, str]
    stable: dict[str, str]
    overrides: dict[str, str] = field(default_factory=dict)
    selectors: dict[str, str] = field(default_factory=dict)  # role -> the matchers used (explicit or pinned)

    @property
    def regex_deployment(self) -> bool:
        return self.preset != "llmops"

    def uses_version(self, names: list[str]) -> bool:
        return any("{version}" in t.get(n, "") for t in (self.canary, self.stable) for n in names)

    def describe(self) -> dict:
        return {"metrics_preset": self.preset, "selection": self.mode, "selectors": dict(self.selectors),
                "overridden": sorted(self.overrides)}

    def analysis(self, cfg):
        """``cfg`` (an AnalysisConfig) with this selection's templates."""
        return dataclasses.replace(cfg, templates=dict(self.canary),
                                   stable_templates={} if self.stable == self.canary else dict(self.stable),
                                   regex_deployment=self.regex_deployment)


def resolve(preset: str, *, canary_selector: str = "", stable_selector: str = "", queries_path: str = "",
            needed: list[str] = (), flags: dict[str, str] | None = None) -> Selection:
    """The templates of both sides, checked without a cluster. ``needed``: the templates the enabled checks use."""
    p = presets.get(preset)  # unknown preset: exit 2 naming the choices
    overrides = queries.read(queries_path or None)
    check_measurable(p, needed, overrides, flags)
    explicit = bool(canary_selector or stable_selector)
    if explicit:
        canary, stable = presets.for_sides(preset, canary_selector=canary_selector, stable_selector=stable_selector)
        mode, selectors = "explicit", {"canary": presets.check_selector(canary_selector, "canary-selector"),
                                       "stable": presets.check_selector(stable_selector, "stable-selector")}
    elif preset == "llmops":
        canary = stable = dict(queries.DEFAULTS)  # exactly the built-in templates (version selection)
        mode, selectors = "version", {}
    else:
        canary = stable = presets.templates(preset)
        mode = "pods" if p.canary_selector == presets.POD_SELECTOR else "router"
        selectors = {}
    if overrides:
        canary, stable = dict(canary, **overrides), dict(stable, **overrides)
    sel = Selection(preset, mode, dict(canary), dict(stable), overrides, selectors)
    check_distinct(sel, needed or list(canary))
    return sel


def check_measurable(p, needed, overrides: dict[str, str], flags: dict[str, str] | None) -> None:
    """Refuse (exit 2) an enabled check the preset's server cannot measure, unless a queries file supplies it."""
    for check, template in presets.CHECK_TEMPLATE.items():
        if template in needed and template not in overrides and check in p.missing:
            limit = (flags or {}).get(template, f"the {check} limits")
            raise UsageError(f"metrics-preset {p.name} cannot measure {template} (for {check}): {p.missing[check]}",
                             f"set {limit} to off, or give a queries file with your own {template} template")


def check_distinct(sel: Selection, names: list[str]) -> None:
    """Refuse templates that render the same PromQL for two different sides (exit 2)."""
    def side(templates: dict[str, str], who: str) -> dict[str, str]:
        return {n: queries.render(templates[n], version=f"{who}-v", window="1s", namespace="",
                                  deployment=f"{who}-d") for n in names if n in templates}
    presets.check_distinct(side(sel.canary, "canary"), side(sel.stable, "stable"))


def rolling(dep: dict) -> bool:
    """Pods of an older ReplicaSet may still serve: the rollout of the current template has not finished."""
    st, meta = dep.get("status") or {}, dep.get("metadata") or {}
    if (st.get("observedGeneration") or 0) < (meta.get("generation") or 0):
        return True
    return (st.get("updatedReplicas") or 0) < (st.get("replicas") or 0)


def current_hash(kube, namespace: str, dep: dict) -> str | None:
    """The pod-template-hash of the Deployment's ReplicaSet at its current revision (None: not created yet)."""
    meta = dep["metadata"]
    revision = (meta.get("annotations") or {}).get("deployment.kubernetes.io/revision")
    sets = kube.call(kube.apps.list_namespaced_replica_set, namespace, what=f"list replicasets in {namespace}")
    for rs in sets.get("items") or []:
        m = rs.get("metadata") or {}
        owned = any(o.get("uid") == meta.get("uid") for o in m.get("ownerReferences") or [])
        if owned and (m.get("annotations") or {}).get("deployment.kubernetes.io/revision") == revision:
            return (m.get("labels") or {}).get("pod-template-hash")
    return None


def pin(sel: Selection, kube, namespace: str, canary: str, stable: str) -> tuple[Selection, list[str]]:
    """Pod selection narrowed to the current ReplicaSet of a Deployment that is mid-rollout; read-only."""
    if sel.mode != "pods":
        return sel, []
    sides, selectors, notes = {"canary": sel.canary, "stable": sel.stable}, dict(sel.selectors), []
    for role, name in (("canary", canary), ("stable", stable)):
        dep = kube.read_deployment(namespace, name)  # 404: exit 2 naming the Deployment
        if not rolling(dep):
            continue
        h = current_hash(kube, namespace, dep)
        if not h:
            notes.append(f"{role} Deployment {name} is rolling out and has no current ReplicaSet yet: counted by "
                         "its pod pattern")
            continue
        matchers = presets.pod_selector(name, h, namespace)
        sides[role] = dict(presets.side_templates(sel.preset, matchers), **sel.overrides)
        selectors[role] = matchers
        notes.append(f"{role} Deployment {name} is rolling out: only its current ReplicaSet's pods "
                     f"(pod-template-hash {h}) are counted")
    if not notes:
        return sel, []
    return dataclasses.replace(sel, canary=sides["canary"], stable=sides["stable"], selectors=selectors), notes

