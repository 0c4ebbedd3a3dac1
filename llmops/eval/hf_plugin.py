"""Optional plug-in: any Hugging Face ``evaluate`` metric by name (``hf:bertscore``), never required.

It needs the ``evaluate`` package and, for most metrics, the Hub (to fetch the metric script and its model). When
either is missing the user gets a clear error naming what to do; offline runs should use the built-in metrics.
The value is the metric's main number (the key named like the metric, else the first numeric value, averaged when
it is a per-sample list). No per-sample statistics: compared against a baseline by threshold only.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from llmops.errors import InfraError, UsageError
from llmops.eval.metric_base import EvalRun, Metric, MetricValue


class HFMetric(Metric):
    test = None
    option_defaults: dict[str, Any] = {"key": None, "higher_is_better": True, "kwargs": {}}

    def __init__(self, hf_name: str, **options: Any) -> None:
        super().__init__(**options)
        self.hf_name = hf_name
        self.name = f"hf:{hf_name}"  # type: ignore[misc]
        self.higher_is_better = bool(self.options["higher_is_better"])  # type: ignore[misc]

    def _load(self):
        try:
            import evaluate
        except ImportError:
            raise UsageError(f"metric {self.name} needs the Hugging Face 'evaluate' package, which is not installed",
                             "pip install evaluate (plus what the metric needs), or use a built-in metric") from None
        offline = os.environ.get("HF_EVALUATE_OFFLINE") == "1" or os.environ.get("HF_HUB_OFFLINE") == "1"
        try:
            return evaluate.load(self.hf_name), evaluate.__version__
        except Exception as exc:  # noqa: BLE001 - evaluate raises many kinds (FileNotFoundError, ConnectionError...)
            why = "offline mode is on (HF_EVALUATE_OFFLINE/HF_HUB_OFFLINE) and it is not cached" if offline else (
                f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            raise InfraError(f"could not load Hugging Face metric {self.hf_name!r}: {why}",
                             "run once with Hub access to cache it, or use the built-in metrics (bleu, chrf, rouge, "
                             "accuracy, exact_match)") from None

    def compute(self, run: EvalRun) -> MetricValue:
        metric, version = self._load()
        self._version = version
        try:
            result = metric.compute(predictions=run.predictions, references=run.references, **self.options["kwargs"])
        except Exception as exc:  # noqa: BLE001 - a third-party metric failing is reported, not a crash
            raise UsageError(f"Hugging Face metric {self.hf_name!r} failed: {type(exc).__name__}: {exc}",
                             "check the metric's required arguments (metric_options.kwargs)") from None
        key = self.options["key"] or next((k for k in (self.hf_name, "score", "f1") if k in (result or {})), None)
        if key is None:
            key = next((k for k, v in (result or {}).items() if isinstance(v, (int, float, list))), None)
        if key is None or key not in result:
            raise UsageError(f"Hugging Face metric {self.hf_name!r} returned no usable number: {result!r}",
                             "set metric_options: {hf:NAME: {key: <result key>}}")
        value = result[key]
        value = float(np.mean(value)) if isinstance(value, list) else float(value)
        return MetricValue(value, None, {"key": key})

    def settings(self) -> dict[str, Any]:
        return {"hf": self.hf_name, "key": self.options["key"] or "auto"}

    def library_version(self) -> str:
        return "evaluate-" + getattr(self, "_version", "unknown")
