"""What a person reads: the step-summary table (values, CIs, deltas vs baseline with arrows, status) and the step
outputs (``result``, ``verdict-path`` and one kebab-case output per metric)."""
from __future__ import annotations

import math

from llmops import gha
from llmops.eval.metrics import kebab

ICONS = {"pass": "✅ pass", "fail": "❌ fail", "inconclusive": "⚠️ inconclusive", "warn": "🟡 warn"}


def fmt(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, float):
        return f"{x:.4g}" if abs(x) < 1e5 else f"{x:.3e}"
    return str(x)


def arrow(delta, direction: str) -> str:
    if delta is None or (isinstance(delta, float) and math.isnan(delta)):
        return "–"
    if delta == 0:
        return "= 0"
    better = (delta > 0) == (direction == "higher") if direction in ("higher", "lower") else None
    mark = "▲" if delta > 0 else "▼"
    tone = "" if better is None else (" 🟢" if better else " 🔴")
    return f"{mark} {delta:+.4g}{tone}"


def _threshold_text(thr: dict | None) -> str:
    thr = thr or {}
    return ", ".join(([f">= {fmt(thr['min'])}"] if thr.get("min") is not None else [])
                     + ([f"<= {fmt(thr['max'])}"] if thr.get("max") is not None else []))


def _ci(m: dict) -> str:
    ci = m.get("ci")
    return f"[{fmt(ci[0])}, {fmt(ci[1])}]" if ci else "–"


def summary(verdict: dict, verdict_path: str) -> gha.Summary:
    result = verdict["result"]
    s = gha.Summary().heading(f"evaluate-and-gate: {ICONS.get(result, result)}")
    model = verdict.get("model") or {}
    data = verdict.get("data") or {}
    gate = verdict.get("gate") or {}
    who = model.get("version") or model.get("path") or model.get("endpoint") or "predictions"
    line = f"Model **{who}** on {data.get('n')} samples (data {str(data.get('hash', ''))[:19]}…)"
    base = verdict.get("baseline")
    if base:
        line += f" vs baseline **{base.get('model_version') or base.get('path')}**"
    s.text(line + ".")
    for extra in served_lines(verdict):
        s.text(extra)
    metrics = verdict["metrics"]
    if base:
        rows = []
        for name, m in metrics.items():
            b = m.get("baseline") or {}
            adj = b.get("p_adjusted")
            rows.append([f"`{name}`", m.get("role") or "–", fmt(m.get("value")), _ci(m), fmt(b.get("value")),
                         arrow(b.get("delta"), m.get("direction", "none")), fmt(b.get("p_value")),
                         fmt(adj) if adj is not None else "–",
                         ICONS.get(b.get("status"), b.get("status") or "–") if b.get("status") else "–"])
        s.text(f"**Regression tests against the baseline** (one-sided; p adj. = "
               f"{gate.get('correction', 'none')} over the primary metrics)")
        s.table(["metric", "role", "value", "95% CI", "baseline", "Δ", "p", "p adj.", "status"], rows)
    else:
        s.table(["metric", "value", "95% CI"], [[f"`{name}`", fmt(m.get("value")), _ci(m)]
                                                 for name, m in metrics.items()])
    limited = {name: m for name, m in metrics.items() if _threshold_text(m.get("threshold"))}
    if limited:
        s.text("**Thresholds** (absolute limits; below `min_samples` samples only a whole 95% CI past the limit "
               "fails)")
        s.table(["metric", "value", "95% CI", "threshold", "status"],
                [[f"`{name}`", fmt(m.get("value")), _ci(m), _threshold_text(m.get("threshold")),
                  ICONS.get(m.get("threshold_status"), m.get("threshold_status") or m["status"])]
                 for name, m in limited.items()])
    if gate.get("alpha_means"):
        s.text(f"What alpha means here: {gate['alpha_means']}.")
    notes = [f"- **{name}** ({m['status']}): " + "; ".join(m.get("reasons") or [])
             for name, m in metrics.items() if m["status"] != "pass"]
    if notes:
        s.text("\n".join(notes))
    if result == "inconclusive":
        s.text(f"Inconclusive is treated as **{verdict.get('on_inconclusive')}** (input `on-inconclusive`).")
    sigs = "\n".join(f"{name}: {m.get('signature')}" for name, m in metrics.items())
    s.details("Signatures, gate settings, verdict", f"```\n{sigs}\n```\n\nalpha {gate.get('alpha')} "
              f"({gate.get('correction', 'none')}), primary {', '.join(gate.get('family') or []) or '–'}, "
              f"guard {', '.join(n for n, m in metrics.items() if m.get('role') == 'guard') or '–'}, min samples {gate.get('min_samples')}, "
              f"bootstrap {gate.get('bootstrap')}, seed {gate.get('seed')}. Verdict: `{verdict_path}`")
    return s


def served_lines(verdict: dict) -> list[str]:
    """An endpoint run: what the server said it served, which latency is which, the generation settings check."""
    lines = []
    model, backend = verdict.get("model") or {}, verdict.get("backend") or {}
    if model.get("endpoint"):
        said = [f"model `{model['served_model']}`"] if model.get("served_model") else []
        if model.get("model_version_header"):
            said.append(f"`X-Model-Version: {model['model_version_header']}`")
        listed = [m.get("id") for m in model.get("models_listed") or []]
        if listed:
            said.append(f"`/v1/models` lists {', '.join(f'`{x}`' for x in listed[:5])}")
        lines.append(f"Endpoint {model['endpoint']} answered as " + ("; ".join(said) if said else
                                                                     "no model it named") + ".")
    lat, thr = backend.get("latency") or {}, backend.get("throughput") or {}
    if lat:
        text = (f"**Latency** (`latency_p50/p95/p99`) is the server's service time: {lat.get('rows_alone')} rows "
                f"sent one at a time (p50 {fmt(lat.get('p50_alone_s'))} s).")
        if lat.get("at_concurrency"):
            text += (f" Under load the same server took p50 {fmt(lat.get('p50_at_concurrency_s'))} s per request "
                     f"at concurrency {lat['at_concurrency']} (queueing included; not gated).")
        if lat.get("server_reported_rows"):
            text += (f" The server's own timing: p50 {fmt(lat.get('server_reported_p50_s'))} s over "
                     f"{lat['server_reported_rows']} rows.")
        lines.append(text)
    if thr:
        lines.append(f"**Throughput** at concurrency {thr.get('concurrency')} ({thr.get('requests')} requests): "
                     f"{fmt(thr.get('requests_per_s'))} requests/s, {fmt(thr.get('output_tokens_per_s'))} output "
                     "tokens/s (`tokens_per_s`).")
    check = (verdict.get("baseline") or {}).get("settings") or {}
    if check.get("status") == "same":
        lines.append("Generation settings: the same as the baseline's.")
    elif check.get("note"):
        lines.append(f"⚠️ Generation settings: {check['note']}.")
    return lines


def outputs(verdict: dict, verdict_path: str) -> dict:
    model = verdict.get("model") or {}
    out = {"result": verdict["result"], "verdict-path": verdict_path, "model-version": model.get("version") or "",
           "served-model": model.get("served_model") or ""}
    for name, m in verdict["metrics"].items():
        value = m.get("value")
        out[kebab(name)] = "" if value is None else round(float(value), 6)
    return out
