"""Alert rules for model servers, generated from thresholds: Prometheus rule-file YAML and a PrometheusRule manifest.

Four alerts, each per (namespace, model_version):

- ``LLMHighErrorRate``: 5xx responses / all inference requests > ``error_rate`` (a ratio, not the seed's bare rate
  of errors, which fired on busy healthy servers and stayed silent on idle broken ones).
- ``LLMHighLatencyP99``: ``histogram_quantile(0.99, sum by (le, namespace, model_version) (rate(..._bucket)))``
  above ``latency_p99_seconds``.
- ``LLMQualityDrop``: the online quality gauge (averaged over the window and pods) below ``quality_min``.
- ``LLMCostSpike``: spend rate over ``cost_window`` > ``cost_spike_factor`` x the rate over the preceding
  ``cost_baseline_window`` (and above ``cost_min_per_hour`` when set). A version with no history has no baseline and
  does not fire.

``python bin/alert_rules.py`` writes deploy/monitoring/; ``promtool check rules`` and ``promtool test rules``
(deploy/monitoring/llmops-alerts.test.yml) check the result in the unit tests.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields
from typing import Any

import yaml

from llmops.errors import UsageError

_DURATION = re.compile(r"(\d+(ms|s|m|h|d|w|y))+")
_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")
BY = "namespace, model_version"


@dataclass(frozen=True)
class AlertThresholds:
    error_rate: float = 0.05
    error_for: str = "5m"
    latency_p99_seconds: float = 5.0
    latency_for: str = "10m"
    quality_min: float = 0.7
    quality_for: str = "15m"
    cost_spike_factor: float = 3.0
    cost_window: str = "15m"
    cost_baseline_window: str = "6h"
    cost_min_per_hour: float = 0.0
    cost_for: str = "15m"
    rate_window: str = "5m"
    min_request_rate: float = 0.0
    namespace: str = ""
    group_name: str = "llmops-model-server"

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.endswith(("_for", "_window")) and not _DURATION.fullmatch(str(value)):
                raise UsageError(f"{f.name.replace('_', '-')} must be a Prometheus duration such as 5m, got "
                                 f"{value!r}")
        if not 0 < self.error_rate < 1:
            raise UsageError(f"error-rate must be a fraction between 0 and 1, got {self.error_rate}")
        if not 0 <= self.quality_min <= 1:
            raise UsageError(f"quality-min must be between 0 and 1, got {self.quality_min}")
        for name in ("latency_p99_seconds", "cost_spike_factor"):
            if not getattr(self, name) > 0:
                raise UsageError(f"{name.replace('_', '-')} must be > 0, got {getattr(self, name)}")
        for name in ("cost_min_per_hour", "min_request_rate"):
            if not getattr(self, name) >= 0:
                raise UsageError(f"{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if self.namespace and not _NAME.fullmatch(self.namespace):
            raise UsageError(f"namespace must be a Kubernetes namespace name, got {self.namespace!r}")
        if not self.group_name.strip():
            raise UsageError("group-name must not be empty")


def _sel(th: AlertThresholds, extra: str = "") -> str:
    parts = ([f'namespace="{th.namespace}"'] if th.namespace else []) + ([extra] if extra else [])
    return "{" + ", ".join(parts) + "}" if parts else ""


def _num(value: float) -> str:
    return f"{value:g}"


def _rule(alert: str, expr: str, for_: str, severity: str, summary: str, description: str) -> dict[str, Any]:
    return {"alert": alert, "expr": expr, "for": for_, "labels": {"severity": severity},
            "annotations": {"summary": summary, "description": description}}


def alert_rules(th: AlertThresholds | None = None) -> list[dict[str, Any]]:
    th = th or AlertThresholds()
    w = th.rate_window
    total = f"sum by ({BY}) (rate(llm_requests_total{_sel(th)}[{w}]))"
    errors = _sel(th, 'status="error"')
    error_expr = (f"sum by ({BY}) (rate(llm_requests_total{errors}[{w}]))"
                  f"\n/\n{total}\n> {_num(th.error_rate)}")
    if th.min_request_rate > 0:
        error_expr = f"({error_expr})\nand on ({BY})\n{total} > {_num(th.min_request_rate)}"
    latency_expr = (f"histogram_quantile(0.99, sum by (le, {BY}) "
                    f"(rate(llm_request_duration_seconds_bucket{_sel(th)}[{w}])))\n> {_num(th.latency_p99_seconds)}")
    quality_expr = f"avg by ({BY}) (avg_over_time(llm_quality_score{_sel(th)}[{w}]))\n< {_num(th.quality_min)}"
    cost_now = f"sum by ({BY}) (rate(llm_cost_usd_total{_sel(th)}[{th.cost_window}]))"
    cost_expr = (f"{cost_now} * 3600\n> {_num(th.cost_spike_factor)} * sum by ({BY}) "
                 f"(rate(llm_cost_usd_total{_sel(th)}[{th.cost_baseline_window}] offset {th.cost_window})) * 3600")
    if th.cost_min_per_hour > 0:
        cost_expr = f"({cost_expr})\n> {_num(th.cost_min_per_hour)}"
    who = "{{ $labels.model_version }} in {{ $labels.namespace }}"
    return [
        _rule("LLMHighErrorRate", error_expr, th.error_for, "critical",
              f"Model {who} answers more than {th.error_rate:.2%} of requests with errors",
              "{{ $value | humanizePercentage }} of inference requests failed (5xx) over the last " + w + "."),
        _rule("LLMHighLatencyP99", latency_expr, th.latency_for, "warning",
              f"Model {who} p99 latency is above {_num(th.latency_p99_seconds)}s",
              "p99 request latency is {{ $value | humanizeDuration }} over the last " + w + "."),
        _rule("LLMQualityDrop", quality_expr, th.quality_for, "warning",
              f"Model {who} online quality is below {_num(th.quality_min)}",
              "Mean feedback quality score is {{ $value | printf \"%.3f\" }} over the last " + w + "."),
        _rule("LLMCostSpike", cost_expr, th.cost_for, "warning",
              f"Model {who} spends more than {_num(th.cost_spike_factor)}x its usual rate",
              "Spending {{ $value | printf \"%.4g\" }} per hour over the last " + th.cost_window
              + f", more than {_num(th.cost_spike_factor)}x the rate of the " + th.cost_baseline_window + " before."),
    ]


def rules_document(th: AlertThresholds | None = None) -> dict[str, Any]:
    """A Prometheus rule file: ``{"groups": [{"name", "rules"}]}``."""
    th = th or AlertThresholds()
    return {"groups": [{"name": th.group_name, "rules": alert_rules(th)}]}


def prometheus_rule_manifest(th: AlertThresholds | None = None, *, name: str = "llmops-model-server-alerts",
                             namespace: str = "monitoring", labels: dict[str, str] | None = None) -> dict[str, Any]:
    """The same rules as a Prometheus Operator ``PrometheusRule`` (``labels`` must match its ruleSelector)."""
    for what, value in (("name", name), ("namespace", namespace)):
        if not _NAME.fullmatch(value):
            raise UsageError(f"manifest {what} must be a Kubernetes name, got {value!r}")
    meta_labels = {"app.kubernetes.io/part-of": "llmops", **(labels or {})}
    return {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
            "metadata": {"name": name, "namespace": namespace, "labels": meta_labels},
            "spec": rules_document(th)}


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _str)


def to_yaml(document: dict[str, Any], header: str = "") -> str:
    body = yaml.dump(document, Dumper=_Dumper, sort_keys=False, width=120, allow_unicode=True)
    return (f"# {header}\n" if header else "") + body


def thresholds_summary(th: AlertThresholds) -> dict[str, Any]:
    return asdict(th)
