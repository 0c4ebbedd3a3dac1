"""The gate: absolute thresholds and a directional, noise-aware, family-wise comparison with a baseline verdict.

Two kinds of checks, reported apart:

- **threshold** (an absolute limit, min for quality, max for latency/cost): with at least ``min_samples`` samples
  a violated threshold fails; with fewer it fails only when the whole 95% CI violates it, else it is
  inconclusive. Thresholds are not hypothesis tests and are not part of the family below.
- **regression test** against the baseline (samples matched by id): paired bootstrap (BLEU, chrF, ROUGE,
  loss...) or McNemar (exact match, accuracy) on the shared samples, one-sided. Fewer than ``min_samples``
  shared samples, or a baseline computed with different metric settings, is inconclusive.

Metrics with a paired test are **primary** (the default for all of them, or those named in ``gate.primary``) or
**guard** (``gate.guard``, or every other one once ``primary`` is set). The primary metrics form one family: their
p values are adjusted together (``gate.correction``: Westfall-Young step-down max-T over random swaps of the
paired rows by default, see llmops/eval/stats.py), so ``alpha`` is the chance that a candidate of the baseline's quality fails
the gate as a whole. A primary metric fails when the candidate is worse in its direction, the *adjusted* p <
alpha and the drop exceeds the metric's minimum effect. A guard is tested alone at alpha and its regression (or
inconclusive comparison) is a ``warn``: reported, never failing the run.

The run's result is ``fail`` if any metric fails, else ``inconclusive`` if any is, else ``pass`` (warnings do not
change it); the ``on_inconclusive`` policy decides whether inconclusive exits 1 (fail, the default) or 0.
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
from llmops.eval.stats import (
    Comparison,
    adjust,
    bootstrap_many,
    expansion,
    mcnemar,
    paired_bootstrap,
    percentile_ci,
    sign_flip_null,
    sign_test,
)

VERDICT_SCHEMA = "llmops-eval-verdict/1"
# Random swaps behind the family-wise p values. Every run with the default seed uses the same swaps, so their Monte
# Carlo error is not averaged away across runs: 10,000 keep it near +-0.2% at p = 0.05 (1,000: +-0.7%).
SWAPS = 10_000


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
    outputs: dict[str, str] | None = None  # the baseline's answers by id (verdicts before this field: None)

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
        texts = samples.get("outputs")
        outputs = None
        if isinstance(texts, list) and len(texts) == len(ids) and all(isinstance(t, str) for t in texts):
            outputs = dict(zip(ids, texts, strict=True))
        return cls(str(path), doc, ids, stats, outputs)


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
    if res.extra.get("inconclusive"):
        return "inconclusive", [f"{res.name}: {res.extra['inconclusive']}"]
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
    draws: tuple[np.ndarray, np.ndarray] | None = None
    comp: Comparison | None = None
    expand: float = 1.0  # small-sample widening of the null draws (stats.expansion)


def _shared(ids: list[str], baseline: Baseline) -> tuple[np.ndarray, np.ndarray]:
    where = {sid: j for j, sid in enumerate(baseline.ids)}
    pairs = [(i, where[sid]) for i, sid in enumerate(ids) if sid in where]
    return (np.fromiter((i for i, _ in pairs), dtype=int, count=len(pairs)),
            np.fromiter((j for _, j in pairs), dtype=int, count=len(pairs)))


def _prepare_sign(res: MetricResult, ids: list[str], config: GateConfig,
                  baseline: Baseline) -> tuple[str, list[str], dict | None] | _Pending:
    """A pairwise judgement is already a comparison with the baseline: (win, loss, judged) rows, sign test."""
    record: dict = {"value": 0.5, "delta": None, "p_value": None, "test": None, "role": config.role(res.name)}
    if res.stats is None:
        return "inconclusive", [f"{res.name} has no judgements"], record
    ci_idx, _ = _shared(ids, baseline)
    cand = res.stats[ci_idx]
    record["n_matched"] = int(cand[:, 2].sum())
    if record["n_matched"] < max(config.min_samples, 1):
        return "inconclusive", [f"only {record['n_matched']} rows judged against the baseline's answers (< "
                                f"min_samples {config.min_samples})"], record
    return _Pending(res, {"value": 0.5}, record, cand, cand[:, [1, 0, 2]])  # swapped: the baseline's view


def _prepare(res: MetricResult, ids: list[str], config: GateConfig,
             baseline: Baseline) -> tuple[str, list[str], dict | None] | _Pending:
    if res.extra.get("inconclusive"):
        return "inconclusive", [f"{res.name}: {res.extra['inconclusive']}"], {"role": config.role(res.name)}
    if res.metric.test == "sign":
        return _prepare_sign(res, ids, config, baseline)
    entry = baseline.metrics.get(res.name)
    if not isinstance(entry, dict) or entry.get("value") is None:
        return "pass", [f"baseline has no {res.name}: not compared"], None
    record: dict = {"value": entry.get("value"), "delta": None, "p_value": None, "test": None}
    if isinstance(entry.get("value"), (int, float)) and not math.isnan(res.value):
        record["delta"] = res.value - float(entry["value"])
    metric = res.metric
    if metric.test is None or metric.higher_is_better is None:
        return "pass", [], record
    record["role"] = config.role(res.name)
    if res.stats is None or res.name not in baseline.stats:
        return "inconclusive", [f"baseline verdict has no per-sample stats for {res.name}, so a drop cannot be "
                                "told from noise"], record
    if _settings_only(entry.get("signature")) != _settings_only(metric.signature()):
        return "inconclusive", [f"{res.name} settings differ from the baseline's ({entry.get('signature')} vs "
                                f"{metric.signature()}): not comparable"], record
    ci_idx, bi_idx = _shared(ids, baseline)
    record["n_matched"] = len(ci_idx)
    if len(ci_idx) < max(config.min_samples, 1):
        return "inconclusive", [f"only {len(ci_idx)} samples shared with the baseline (< min_samples "
                                f"{config.min_samples})"], record
    cand, base = res.stats[ci_idx], baseline.stats[res.name][bi_idx]
    if cand.shape[1] != base.shape[1]:
        return "inconclusive", [f"baseline stats for {res.name} have another shape: not comparable"], record
    return _Pending(res, entry, record, cand, base)


def _test(p: _Pending) -> Comparison:
    """The metric's own (raw, one-sided) test on the shared samples."""
    assert p.draws is not None
    if p.res.metric.test == "sign":
        return sign_test(p.cand[:, 0], p.cand[:, 1], p.cand[:, 2])
    if p.res.metric.test == "mcnemar":
        cand, base = p.cand[:, 0], p.base[:, 0]
        if p.cand.shape[1] == 2:  # (passed, applicable) rows of an assertion: the rows both runs checked
            both = (p.cand[:, 1] > 0) & (p.base[:, 1] > 0)
            cand, base = cand[both], base[both]
        comp = mcnemar(cand, base)
        comp.ci_delta = percentile_ci(p.draws[0] - p.draws[1])
        return comp
    return paired_bootstrap(p.res.metric, p.cand, p.base, draws=p.draws, expand=p.expand)


def _family(members: list[_Pending], config: GateConfig) -> tuple[dict[str, float], str]:
    """Adjusted p of the primary metrics (one family); the method actually used."""
    if not members:
        return {}, config.correction
    raw = [p.comp.p_value for p in members]  # type: ignore[union-attr]
    method = config.correction
    if method == "westfall-young" and len({p.cand.shape[0] for p in members}) > 1:
        method = "holm"  # different shared samples -> different resamples: no joint null (never the case today)
    t_obs, t_null = None, None
    if method == "westfall-young":
        t_obs, t_null = sign_flip_null([(p.res.metric, p.cand, p.base, bool(p.res.metric.higher_is_better))
                                        for p in members], resamples=max(SWAPS, config.bootstrap),
                                       seed=config.seed)
    adjusted = adjust(method, raw, t_obs, t_null)
    return {p.res.name: float(q) for p, q in zip(members, adjusted, strict=True)}, method


def _finish(p: _Pending, p_adj: float, method: str, family_size: int,
            config: GateConfig) -> tuple[str, list[str], dict]:
    res, metric, record, comp = p.res, p.res.metric, p.record, p.comp
    assert comp is not None
    role = config.role(res.name)
    record.update(comp.to_json())
    record["value"] = p.entry.get("value")
    record["delta_all"] = record.pop("delta")
    record["delta"] = comp.delta  # on the shared samples: what the test is about
    record["p_raw"] = comp.p_value
    record["p_adjusted"] = p_adj
    record["correction"] = method if role == "primary" else "none"
    record["family_size"] = family_size if role == "primary" else 1
    if comp.n < max(config.min_samples, 1):  # an assertion checked on few rows of both runs
        why = f"only {comp.n} rows checked in both runs (< min_samples {config.min_samples})"
        return ("warn", [why + " (guard metric: warns only)"], record) if role == "guard" else (
            "inconclusive", [why], record)
    worse_by = -comp.delta if metric.higher_is_better else comp.delta
    effect = config.min_effect_for(res.name, metric, comp.baseline)
    record["min_effect"] = effect
    text = f"Δ {comp.delta:+.4g} vs baseline on {comp.n} shared samples, one-sided p = {comp.p_value:.3g}"
    if role == "primary" and method != "none" and family_size > 1:
        text += f" (adjusted {p_adj:.3g} for {family_size} primary metrics, {method})"
    if worse_by > 0 and p_adj < config.alpha and worse_by > effect:
        if role == "guard":
            return "warn", [f"{res.name} regressed (guard metric: warns, does not fail): {text} < alpha "
                            f"{config.alpha:g}, drop {worse_by:.4g} > min effect {effect:.4g}"], record
        return "fail", [f"{res.name} regressed: {text} < alpha {config.alpha:g}, drop {worse_by:.4g} > min "
                        f"effect {effect:.4g}"], record
    if worse_by > 0 and p_adj < config.alpha:
        return "pass", [f"{text}: significant but below the min effect {effect:.4g}"], record
    return "pass", [f"{text}: no significant drop"], record


def compare_all(results: dict[str, MetricResult], ids: list[str], config: GateConfig,
                baseline: Baseline) -> dict[str, tuple[str, list[str], dict | None]]:
    """Status, reasons and comparison record of every metric against the baseline verdict.

    Comparisons over the same number of shared samples are resampled together: one set of bootstrap draws, one
    matrix product per chunk for all metrics (the same resampled indices for candidate and baseline, and for
    every metric). The primary metrics form one family whose p values are adjusted by ``config.correction``
    (Westfall-Young max-T over swaps of the paired rows by default); guard metrics are tested alone and only warn.
    """
    out: dict[str, tuple[str, list[str], dict | None]] = {}
    pending: dict[int, list[_Pending]] = {}
    for name, res in results.items():
        prepared = _prepare(res, ids, config, baseline)
        if isinstance(prepared, _Pending):
            pending.setdefault(prepared.cand.shape[0], []).append(prepared)
        else:
            status, reasons, record = prepared
            if status == "inconclusive" and config.role(name) == "guard":
                status, reasons = "warn", [r + " (guard metric: warns only)" for r in reasons]
            if record is not None and record.get("role"):
                record["status"] = status
            out[name] = (status, reasons, record)
    flat: list[_Pending] = []
    for n_shared, group in pending.items():
        items = [(p.res.metric, arr) for p in group for arr in (p.cand, p.base)]
        draws = bootstrap_many(items, resamples=config.bootstrap, seed=config.seed)
        expand = expansion(n_shared, config.alpha)
        for k, p in enumerate(group):
            p.expand = expand
            p.draws = (draws[2 * k], draws[2 * k + 1])
            if p.res.metric.test == "sign":  # the win rate against the fixed 0.5 of "as good as the baseline"
                p.draws = (draws[2 * k], np.full_like(draws[2 * k], 0.5))
            p.comp = _test(p)
            flat.append(p)
    primary = [p for p in flat if config.role(p.res.name) == "primary"]
    adjusted, method = _family(primary, config)
    for p in flat:
        status, reasons, record = _finish(p, adjusted.get(p.res.name, p.comp.p_value),  # type: ignore[union-attr]
                                          method, len(primary), config)
        record["status"] = status
        out[p.res.name] = (status, reasons, record)
    return {name: out[name] for name in results}


def compare(res: MetricResult, ids: list[str], config: GateConfig, baseline: Baseline) -> tuple[str, list[str],
                                                                                              dict | None]:
    """One metric against the baseline verdict (see ``compare_all``)."""
    return compare_all({res.name: res}, ids, config, baseline)[res.name]


def check_roles(results: dict[str, MetricResult], config: GateConfig) -> None:
    """Primary and guard metrics must be computed and have a paired test (a limit belongs in thresholds)."""
    for key in ("primary", "guard"):
        names = getattr(config, key)
        missing = [m for m in names if m not in results]
        if missing:
            raise UsageError(f"{key} metric{'s' if len(missing) > 1 else ''} {', '.join(missing)} not computed",
                             "add it to --metrics, or remove it from gate." + key)
        untested = [m for m in names if results[m].metric.test is None or results[m].metric.higher_is_better is None]
        if untested:
            raise UsageError(f"{', '.join(untested)} has no paired test against the baseline, so it cannot be a "
                             f"{key} metric", "give it a threshold instead (e.g. latency_p95<=2.5)")


def judge(results: dict[str, MetricResult], ids: list[str], config: GateConfig,
          baseline: Baseline | None) -> tuple[str, dict[str, dict]]:
    """Overall result and, per metric, {status, reasons, threshold, threshold_status, baseline}.

    ``threshold_status`` is the absolute limit's own outcome (None without a threshold) and ``baseline.status``
    the regression test's, so the two are reported apart; ``status`` is the worse of them. Missing threshold,
    primary or guard metrics are errors.
    """
    missing = [m for m in config.thresholds if m not in results]
    if missing:
        raise UsageError(f"no value for threshold metric{'s' if len(missing) > 1 else ''} {', '.join(missing)}",
                         "add the metric to --metrics, or remove its threshold")
    check_roles(results, config)
    compared = compare_all(results, ids, config, baseline) if baseline is not None else {}
    out: dict[str, dict] = {}
    for name, res in results.items():
        status, reasons = judge_threshold(res, config)
        thr = config.thresholds.get(name)
        thr_status = status if thr is not None else None
        record = None
        if name in compared:
            b_status, b_reasons, record = compared[name]
            reasons = reasons + b_reasons
            status = worst(status, b_status)
        why = res.extra.get("inconclusive")
        if why and not any(why in r for r in reasons):  # a judge failure with nothing else to report it
            status = worst(status, "warn" if config.role(name) == "guard" else "inconclusive")
            reasons = reasons + [f"{name}: {why}"]
        out[name] = {"status": status, "reasons": reasons, "threshold": thr.to_json() if thr else None,
                     "threshold_status": thr_status, "baseline": record,
                     "role": config.role(name) if res.metric.test and res.metric.higher_is_better is not None
                     else None}
    statuses = [v["status"] for v in out.values()]
    result = "fail" if "fail" in statuses else "inconclusive" if "inconclusive" in statuses else "pass"
    return result, out


def worst(a: str, b: str) -> str:
    order = {"pass": 0, "warn": 1, "inconclusive": 2, "fail": 3}
    return a if order[a] >= order[b] else b


def exit_code(result: str, config: GateConfig) -> int:
    if result == "fail":
        return 1
    if result == "inconclusive":
        return 1 if config.on_inconclusive == "fail" else 0
    return 0
