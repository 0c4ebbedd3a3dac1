"""PromQL templates the canary analysis renders, one per measured quantity, with the variables it fills in.

Placeholders: ``{namespace}`` (regex; ``.*`` when none is given, which also matches series without the label),
``{deployment}`` (the canary's or the stable's Deployment), ``{version}`` (its ``model_version`` label value) and
``{window}`` (the analysis window as a PromQL duration, e.g. ``30s``). ``{{``/``}}`` are literal braces.

The names are the judge's inputs (llmops.canary.judge), so another server's metrics (vLLM, TGI) are just another
template set with the same names: ``requests`` and ``errors`` are counts over the window (``increase``), because
the tests need counts, not ratios; ``latency_seconds`` and ``ttft_seconds`` are cumulative histogram buckets over
the window, one series per ``le`` (``sum by (le) (increase(..._bucket[...]))``), because latency is judged from
bucket counts, never from a quantile; ``cost_per_request`` and ``quality`` are gauges (one number). Any template can
be replaced from a YAML or JSON file (``queries:`` input) mapping a name below to PromQL; unknown names are an
error, and so is a template that renders the same PromQL for canary and stable (it would compare the traffic with
itself). Filling a template (escaping, the namespace check, placeholder errors) is llmops.monitoring.queries'
``fill``, the one PromQL renderer (``render`` here).
"""
from __future__ import annotations

from llmops.errors import InputError, UsageError
from llmops.inputs import load_document
from llmops.monitoring import queries as monitoring
from llmops.monitoring.queries import VARIABLES, duration  # noqa: F401 - the one PromQL module's, used from here
from llmops.monitoring.queries import fill as render

_SEL, _ERR = monitoring.SELECTOR, monitoring.ERRORS_SELECTOR

DEFAULTS = {
    "requests": f"sum(increase(llm_requests_total{_SEL}[{{window}}]))",
    "errors": f"sum(increase(llm_requests_total{_ERR}[{{window}}]))",
    "latency_seconds": f"sum by (le) (increase(llm_request_duration_seconds_bucket{_SEL}[{{window}}]))",
    "ttft_seconds": f"sum by (le) (increase(llm_time_to_first_token_seconds_bucket{_SEL}[{{window}}]))",
    **{name: monitoring.TEMPLATES[name] for name in ("cost_per_request", "quality")},
}
HISTOGRAMS = ("latency_seconds", "ttft_seconds")  # templates answering one series per bucket bound (le)
RENAMED = {"latency_p99": "latency_seconds", "ttft_p95": "ttft_seconds"}


def load(path: str | None) -> dict[str, str]:
    """The default templates, overridden by a YAML/JSON file of ``name: promql``."""
    templates = dict(DEFAULTS, **read(path))
    if path:
        check_sides(templates)
    return templates


def read(path: str | None) -> dict[str, str]:
    """The templates a YAML/JSON file of ``name: promql`` overrides (names and placeholders checked)."""
    if not path:
        return {}
    data = load_document(path, "queries file")
    if not isinstance(data, dict):
        raise InputError(f"queries file {path} must map names to PromQL strings", file=path)
    templates = {}
    for name, template in data.items():
        if name in RENAMED:
            raise InputError(f"query {name!r} in {path} is now {RENAMED[name]!r}: a histogram's buckets, not a quantile",
                             f"write {RENAMED[name]}: sum by (le) (increase(<your histogram>_bucket{{{{...}}}}[{{window}}]))",
                             file=path)
        if name not in DEFAULTS:
            raise InputError(f"unknown query name {name!r} in {path}", f"use: {', '.join(DEFAULTS)}", file=path)
        if not isinstance(template, str) or not template.strip():
            raise InputError(f"query {name!r} in {path} must be a non-empty PromQL string", file=path)
        render(template, version="v", window="1s", namespace="", deployment="d")  # placeholders checked early
        templates[name] = template
    return templates


def check_sides(templates: dict[str, str]) -> None:
    """Refuse templates that cannot tell canary from stable (no {version} or {deployment} in them)."""
    for name, template in templates.items():
        a = render(template, version="canary-v", window="1s", namespace="", deployment="canary-d")
        b = render(template, version="stable-v", window="1s", namespace="", deployment="stable-d")
        if a == b:
            raise UsageError(f"query {name!r} renders the same PromQL for canary and stable ({a!r}): it would compare "
                             "the traffic with itself", "select the version with {version} or {deployment} in it")
