"""The metric interface (sacrebleu-style) every metric module builds on: ``EvalRun`` (what metrics read),
``MetricValue``, the ``Metric`` base class with its fixed public methods and signature, ``MetricUnavailable``,
and the ``REGISTRY`` that ``@register`` fills. Names, aliases and look-ups are llmops.eval.metrics.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from llmops.errors import UsageError


class MetricUnavailable(Exception):
    """The run lacks what this metric needs (no timings, no token counts, no prices): the message says what."""


@dataclass
class EvalRun:
    """Everything metrics read: one entry per sample, in the same order."""

    ids: list[str]
    references: list[str]
    predictions: list[str]
    latencies: list[float | None] | None = None
    prompt_tokens: list[int | None] | None = None
    output_tokens: list[int | None] | None = None
    generation_seconds: float | None = None  # wall time of the whole generation phase
    latency_rows: list[int] | None = None  # rows whose latency is the service time (endpoint: sent alone)
    throughput: dict | None = None  # endpoint: {requests, seconds, output_tokens, concurrency} under concurrency
    ref_scores: list[tuple[float, int]] | None = None  # (sum of reference NLL, reference tokens) per sample
    prices: dict[str, float] = field(default_factory=dict)  # input_per_1k_tokens, output_per_1k_tokens
    backend: str = ""
    asserts: list[dict | None] | None = None  # per-row assertions from the eval file (metrics_assert.py)
    tools: list[list | None] | None = None  # per-row declared OpenAI tools
    prompts: list[str] | None = None  # the question as text (chat turns rendered), for judges
    baseline_outputs: dict[str, str] | None = None  # the baseline verdict's answers by sample id
    judge: Any = None  # a judge.JudgeConfig when --judge-* is given
    cache: dict[str, Any] = field(default_factory=dict)  # shared work between metrics (ROUGE scores all types once)

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class MetricValue:
    value: float
    stats: np.ndarray | None = None  # (n, k) sufficient statistics per sample, for CIs and paired tests
    extra: dict[str, Any] = field(default_factory=dict)


class Metric:
    """Base class. Subclasses set the class attributes and implement ``compute`` (and ``aggregate`` when stats)."""

    name: ClassVar[str] = ""
    higher_is_better: ClassVar[bool | None] = True  # None: informational (thresholds only, no direction)
    test: ClassVar[str | None] = None  # "bootstrap", "mcnemar" or None (no paired test against a baseline)
    default_min_effect: ClassVar[float] = 0.0  # drops smaller than this never fail the gate
    unit: ClassVar[str] = ""
    option_defaults: ClassVar[dict[str, Any]] = {}  # the options a user may set (metric_options in the config)

    def __init__(self, **options: Any) -> None:
        unknown = sorted(set(options) - set(self.option_defaults))
        if unknown:
            allowed = ", ".join(self.option_defaults) or "none"
            raise UsageError(f"metric {self.name}: unknown option{'s' if len(unknown) > 1 else ''} "
                             f"{', '.join(unknown)}", f"options of {self.name}: {allowed}")
        self.options = {**self.option_defaults, **options}

    # -- fixed public methods -------------------------------------------------------------------------------
    def compute(self, run: EvalRun) -> MetricValue:
        raise NotImplementedError

    def aggregate(self, stats: np.ndarray) -> float:
        """Corpus value from per-sample stats (n, k)."""
        return float(self.aggregate_weighted(np.ones((1, stats.shape[0])), stats)[0])

    def aggregate_weighted(self, weights: np.ndarray, stats: np.ndarray) -> np.ndarray:
        """Corpus value for each row of ``weights`` (B, n): how often each sample is drawn in a resample."""
        totals = weights @ stats  # (B, k)
        return self.from_sums(totals, weights.sum(axis=1))

    def from_sums(self, totals: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """Vectorised corpus value from summed stats (B, k) and sample counts (B,). Default: the mean of column 0."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return totals[:, 0] / counts

    def settings(self) -> dict[str, Any]:
        """The settings that change the number (written into the signature)."""
        return {}

    def signature(self) -> str:
        from llmops import __version__

        parts = [f"{k}:{v}" for k, v in self.settings().items()]
        parts.append(f"version:{self.library_version() or 'llmops-' + __version__}")
        return "|".join(parts)

    def library_version(self) -> str:
        return ""

    def describe(self) -> dict[str, Any]:
        return {"direction": direction_word(self.higher_is_better), "test": self.test, "unit": self.unit,
                "signature": self.signature()}


def direction_word(higher_is_better: bool | None) -> str:
    return {True: "higher", False: "lower", None: "none"}[higher_is_better]


# --------------------------------------------------------------------------- registry

REGISTRY: dict[str, type[Metric]] = {}


def register(cls: type[Metric]) -> type[Metric]:
    REGISTRY[cls.name] = cls
    return cls
