"""The gate: per-metric thresholds plus a directional, noise-aware comparison with a baseline verdict.

Per metric the status is ``pass``, ``fail`` or ``inconclusive``:

- threshold (min for quality, max for latency/cost): with at least ``min_samples`` samples a violated threshold
  fails; with fewer it fails only when the whole 95% CI violates it, else it is inconclusive.
- baseline (samples matched by id): paired bootstrap (BLEU, chrF, ROUGE, loss...) or McNemar (exact match,
  accuracy) on the shared samples. It fails only when the candidate is worse in the metric's direction, p < alpha
  and the drop exceeds the metric's minimum effect. Fewer than ``min_samples`` shared samples, or a baseline
  computed with different metric settings, is inconclusive.

The run's result is ``fail`` if any metric fails, else ``inconclusive`` if any is, else ``pass``; the
``on_inconclusive`` policy decides whether inconclusive exits 1 (fail, the default) or 0.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from llmops.errors import InputError, UsageError
from llmops.eval.config import GateConfig
from llmops.eval.metrics import Metric
from llmops.eval.stats import bootstrap_many, mcnemar, paired_bootstrap, percentile_ci

VERDICT_SCHEMA = "llmops-eval-verdict/1"


@dataclass
class MetricResult:
    name: str
    metric: Metric
    value: float
    n: int
    stats: np.ndarray | None = None
    ci: tuple[float, float] | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class Baseline:
    path: str
    verdict: dict
    ids: list[str]
    stats: dict[str, np.ndarray]

    @property
    def metrics(self) -> dict:
        return self.verdict.get("metrics") or {}

    @classmethod
    def load(cls, path: str | Path) -> Baseline:
        path = Path(path)
        if not path.is_file():
            raise InputError(f"baseline verdict not found: {path}", "pass the verdict JSON an earlier "
                             "evaluate-and-gate run wrote (its report / verdict-path output)")
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise InputError(f"baseline verdict {path} is not valid JSON: {exc}", file=str(path)) from None
        if not isinstance(doc, dict) or doc.get("schema") != VERDICT_SCHEMA or not isinstance(doc.get("metrics"),
                                                                                                  dict):
            raise InputError(f"{path} is not an evaluate-and-gate verdict (schema {VERDICT_SCHEMA})",
                             "pass the JSON file written by --report of an earlier run", file=str(path))
        bad = non_finite(doc.get("metrics"), "metrics")
        if bad:
            raise InputError(f"baseline verdict {path}: {bad} is not a finite number", "a verdict with NaN or "
                             "infinite metrics cannot be compared with; rerun the baseline evaluation", file=str(path))
        samples = doc.get("samples") or {}
        ids = [str(i) for i in samples.get("ids") or []]
        stats: dict[str, np.ndarray] = {}
        for name, rows in (samples.get("stats") or {}).items():
            try:
                arr = np.asarray(rows, dtype=float)
            except (TypeError, ValueError):
                raise InputError(f"{path}: samples.stats.{name} is malformed", file=str(path)) from None
            if not np.isfinite(arr).all():
                raise InputError(f"baseline verdict {path}: samples.stats.{name} holds NaN or infinite numbers",
                                 "rerun the baseline evaluation", file=str(path))
            if arr.ndim == 1:
                arr = arr.reshape(-1, 1)
            if arr.ndim != 2 or arr.shape[0] != len(ids):
                raise InputError(f"{path}: samples.stats.{name} has {arr.shape[0] if arr.ndim else 0} rows for "
                                 f"{len(ids)} ids", file=str(path))
            stats[name] = arr
        return cls(str(path), doc, ids, stats)


def non_finite(node: object, where: str) -> str | None:
    """The first field holding NaN or +-Infinity under ``node`` (Python's JSON reader accepts them), else None."""
    if isinstance(node, float) and not math.isfinite(node):
        return where
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        found = non_finite(value, f"{where}[{key}]" if isinstance(key, int) else f"{where}.{key}")
        if found:
            return found
    return None


def _settings_only(signature: str | None) -> str:
    return "|".join(p for p in (signature or "").split("|") if not p.startswith("version:"))


def _fmt(x: float | None) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4g}"


def judge_threshold(res: MetricResult, config: GateConfig) -> tuple[str, list[str]]:
    thr = config.thresholds.get(res.name)
    if thr is None:
        return "pass", []
    if not thr.violated(res.value):
        return "pass", [f"{_fmt(res.value)} meets {thr.text()}"]
    if res.n >= config.min_samples:
        return "fail", [f"{res.name} = {_fmt(res.value)} violates the threshold {thr.text()}"]
    if res.ci is not None and thr.violated(res.ci[0]) and thr.violated(res.ci[1]):
        return "fail", [f"{res.name} = {_fmt(res.value)} violates {thr.text()} and so does its whole 95% CI "
                        f"[{_fmt(res.ci[0])}, {_fmt(res.ci[1])}]"]
    return "inconclusive", [f"{res.name} = {_fmt(res.value)} violates {thr.text()} but only {res.n} samples "
                            f"(< min_samples {config.min_samples}) and the 95% CI reaches the threshold"]


@dataclass
class _Pending:
    """A comparison waiting for its bootstrap draws (all metrics of a run are resampled together)."""

    res: MetricResult
    entry: dict
    record: dict
    cand: np.ndarray
    base: np.ndarray


def _prepare(res: MetricResult, ids: list[str], config: GateConfig,
             baseline: Baseline) -> tuple[str, list[str], dict | None] | _Pending:
    entry = baseline.metrics.get(res.name)
    if not isinstance(entry, dict) or entry.get("value") is None:
        return "pass", [f"baseline has no {res.name}: not compared"], None
    record: dict = {"value": entry.get("value"), "delta": None, "p_value": None, "test": None}
    if isinstance(entry.get("value"), (int, float)) and not math.isnan(res.value):
        record["delta"] = res.value - float(entry["value"])
    metric = res.metric
    if metric.test is None or metric.higher_is_better is None:
        return "pass", [], record
    if res.stats is None or res.name not in baseline.stats:
        return "inconclusive", [f"baseline verdict has no per-sample stats for {res.name}, so a drop cannot be "
                                "told from noise"], record
    if _settings_only(entry.get("signature")) != _settings_only(metric.signature()):
        return "inconclusive", [f"{res.name} settings differ from the baseline's ({entry.get('signature')} vs "
                                f"{metric.signature()}): not comparable"], record
    where = {sid: j for j, sid in enumerate(baseline.ids)}
    pairs = [(i, where[sid]) for i, sid in enumerate(ids) if sid in where]
    record["n_matched"] = len(pairs)
    if len(pairs) < max(config.min_samples, 1):
        return "inconclusive", [f"only {len(pairs)} samples shared with the baseline (< min_samples "
                                f"{config.min_samples})"], record
    ci_idx = np.fromiter((i for i, _ in pairs), dtype=int)
    bi_idx = np.fromiter((j for _, j in pairs), dtype=int)
    cand, base = res.stats[ci_idx], baseline.stats[res.name][bi_idx]
    if cand.shape[1] != base.shape[1]:
        return "inconclusive", [f"baseline stats for {res.name} have another shape: not comparable"], record
    return _Pending(res, entry, record, cand, base)


def _finish(p: _Pending, draws: tuple[np.ndarray, np.ndarray], config: GateConfig) -> tuple[str, list[str], dict]:
    res, metric, record = p.res, p.res.metric, p.record
    if metric.test == "mcnemar":
        comp = mcnemar(p.cand, p.base)
        comp.ci_delta = percentile_ci(draws[0] - draws[1])
    else:
        comp = paired_bootstrap(metric, p.cand, p.base, draws=draws)
    record.update(comp.to_json())
    record["value"] = p.entry.get("value")
    record["delta_all"] = record.pop("delta")
    record["delta"] = comp.delta  # on the shared samples: what the test is about
    worse_by = -comp.delta if metric.higher_is_better else comp.delta
    effect = config.min_effect_for(res.name, metric, comp.baseline)
    record["min_effect"] = effect
    text = f"Δ {comp.delta:+.4g} vs baseline on {comp.n} shared samples, one-sided p = {comp.p_value:.3g}"
    if worse_by > 0 and comp.p_value < config.alpha and worse_by > effect:
        return "fail", [f"{res.name} regressed: {text} < alpha {config.alpha:g}, drop {worse_by:.4g} > min "
                        f"effect {effect:.4g}"], record
    if worse_by > 0 and comp.p_value < config.alpha:
        return "pass", [f"{text}: significant but below the min effect {effect:.4g}"], record
    return "pass", [f"{text}: no significant drop"], record


def compare_all(results: dict[str, MetricResult], ids: list[str], config: GateConfig,
                baseline: Baseline) -> dict[str, tuple[str, list[str], dict | None]]:
    """Status, reasons and comparison record of every metric against the baseline verdict.

    Comparisons over the same number of shared samples are resampled together: one set of bootstrap draws, one
    matrix product per chunk for all metrics (the same resampled indices for candidate and baseline).
    """
    out: dict[str, tuple[str, list[str], dict | None]] = {}
    pending: dict[int, list[_Pending]] = {}
    for name, res in results.items():
        prepared = _prepare(res, ids, config, baseline)
        if isinstance(prepared, _Pending):
            pending.setdefault(prepared.cand.shape[0], []).append(prepared)
        else:
            out[name] = prepared
    for group in pending.values():
        items = [(p.res.metric, arr) for p in group for arr in (p.cand, p.base)]
        draws = bootstrap_many(items, resamples=config.bootstrap, seed=config.seed)
        for k, p in enumerate(group):
            out[p.res.name] = _finish(p, (draws[2 * k], draws[2 * k + 1]), config)
    return {name: out[name] for name in results}


def compare(res: MetricResult, ids: list[str], config: GateConfig, baseline: Baseline) -> tuple[str, list[str],
                                                                                              dict | None]:
    """One metric against the baseline verdict (see ``compare_all``)."""
    return compare_all({res.name: res}, ids, config, baseline)[res.name]


def judge(results: dict[str, MetricResult], ids: list[str], config: GateConfig,
          baseline: Baseline | None) -> tuple[str, dict[str, dict]]:
    """Overall result and, per metric, {status, reasons, threshold, baseline}. Missing metrics are errors."""
    missing = [m for m in config.thresholds if m not in results]
    if missing:
        raise UsageError(f"no value for threshold metric{'s' if len(missing) > 1 else ''} {', '.join(missing)}",
                         "add the metric to --metrics, or remove its threshold")
    compared = compare_all(results, ids, config, baseline) if baseline is not None else {}
    out: dict[str, dict] = {}
    for name, res in results.items():
        status, reasons = judge_threshold(res, config)
        record = None
        if name in compared:
            b_status, b_reasons, record = compared[name]
            reasons += b_reasons
            status = worst(status, b_status)
        thr = config.thresholds.get(name)
        out[name] = {"status": status, "reasons": reasons, "threshold": thr.to_json() if thr else None,
                     "baseline": record}
    statuses = [v["status"] for v in out.values()]
    result = "fail" if "fail" in statuses else "inconclusive" if "inconclusive" in statuses else "pass"
    return result, out


def worst(a: str, b: str) -> str:
    order = {"pass": 0, "inconclusive": 1, "fail": 2}
    return a if order[a] >= order[b] else b


def exit_code(result: str, config: GateConfig) -> int:
    if result == "fail":
        return 1
    if result == "inconclusive":
        return 1 if config.on_inconclusive == "fail" else 0
    return 0
