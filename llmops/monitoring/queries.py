"""PromQL templates, the one module that fills them: what canary analysis, presets and dashboards ask Prometheus.

Each template is a plain string with ``{version}``, ``{window}``, ``{namespace}`` and (canary templates)
``{deployment}`` placeholders (``{{``/``}}`` are literal braces, as in ``str.format``). ``fill`` is the one
renderer: it escapes the version and deployment for a PromQL string, checks the namespace is a Kubernetes name and
matches any namespace (``.*``, which also matches series without a namespace label) when none is given, and names
an unknown placeholder. ``render`` is ``fill`` for the dashboard templates below (by name or as a string) with the
window checked as a PromQL duration; ``duration`` turns seconds into one. Bad values raise ``TemplateError``, a
UsageError (exit 2 in a script) that is also a ValueError. The canary's own templates (counts over the window,
histogram buckets) are llmops.canary.queries, built from ``SELECTOR`` / ``ERRORS_SELECTOR`` here.

    render(ERROR_RATE, version="v2", window="1m") ==
        'sum(rate(llm_requests_total{model_version="v2", namespace=~".*", status="error"}[1m]))'
        ' / sum(rate(llm_requests_total{model_version="v2", namespace=~".*"}[1m]))'

Every query returns one number (an instant vector with at most one sample); no samples means "no traffic yet",
which a caller must treat as no value, not as zero. NaN (0/0) likewise means no value.
"""
from __future__ import annotations

import re

from llmops.errors import UsageError

SELECTOR = '{{model_version="{version}", namespace=~"{namespace}"}}'
ERRORS_SELECTOR = '{{model_version="{version}", namespace=~"{namespace}", status="error"}}'
_SEL, _ERR = SELECTOR, ERRORS_SELECTOR
VARIABLES = ("namespace", "deployment", "version", "window")

ERROR_RATE = (
    f'sum(rate(llm_requests_total{_ERR}[{{window}}]))'
    f" / sum(rate(llm_requests_total{_SEL}[{{window}}]))"
)
"""Fraction of inference requests answered with a 5xx (0..1)."""

REQUEST_RATE = f"sum(rate(llm_requests_total{_SEL}[{{window}}]))"
"""Inference requests per second, all statuses."""

LATENCY_P99 = (
    f"histogram_quantile(0.99, sum by (le) (rate(llm_request_duration_seconds_bucket{_SEL}[{{window}}])))"
)
"""99th percentile of whole-request latency, seconds."""

LATENCY_P95 = LATENCY_P99.replace("0.99", "0.95", 1)
"""95th percentile of whole-request latency, seconds."""

TTFT_P95 = (
    f"histogram_quantile(0.95, sum by (le) (rate(llm_time_to_first_token_seconds_bucket{_SEL}[{{window}}])))"
)
"""95th percentile of time to first token, seconds."""

TPOT_P95 = (
    f"histogram_quantile(0.95, sum by (le) (rate(llm_time_per_output_token_seconds_bucket{_SEL}[{{window}}])))"
)
"""95th percentile of time per output token, seconds."""

COST_PER_REQUEST = (
    f"sum(rate(llm_cost_usd_total{_SEL}[{{window}}])) / sum(rate(llm_requests_total{_SEL}[{{window}}]))"
)
"""Mean cost of one request (price-table currency)."""

COST_PER_HOUR = f"sum(rate(llm_cost_usd_total{_SEL}[{{window}}])) * 3600"
"""Spend rate, currency per hour."""

OUTPUT_TOKENS_PER_SECOND = f"sum(rate(llm_output_tokens_total{_SEL}[{{window}}]))"
"""Generated tokens per second."""

QUALITY = f"avg(avg_over_time(llm_quality_score{_SEL}[{{window}}]))"
"""Online quality gauge averaged over the window and over pods (0..1)."""

TEMPLATES = {
    "error_rate": ERROR_RATE,
    "request_rate": REQUEST_RATE,
    "latency_p99": LATENCY_P99,
    "latency_p95": LATENCY_P95,
    "ttft_p95": TTFT_P95,
    "tpot_p95": TPOT_P95,
    "cost_per_request": COST_PER_REQUEST,
    "cost_per_hour": COST_PER_HOUR,
    "output_tokens_per_second": OUTPUT_TOKENS_PER_SECOND,
    "quality": QUALITY,
}

_DURATION = re.compile(r"(\d+(ms|s|m|h|d|w|y))+")
_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


class TemplateError(UsageError, ValueError):
    """A PromQL template or a value filled into it is wrong."""


def escape_label_value(value: str) -> str:
    """Escape a value for a double-quoted PromQL string."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def fill(template: str, *, version: str, window: str, namespace: str | None = "", deployment: str = "") -> str:
    """The one renderer: ``template`` with its placeholders filled (values escaped, the namespace checked)."""
    if namespace and not _NAMESPACE.fullmatch(namespace):
        raise TemplateError(f"namespace must be a Kubernetes namespace name, got {namespace!r}")
    values = {"version": escape_label_value(version), "window": window, "namespace": namespace or ".*",
              "deployment": escape_label_value(deployment)}
    try:
        return template.format_map(values)
    except (KeyError, IndexError) as exc:
        raise TemplateError(f"unknown placeholder {exc} in query template {template!r}",
                            f"templates may use {', '.join('{' + v + '}' for v in VARIABLES)}; write {{{{ }}}} for "
                            "literal braces") from None
    except ValueError as exc:
        raise TemplateError(f"bad query template {template!r}: {exc}",
                            "write {{ and }} for the braces of PromQL label matchers") from None


def render(template: str, *, version: str, window: str = "5m", namespace: str | None = None) -> str:
    """Fill a template (a name or value of ``TEMPLATES``, or your own string with the same placeholders)."""
    if template in TEMPLATES:
        template = TEMPLATES[template]
    if not version:
        raise TemplateError("version is required")
    if not _DURATION.fullmatch(window or ""):
        raise TemplateError(f"window must be a PromQL duration such as 30s, 5m or 1h, got {window!r}")
    return fill(template, version=version, window=window, namespace=namespace)


def duration(seconds: float) -> str:
    """A PromQL duration for a window in seconds (whole seconds, at least 1s)."""
    return f"{max(1, round(seconds))}s"


def render_all(*, version: str, window: str = "5m", namespace: str | None = None) -> dict[str, str]:
    """Every template rendered for one version: ``{name: promql}``."""
    return {name: render(t, version=version, window=window, namespace=namespace) for name, t in TEMPLATES.items()}
