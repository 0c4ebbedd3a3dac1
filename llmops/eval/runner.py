"""One evaluation from samples + generations to the verdict dict: metrics with CIs, the gate, model/data identity.

The verdict is the contract with later steps (promote reads ``result``, ``model.version`` and ``data.hash``; the
next evaluation reads ``samples`` to compare sample by sample). Its shape is documented in
docs/actions/evaluate-and-gate.md.
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import math
from pathlib import Path

import numpy as np

from llmops import __version__
from llmops.errors import UsageError
from llmops.eval.backends import Generations
from llmops.eval.config import GateConfig
from llmops.eval.data import EvalData
from llmops.eval.gate import VERDICT_SCHEMA, Baseline, MetricResult, judge
from llmops.eval.metrics import EvalRun, MetricUnavailable, get_metric
from llmops.eval.stats import bootstrap_many, percentile_ci
from llmops.redact import scrub_known

# Computed whenever the run has what they need (timings, token counts, prices); silently skipped otherwise.
log = logging.getLogger(__name__)
AUTO_METRICS = ["latency_p50", "latency_p95", "latency_p99", "tokens_per_s", "output_length", "cost"]
MODEL_INFO_FILE = "llmops-model.json"
MODEL_INFO_KEYS = ("model_version", "version", "base_model", "git_sha", "commit", "created", "run_id", "dataset_hash")


def prompt_text(sample) -> str:
    """The question as a judge reads it: the prompt, or the chat turns as ``role: content`` lines."""
    if sample.messages is None:
        return sample.prompt or ""
    return "\n".join(f"{m['role']}: {m['content']}" for m in sample.messages)


def build_run(data: EvalData, gens: Generations, *, ref_scores=None, prices=None, backend: str = "",
              baseline: Baseline | None = None, judge=None) -> EvalRun:
    items = gens.items
    return EvalRun(ids=[s.id for s in data.samples], references=[s.reference for s in data.samples],
                   predictions=[g.text for g in items], latencies=[g.latency_s for g in items],
                   prompt_tokens=[g.prompt_tokens for g in items], output_tokens=[g.output_tokens for g in items],
                   generation_seconds=gens.seconds, latency_rows=gens.latency_rows, throughput=gens.throughput,
                   ref_scores=ref_scores, prices=dict(prices or {}),
                   backend=backend, asserts=[s.asserts for s in data.samples], tools=[s.tools for s in data.samples],
                   prompts=[prompt_text(s) for s in data.samples], judge=judge,
                   baseline_outputs=baseline.outputs if baseline is not None else None)


def compute_metrics(run: EvalRun, requested: list[str], config: GateConfig) -> tuple[dict[str, MetricResult],
                                                                                      dict[str, str]]:
    """Requested metrics must be computable (else a UsageError saying why); the auto metrics are best effort."""
    results: dict[str, MetricResult] = {}
    skipped: dict[str, str] = {}
    for name in requested + [m for m in AUTO_METRICS if m not in requested]:
        metric = get_metric(name, **config.metric_options.get(name, {}))
        try:
            mv = metric.compute(run)
        except MetricUnavailable as exc:
            if name in requested:
                raise UsageError(f"cannot compute {name}: {exc}", "drop it from --metrics/--thresholds, or "
                                 "use a backend that provides it") from None
            skipped[name] = str(exc)
            continue
        n = int(mv.extra.get("rows_measured", len(run)))  # latency of an endpoint: the rows sent alone
        results[name] = MetricResult(name, metric, mv.value, n, mv.stats, None, mv.extra)
    with_stats = [r for r in results.values() if r.stats is not None]
    if len(run) > 1:
        draws = bootstrap_many([(r.metric, r.stats) for r in with_stats], resamples=config.bootstrap,
                               seed=config.seed)
        for res, values in zip(with_stats, draws, strict=True):
            res.ci = percentile_ci(values)
    return results, skipped


def read_model_info(model_dir: str | Path | None) -> dict:
    """The training helper's llmops-model.json (model_version etc.), read defensively: bad files are ignored."""
    if not model_dir:
        return {}
    path = Path(model_dir) / MODEL_INFO_FILE
    if not path.is_file():
        return {}
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        log.warning(f"ignoring {path}: not valid JSON ({exc})", extra={"file": str(path)})
        return {}
    if not isinstance(doc, dict):
        log.warning(f"ignoring {path}: expected a JSON object", extra={"file": str(path)})
        return {}
    return {k: doc[k] for k in MODEL_INFO_KEYS if isinstance(doc.get(k), (str, int, float))}


def _clean(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, (np.floating, np.integer)):
        return _clean(x.item())
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def _rows(stats: np.ndarray) -> list:
    if np.all(stats == np.round(stats)):
        stats = stats.astype(np.int64)
    return stats[:, 0].tolist() if stats.shape[1] == 1 else stats.tolist()


def build_verdict(*, data: EvalData, gens: Generations, results: dict[str, MetricResult], skipped: dict[str, str],
                  config: GateConfig, baseline: Baseline | None, model: dict, generation: dict | None = None,
                  settings_check: dict | None = None) -> dict:
    """The verdict; ``generation`` = settings.generation_settings, ``settings_check`` = settings.check."""
    ids = [s.id for s in data.samples]
    result, judged = judge(results, ids, config, baseline)
    metrics = {}
    for name, res in results.items():
        m = res.metric
        metrics[name] = {"value": res.value, "ci": list(res.ci) if res.ci else None, "n": res.n, **m.describe(),
                         "extra": res.extra, **judged[name],
                         "min_effect": m.default_min_effect if m.test else None}
        if m.test and name in config.min_effect:
            metrics[name]["min_effect"] = config.min_effect[name]
    family = [n for n, m in judged.items() if m["role"] == "primary" and (m["baseline"] or {}).get("p_raw")
              is not None]
    verdict = {
        "schema": VERDICT_SCHEMA,
        "result": result,
        "checks": checks(judged),
        "on_inconclusive": config.on_inconclusive,
        "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "tool": {"name": "llmops-actions", "version": __version__},
        "model": model,
        "backend": gens.info,
        "generation": generation,
        "data": {"path": data.path, "hash": data.hash, "rows": data.rows, "n": len(data)},
        "seed": config.seed,
        "gate": {"alpha": config.alpha, "min_samples": config.min_samples, "on_inconclusive": config.on_inconclusive,
                 "bootstrap": config.bootstrap, "seed": config.seed, "min_effect": config.min_effect,
                 "thresholds": {k: v.to_json() for k, v in config.thresholds.items()}, "sources": config.sources,
                 "correction": config.correction, "primary": config.primary, "guard": config.guard,
                 "family": family, "alpha_means": alpha_means(config, family)},
        "baseline": None if baseline is None else {
            "path": baseline.path, "model_version": (baseline.verdict.get("model") or {}).get("version"),
            "data_hash": (baseline.verdict.get("data") or {}).get("hash"), "result": baseline.verdict.get("result"),
            "settings": settings_check},
        "metrics": metrics,
        "skipped_metrics": skipped,
        "samples": {"ids": ids, "stats": {name: _rows(res.stats) for name, res in results.items()
                                          if res.stats is not None and res.metric.test},
                    "outputs": [g.text for g in gens.items]},  # the next run's pairwise judge reads them
    }
    return _clean(verdict)


def checks(judged: dict[str, dict]) -> dict[str, str]:
    """The two kinds of checks apart: absolute thresholds, and the regression tests against the baseline."""
    thr = [m["threshold_status"] for m in judged.values() if m.get("threshold_status")]
    reg = [(m["baseline"] or {}).get("status") for m in judged.values()]
    reg = [s for s in reg if s]

    def overall(statuses: list[str]) -> str:
        for word in ("fail", "inconclusive", "warn"):
            if word in statuses:
                return word
        return "pass" if statuses else "none"
    return {"thresholds": overall(thr), "regression": overall(reg)}


def alpha_means(config: GateConfig, family: list[str]) -> str:
    """One sentence: what alpha bounds in this run."""
    if not family:
        return (f"alpha {config.alpha:g}: no metric was tested against a baseline in this run; thresholds are "
                "absolute limits, not tests")
    if config.correction == "none" and len(family) > 1:
        return (f"alpha {config.alpha:g} per metric (correction none): a candidate of the baseline's quality fails "
                f"up to {len(family)} x alpha of the time")
    return (f"alpha {config.alpha:g} bounds the chance that a candidate of the baseline's quality fails the gate "
            f"on any of its {len(family)} primary metric{'s' if len(family) > 1 else ''} ({config.correction}"
            f"{' adjusted' if len(family) > 1 else ''} p values); guard metrics only warn and thresholds are "
            "absolute limits outside this bound")


def write_json(path: str | Path, doc: dict) -> Path:
    path = Path(path)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(scrub_known(json.dumps(doc, ensure_ascii=False, indent=1)) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def write_predictions(path: str | Path, data: EvalData, gens: Generations) -> None:
    """Rows usable as ``--predictions`` later (id, prompt, reference, prediction, timings, token counts)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for s, g in zip(data.samples, gens.items, strict=True):
            row = {"id": s.id, **({"messages": s.messages} if s.is_chat else {"prompt": s.prompt}),
                   "reference": s.reference, "prediction": g.text, "latency_s": g.latency_s,
                   "prompt_tokens": g.prompt_tokens, "output_tokens": g.output_tokens}
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
