"""Explaining a canary decision: the JSON record, the step outputs and the step summary (with a Mermaid chart).

The record holds, for every window analysed in this run, the resolved PromQL, the values, sample sizes, p-values
and limits of each check, plus the decision and what was changed; a signature (settings + library versions) makes
the numbers reproducible. The chart plots weight and canary/stable error rate (%) over the windows kept on the
canary Deployment, so step-mode runs show the whole canary, not only their own window.
"""
from __future__ import annotations

import json
import platform
from dataclasses import asdict
from importlib import metadata
from pathlib import Path

from llmops import gha
from llmops.canary.runner import CanaryRun


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def signature(run: CanaryRun) -> dict:
    cfg = run.cfg
    return {
        "llmops-actions": _version("llmops-actions"), "scipy": _version("scipy"),
        "prometheus-api-client": _version("prometheus-api-client"), "python": platform.python_version(),
        "mode": cfg.mode, "provider": cfg.provider, "interval_s": cfg.interval, "policy": asdict(cfg.policy),
        "min_requests": cfg.analysis.min_requests, "alpha": cfg.analysis.alpha,
        "on_no_data": cfg.analysis.on_no_data,
        "limits": {k: asdict(v) for k, v in cfg.analysis.limits.items()},
    }


def build(run: CanaryRun, error: str | None = None) -> dict:
    p = run.progress
    d = run.decision
    return {
        "decision": d.action if d else "error",
        "reason": error or (d.reason if d else "") + (f" (last window: {run.windows[-1]['reason']})"
                                                       if run.windows else ""),
        "weight": run.final_weight,
        "next_weight": (p.weight if p and d and d.action == "continue" else None),
        "canary_version": p.canary_version if p else run.cfg.canary_version,
        "stable_version": p.stable_version if p else run.cfg.stable_version,
        "traffic": run.router.describe(),
        "progress": p.as_dict() if p else None,
        "windows": run.windows,
        "actions": run.actions,
        "promotion": run.promotion,
        "prometheus_queries": run.prom.queries,
        "kubernetes_calls": run.kube.calls,
        "signature": signature(run),
    }


def write(path: str, record: dict) -> None:
    try:
        Path(path).write_text(gha.scrub(json.dumps(record, indent=2, default=str)) + "\n", encoding="utf-8")
    except OSError as exc:  # the decision stands even when the record cannot be written
        gha.warning(f"could not write the canary record to {path}: {exc.strerror}")


def outputs(record: dict, path: str) -> dict:
    last = record["windows"][-1] if record["windows"] else {}
    return {
        "result": record["decision"], "decision": record["decision"], "reason": record["reason"],
        "weight": record["weight"], "next-weight": record["next_weight"],
        "failures": (record["progress"] or {}).get("failures"),
        "canary-error-rate": (last.get("error_rate") or {}).get("canary"),
        "canary-requests": (last.get("requests") or {}).get("canary"),
        "report-path": path,
    }


def _fmt(value, unit: str = "") -> str:
    if value is None:
        return "no data"
    if isinstance(value, float):
        return f"{value:.4g}{unit}"
    return f"{value}{unit}"


def summary(record: dict) -> gha.Summary:
    s = gha.Summary()
    icon = {"promote": "✅", "continue": "⏳", "rollback": "⛔"}.get(record["decision"], "❗")
    s.heading(f"canary-step: {icon} {record['decision']}")
    t = record["traffic"]
    s.text(f"**{record['canary_version']}** (canary) vs **{record['stable_version']}** (stable) via "
           f"`{t['provider']}` {t['route_kind']} `{t['route']}` in `{t['namespace']}`. {record['reason']}")
    history = (record.get("progress") or {}).get("history") or []
    if history:
        pct = [100 * (h.get("canary_error_rate") or 0) for h in history]
        st = [100 * (h.get("stable_error_rate") or 0) for h in history]
        s.xychart("Canary weight and error rate (%) per window", list(range(1, len(history) + 1)),
                  {"weight %": [h["weight"] for h in history], "canary error %": pct, "stable error %": st},
                  y_label="%")
    if record["windows"]:
        w = record["windows"][-1]
        s.text(f"Last window ({w['window']} at {w['weight']}%): **{w['outcome']}** — {w['reason']}. Requests "
               f"canary {_fmt(w['requests']['canary'])}, stable {_fmt(w['requests']['stable'])} "
               f"(min-requests {w['min_requests']}).")
        rows = []
        for c in w["checks"]:
            p_values = ", ".join(f"{x['test']} p={x['p_value']:.3g}" for x in c.get("tests", [])) or "-"
            limits = ", ".join(f"{k} {v:g}" for k, v in c["limits"].items() if v is not None)
            rows.append([c["name"], _fmt(c["values"]["canary"]), _fmt(c["values"]["stable"]), limits, p_values,
                         c["outcome"] + ("" if c["counts_as"] == c["outcome"] else f" (counts as {c['counts_as']})"),
                         c["reason"]])
        if rows:
            s.table(["check", "canary", "stable", "limits", "test", "outcome", "why"], rows)
        s.details("Resolved PromQL", "\n".join(_queries(w)))
    if record["actions"]:
        s.details("What was changed", "\n".join(f"- {a}" for a in record["actions"]))
    return s


def _queries(window: dict) -> list[str]:
    lines = []
    for name, q in window["queries"].items():
        lines += [f"- **{name}** canary: `{q['canary']}`", f"  stable: `{q['stable']}`"]
    for c in window["checks"]:
        if "queries" in c:
            lines += [f"- **{c['name']}** canary: `{c['queries']['canary']}`", f"  stable: `{c['queries']['stable']}`"]
    return lines
