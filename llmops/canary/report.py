"""Explaining a canary decision: the JSON record, the step outputs and the step summary (with a Mermaid chart).

The record holds, for every window analysed in this run, the resolved PromQL, the counts (in the what-if input
format, so ``--mode what-if --windows canary-report.json`` replays it), each check with its pooled evidence
(counts over the whole canary, log-evidence against its thresholds), what is still missing, the decision and what
was changed; a signature (settings + library versions) makes the numbers reproducible. ``decision`` is how the
run ended, the same as the ``result`` output: ``error`` / ``cancelled`` when it did not finish, whatever the last
window said. The chart plots weight and canary/stable error rate (%) over the windows kept on the canary
Deployment, so step-mode runs show the whole canary, not only their own window.
"""
from __future__ import annotations

import json
import platform
from dataclasses import asdict
from importlib import metadata
from pathlib import Path

from llmops import gha
from llmops.canary.judge import evidence
from llmops.canary.runner import CanaryRun


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def signature(run: CanaryRun) -> dict:
    cfg = run.cfg
    return {
        "llmops-actions": _version("llmops-actions"), "prometheus-api-client": _version("prometheus-api-client"),
        "python": platform.python_version(), "mode": cfg.mode, "provider": cfg.provider,
        "interval_s": cfg.interval, "policy": asdict(cfg.policy), "alpha": cfg.analysis.alpha,
        "beta": cfg.analysis.beta, "detect": cfg.analysis.detect, "on_no_data": cfg.analysis.on_no_data,
        "limits": {k: asdict(v) for k, v in cfg.analysis.limits.items()},
    }


def build(run: CanaryRun, error: str | None = None, cancelled: bool = False) -> dict:
    p = run.progress
    d = run.decision
    if error is not None:
        decision, reason = ("cancelled" if cancelled else "error"), error
    else:
        decision = d.action if d else "error"
        reason = d.reason if d else ""
    last = run.windows[-1] if run.windows else {}
    return {
        "decision": decision,
        "reason": reason,
        "phase": p.phase if p else None,
        "paused": bool(error is None and d and d.paused),
        "weight": run.final_weight,
        "next_weight": (p.weight if p and d and error is None and d.action == "continue" else None),
        "canary_version": p.canary_version if p else run.cfg.canary_version,
        "stable_version": p.stable_version if p else run.cfg.stable_version,
        "traffic": run.router.describe(),
        "selection": run.cfg.selection.describe() if run.cfg.selection else None,
        "evidence": evidence(last),
        "missing": last.get("missing") or [],
        "progress": {k: v for k, v in p.as_dict().items() if k != "evidence"} if p else None,
        "windows": run.windows,
        "actions": run.actions,
        "promotion": run.promotion,
        "prometheus_queries": run.prom.queries if run.prom else 0,
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
        "phase": record["phase"], "paused": record["paused"],
        "weight": record["weight"], "next-weight": record["next_weight"],
        "failures": (record["progress"] or {}).get("failures"),
        "canary-error-rate": (last.get("error_rate") or {}).get("canary"),
        "canary-requests": (last.get("requests") or {}).get("canary"),
        "missing": "; ".join(record["missing"]),
        "report-path": path,
    }


def _fmt(value, unit: str = "") -> str:
    if value is None:
        return "no data"
    if isinstance(value, float):
        return f"{value:.4g}{unit}"
    return f"{value}{unit}"


def evidence_rows(window: dict) -> list[list[str]]:
    rows = []
    for c in window.get("checks") or []:
        status = c["outcome"] + ("" if c.get("counts_as") in (None, c["outcome"]) else f" (counts as {c['counts_as']})")
        why = c["reason"] + "".join(f"; {n}" for n in c.get("notes") or [])
        if c["kind"] == "gauge":
            rows.append([c["name"], _fmt(c["values"]["canary"]), _fmt(c["values"]["stable"]), "this window", "-",
                         status, why])
            continue
        rel, ab = c["evidence"]["relative"], c["evidence"]["absolute"]
        src = rel or {"canary_events": ab["events"], "canary_requests": ab["requests"]}
        canary = f"{src['canary_events']}/{src['canary_requests']}"
        stable = f"{rel['stable_events']}/{rel['stable_requests']}" if rel else "-"
        tests = []
        if ab:
            tests.append(f"vs max: {ab['log_reject']:.2f} / {ab['reject_at']:.2f}")
        if rel:
            tests.append(f"worse: {rel['log_reject']:.2f} / {rel['reject_at']:.2f}, "
                         f"not {rel['detect']:.0%} worse: {rel['log_accept']:.2f} / {rel['accept_at']:.2f}")
        bound = (c.get("window") or {}).get("bound")
        what = "errors" if c["name"] == "error_rate" else f"slower than {bound:g}s (last window)" if bound else "slow"
        rows.append([c["name"], canary, stable, f"pooled {what}", "; ".join(tests), status, why])
    return rows


def summary(record: dict) -> gha.Summary:
    s = gha.Summary()
    icon = {"promote": "✅", "continue": "⏳", "rollback": "⛔"}.get(record["decision"], "❗")
    s.heading(f"canary-step: {icon} {record['decision']}" + (" (paused)" if record["paused"] else ""))
    t = record["traffic"]
    s.text(f"**{record['canary_version']}** (canary) vs **{record['stable_version']}** (stable) via "
           f"`{t['provider']}` {t['route_kind']} `{t['route']}` in `{t['namespace']}`, phase "
           f"**{record['phase']}**. {record['reason']}")
    if record["paused"]:
        s.text("**Paused**: " + next((a for a in record["actions"] if a.startswith("paused")), "paused"))
    if record["missing"]:
        s.text("**Still missing to decide:** " + "; ".join(record["missing"]))
    history = (record.get("progress") or {}).get("history") or []
    if history:
        pct = [100 * (h.get("canary_error_rate") or 0) for h in history]
        st = [100 * (h.get("stable_error_rate") or 0) for h in history]
        s.xychart("Canary weight and error rate (%) per window", list(range(1, len(history) + 1)),
                  {"weight %": [h["weight"] for h in history], "canary error %": pct, "stable error %": st},
                  y_label="%")
    if record["windows"]:
        w = record["windows"][-1]
        s.text(f"Last window ({w['window']} at {w['weight']}%): **{w['outcome']}**. Requests in it: canary "
               f"{_fmt(w['requests']['canary'])}, stable {_fmt(w['requests']['stable'])}. Evidence pooled over the "
               "whole canary (log-evidence / threshold: a rollback needs the first to reach its threshold, the "
               "last step needs the \"not worse\" one to):")
        rows = evidence_rows(w)
        if rows:
            s.table(["check", "canary", "stable", "counted", "tests (log-evidence / threshold)", "outcome", "why"],
                    rows)
        s.details("Resolved PromQL", "\n".join(_queries(w)))
    if record["actions"]:
        s.details("What was changed", "\n".join(f"- {a}" for a in record["actions"]))
    return s


def _queries(window: dict) -> list[str]:
    lines = []
    for name, q in (window.get("queries") or {}).items():
        lines += [f"- **{name}** canary: `{q['canary']}`", f"  stable: `{q['stable']}`"]
    return lines
