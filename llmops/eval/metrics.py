"""The metric registry (sacrebleu-style): names, aliases and look-ups over the metrics that ``metric_base``'s
``@register`` collects (the interface itself lives in ``metric_base`` and is importable from here too).


A metric turns an ``EvalRun`` (samples, predictions, timings, token counts) into a ``MetricValue``: the corpus
value plus, for metrics that support a paired test against a baseline, one row of *sufficient statistics* per
sample (``stats``, shape ``(n, k)``). The corpus value is always a function of the column sums (BLEU, chrF,
perplexity) or means (ROUGE, accuracy) of those rows, so a bootstrap resample is a weighted sum
(``aggregate_weighted``) instead of a recomputation from text. The rows are stored in the verdict so the next run
can be compared sample by sample.

    get_metric("bleu")          -> BLEU instance (UsageError on an unknown name, with the known names)
    resolve_names(["rouge"])    -> ["rouge1", "rouge2", "rouge_l"] (aliases and spellings normalised)
"""
from __future__ import annotations

import re
from typing import Any

from llmops.errors import UsageError
from llmops.eval.metric_base import (  # noqa: F401 - the interface, importable from here as before
    REGISTRY,
    EvalRun,
    Metric,
    MetricUnavailable,
    MetricValue,
    direction_word,
    register,
)

ALIASES = {
    "rouge": ["rouge1", "rouge2", "rouge_l"], "rougel": ["rouge_l"], "rouge_l": ["rouge_l"],
    "rougelsum": ["rouge_l"], "em": ["exact_match"], "exact": ["exact_match"], "ppl": ["perplexity"],
    "latency": ["latency_p50", "latency_p95", "latency_p99"], "throughput": ["tokens_per_s"],
    "tokens_per_second": ["tokens_per_s"], "chrf": ["chrf"], "acc": ["accuracy"], "judge": ["judge_pairwise"],
    "win_rate": ["judge_pairwise"], "rubric": ["judge_rubric"],
}


def _ensure_loaded() -> None:
    from llmops.eval import (  # noqa: F401 - registers the built-in metrics
        metrics_assert,
        metrics_judge,
        metrics_system,
        metrics_text,
    )


def canonical(name: str) -> str:
    """``rouge-L`` / ``rougeL`` / ``Exact-Match`` -> ``rouge_l`` / ``exact_match``; ``hf:x`` keeps its case."""
    name = name.strip()
    if name.lower().startswith("hf:"):
        return "hf:" + name[3:].strip()
    return re.sub(r"[\s\-]+", "_", name).lower()


def resolve_names(names: list[str]) -> list[str]:
    """Expand aliases, normalise spellings, drop duplicates (order kept); unknown names raise UsageError."""
    _ensure_loaded()
    out: list[str] = []
    unknown: list[str] = []
    for raw in names:
        if not raw.strip():
            continue
        name = canonical(raw)
        expanded = ALIASES.get(name, ALIASES.get(name.replace("_", ""), [name]))
        for item in expanded:
            if item.startswith("hf:") and len(item) > 3 or item in REGISTRY:
                if item not in out:
                    out.append(item)
            else:
                unknown.append(raw)
    if unknown:
        raise UsageError(f"unknown metric{'s' if len(unknown) > 1 else ''}: {', '.join(map(repr, unknown))}",
                         f"use one of: {', '.join(known_names())} (or hf:<name> for a Hugging Face evaluate metric)")
    return out


def known_names() -> list[str]:
    _ensure_loaded()
    return sorted(REGISTRY) + sorted(k for k in ALIASES if k not in REGISTRY)


def get_metric(name: str, **options: Any) -> Metric:
    names = resolve_names([name])
    if len(names) != 1:
        raise UsageError(f"{name!r} names several metrics ({', '.join(names)}); ask for one at a time")
    resolved = names[0]
    if resolved.startswith("hf:"):
        from llmops.eval.hf_plugin import HFMetric

        return HFMetric(resolved[3:], **options)
    return REGISTRY[resolved](**options)


def kebab(name: str) -> str:
    """Output name for a metric: ``exact_match`` -> ``exact-match``, ``hf:bertscore`` -> ``hf-bertscore``."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
