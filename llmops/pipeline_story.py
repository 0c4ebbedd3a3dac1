"""What the local pipeline's gates decided, as one table: each candidate against its baseline, with the paired test.

``gate_outcome`` reads a candidate's verdict and the verdict it was gated against (both written by
evaluate-and-gate, schema ``llmops-eval-verdict/1``) and pairs their per-sample 0/1 outcomes of the primary metric
(accuracy, else exact match) by sample id. It reports both one-sided McNemar p-values, computed with the gate's
own test (``llmops.eval.stats.mcnemar``: exact for few discordant samples, else the continuity-corrected normal
approximation): ``p_better`` (is the candidate right more often than the baseline? the gate's test with the roles
swapped) and ``p_worse`` (is it right less often? the regression test the gate runs; the gate's own value from
the verdict when it recorded one). The gate's decision is the exit code and the verdict's ``result``; this module
only explains it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

PRIMARY = ("accuracy", "exact_match")


def mcnemar_p(cand: list[float], base: list[float]) -> float:
    """One-sided p that ``cand`` is right less often than ``base`` on the same samples (the gate's test)."""
    import numpy as np

    from llmops.eval.stats import mcnemar

    return float(mcnemar(np.asarray(cand), np.asarray(base)).p_value)


@dataclass
class GateOutcome:
    label: str
    version: str
    what: str
    verdict: str
    baseline_name: str
    exit_code: int
    result: str
    metric: str | None = None
    value: float | None = None
    baseline_value: float | None = None
    n: int = 0
    baseline_only: int = 0
    candidate_only: int = 0
    p_better: float | None = None
    p_worse: float | None = None
    failed: tuple[str, ...] = ()

    @property
    def delta(self) -> float | None:
        if self.value is None or self.baseline_value is None:
            return None
        return self.value - self.baseline_value

    def line(self) -> str:
        if self.metric is None:
            return f"gate: {self.result} (exit {self.exit_code})"
        text = (f"{self.metric} {self.baseline_value:.3f} -> {self.value:.3f} on {self.n} paired samples "
                f"(right only with the candidate: {self.candidate_only}, only with {self.baseline_name}: "
                f"{self.baseline_only}); ")
        if (self.delta or 0) >= 0:
            text += f"improvement p = {fmt_p(self.p_better)}"
        else:
            text += f"regression p = {fmt_p(self.p_worse)}"
        text += f"; gate: {self.result} (exit {self.exit_code})"
        if self.failed:
            text += ", failed on " + ", ".join(self.failed)
        return text


def fmt_p(p: float | None) -> str:
    if p is None:
        return "–"
    return f"{p:.1e}" if p < 1e-3 else f"{p:.3f}"


def _outcomes(verdict: dict, metric: str) -> dict[str, float]:
    samples = verdict.get("samples") or {}
    ids, stats = samples.get("ids") or [], (samples.get("stats") or {}).get(metric)
    if not stats or len(stats) != len(ids):
        return {}
    out = {}
    for sid, value in zip(ids, stats, strict=True):
        value = value[0] if isinstance(value, list) and value else value
        if isinstance(value, (int, float)):
            out[sid] = float(value)
    return out


def gate_outcome(label: str, version: str, what: str, verdict_path: Path, baseline_path: Path,
                 baseline_name: str, exit_code: int) -> GateOutcome:
    verdict = json.loads(Path(verdict_path).read_text())
    baseline = json.loads(Path(baseline_path).read_text())
    metrics = verdict.get("metrics") or {}
    failed = tuple(name for name, entry in metrics.items() if isinstance(entry, dict) and entry.get("status") == "fail")
    outcome = GateOutcome(label, version, what, str(verdict_path), baseline_name, exit_code,
                          str(verdict.get("result")), failed=failed)
    metric = next((m for m in PRIMARY if m in metrics), None)
    if metric is None:
        return outcome
    cand, base = _outcomes(verdict, metric), _outcomes(baseline, metric)
    shared = [sid for sid in cand if sid in base]
    b = sum(1 for sid in shared if base[sid] > 0.5 and cand[sid] <= 0.5)
    c = sum(1 for sid in shared if cand[sid] > 0.5 and base[sid] <= 0.5)
    outcome.metric, outcome.n, outcome.baseline_only, outcome.candidate_only = metric, len(shared), b, c
    if shared:
        outcome.value = sum(cand[s] > 0.5 for s in shared) / len(shared)
        outcome.baseline_value = sum(base[s] > 0.5 for s in shared) / len(shared)
        cand_v, base_v = [cand[s] for s in shared], [base[s] for s in shared]
        outcome.p_better, outcome.p_worse = mcnemar_p(base_v, cand_v), mcnemar_p(cand_v, base_v)
        recorded = (metrics[metric].get("baseline") or {}).get("p_value")
        if isinstance(recorded, (int, float)):
            outcome.p_worse = float(recorded)
    return outcome


def story_table(base_value: float | None, base_name: str, outcomes: list[GateOutcome]) -> str:
    """Markdown table: the baseline, then each candidate with its paired test and the gate's decision."""
    rows = ["| model | how it was made | accuracy | vs | change | p (one-sided, paired) | gate |",
            "|---|---|---|---|---|---|---|"]
    if base_value is not None:
        rows.append(f"| base | {base_name}, no fine-tuning | {base_value:.3f} | | | | (measured: production "
                    "today) |")
    for o in outcomes:
        if o.metric is None:
            rows.append(f"| {o.label} | {o.what} | – | {o.baseline_name} | – | – | {o.result} (exit {o.exit_code}) |")
            continue
        better = (o.delta or 0) >= 0
        p = f"{fmt_p(o.p_better)} (better)" if better else f"{fmt_p(o.p_worse)} (worse)"
        gate = f"**{o.result}** (exit {o.exit_code})"
        if o.failed:
            gate += ": " + ", ".join(o.failed)
        rows.append(f"| {o.label} | {o.what} | {o.value:.3f} | {o.baseline_name} | {o.delta:+.3f} | {p} | "
                    f"{gate} |")
    return "\n".join(rows)


def timings_table(timings) -> str:
    rows = ["| stage | wall s | CPU s |", "|---|---|---|"]
    for t in timings:
        rows.append(f"| {t.stage} | {t.wall_s:.1f} | {t.cpu_s:.1f} |")
    rows.append(f"| total | {sum(t.wall_s for t in timings):.1f} | {sum(t.cpu_s for t in timings):.1f} |")
    return "\n".join(rows)
