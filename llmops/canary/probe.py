"""canary-step ``--mode analyse``: one window judged against live Prometheus, read-only, before any canary runs.

Users run it to check a metrics preset and their selectors against their own Prometheus: it renders every template
the enabled checks need for both sides, queries the last ``interval``, judges that window alone (fresh evidence,
not the pooled evidence of a running canary) and returns the window record: requests and errors per side, and
every check with the resolved PromQL it was computed from.

Read-only by construction: the cluster (when needed at all) is only read: the Deployments for their versions and
pod-template-hash (pod selection), the traffic object for the current weight. No cluster is needed when the
selectors are explicit (or the preset's templates use no Deployment) and the versions, where used, are given.

Outcome: ``fail`` when any check counts as failed in this window (on-no-data: fail makes a check without data a
failure), else ``pass``. A side whose requests query returns no series at all is a configuration error (exit 2
with the query): a check of a preset must find both sides' series.
"""
from __future__ import annotations

import time

from llmops.canary.analysis import Side, analyse, needed_templates
from llmops.canary.selection import pin
from llmops.errors import UsageError

CHECK_TEMPLATES = {"error_rate": ("requests", "errors"), "latency_p99": ("latency_seconds",),
                   "ttft_p95": ("ttft_seconds",), "cost_per_request": ("cost_per_request",),
                   "quality": ("quality",)}


def needs_cluster(cfg) -> bool:
    """Whether analysing needs to read the cluster (pod selection, versions to read, a weight to read)."""
    sel, t = cfg.selection, cfg.target
    names = needed_templates(cfg.analysis)
    uses_deployment = any("{deployment}" in tpl.get(n, "") for tpl in (cfg.analysis.templates,
                                                                      cfg.analysis.stable_templates) for n in names)
    uses_version = sel is None or sel.uses_version(names)
    missing_version = uses_version and not (cfg.canary_version and cfg.stable_version)
    return bool((sel is not None and sel.mode == "pods") or missing_version or
                (uses_deployment and not (t.canary and t.stable)))


def run(cfg, prom, kube=None, *, log=None) -> dict:
    """Analyse one window ending now; returns the record (``result`` pass / fail)."""
    from llmops.canary.routers import get_router
    from llmops.canary.runner import versions

    log = log or (lambda text: None)
    t, notes = cfg.target, []
    prom.check_online()  # exit 3 before anything else
    sel, analysis = cfg.selection, cfg.analysis
    if kube is not None and sel is not None:
        sel, notes = pin(sel, kube, t.namespace, t.canary, t.stable)
        analysis = sel.analysis(analysis)
    if kube is not None:
        found = versions(kube, cfg, check_exists=False)
    else:
        found = {"canary": cfg.canary_version or t.canary or "canary",
                 "stable": cfg.stable_version or t.stable or "stable"}
    weight, weight_from = cfg.weight, "weight input"
    if weight is None and kube is not None and cfg.provider:
        weight, weight_from = get_router(cfg.provider, kube, t).get_routes(), f"{cfg.provider} route"
    log(f"analysing the last {cfg.interval:g}s of {found['canary']} (canary) vs {found['stable']} (stable)")
    window = analyse(prom, analysis, Side(found["canary"], t.canary or "canary"),
                     Side(found["stable"], t.stable or "stable"), t.namespace,
                     cfg.interval, weight=weight or 0, evidence={}, min_requests=cfg.policy.min_requests)
    for role in ("canary", "stable"):
        if "requests" not in window["counts"][role]:
            q = window["queries"]["requests"][role]
            raise UsageError(f"the {role}'s requests query returned no series: {q}",
                             f"check metrics-preset and the {role}-selector (or the {role} Deployment's pod names); "
                             "a server that creates its counters on first use needs a request first")
    for check in window["checks"]:
        check["promql"] = {name: window["queries"][name] for name in CHECK_TEMPLATES.get(check["name"], ())
                           if name in window["queries"]}
    failed = [c["name"] for c in window["checks"] if c.get("counts_as") == "fail"]
    result = "fail" if failed else "pass"
    reason = ("; ".join(f"{c['name']}: {c['reason']}" for c in window["checks"] if c["name"] in failed)
              if failed else "no check failed in this window")
    return {"mode": "analyse", "result": result, "reason": reason, "failed": failed,
            "canary_version": found["canary"], "stable_version": found["stable"],
            "weight": weight, "weight_from": weight_from if weight is not None else None,
            "interval_s": cfg.interval, "selection": sel.describe() if sel else None, "notes": notes,
            "window": window, "prometheus_queries": prom.queries, "kubernetes_calls": kube.calls if kube else 0,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
