"""PromQL templates the canary analysis renders, one per measured quantity, with the variables it fills in.

Placeholders: ``{namespace}`` (regex; ``.*`` when none is given, which also matches series without the label),
``{deployment}`` (the canary's or the stable's Deployment), ``{version}`` (its ``model_version`` label value) and
``{window}`` (the analysis window as a PromQL duration, e.g. ``30s``). ``{{``/``}}`` are literal braces.

Metric names and the value templates are the model server's (llmops.monitoring.queries); requests and errors
are counts over the window (``increase``) because the error-rate test needs counts, not a ratio. Any template can
be replaced from a YAML or JSON file (``queries:`` input) mapping a name below to PromQL; unknown names are an
error.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from llmops.errors import InputError, UsageError
from llmops.monitoring import queries as monitoring

_SEL = '{{model_version="{version}", namespace=~"{namespace}"}}'
_ERR = '{{model_version="{version}", namespace=~"{namespace}", status="error"}}'

DEFAULTS = {
    "requests": f"sum(increase(llm_requests_total{_SEL}[{{window}}]))",
    "errors": f"sum(increase(llm_requests_total{_ERR}[{{window}}]))",
    **{name: monitoring.TEMPLATES[name] for name in ("latency_p99", "ttft_p95", "cost_per_request", "quality")},
}
VARIABLES = ("namespace", "deployment", "version", "window")
_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def load(path: str | None) -> dict[str, str]:
    """The default templates, overridden by a YAML/JSON file of ``name: promql``."""
    templates = dict(DEFAULTS)
    if not path:
        return templates
    import yaml

    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read queries file {path}: {exc.strerror}", "check the queries path") from None
    try:
        data = yaml.safe_load(text) if not path.endswith(".json") else json.loads(text)
    except (yaml.YAMLError, ValueError) as exc:
        raise InputError(f"queries file {path} is not valid YAML/JSON: {exc}", file=path) from None
    if not isinstance(data, dict):
        raise InputError(f"queries file {path} must map names to PromQL strings", file=path)
    for name, template in data.items():
        if name not in DEFAULTS:
            raise InputError(f"unknown query name {name!r} in {path}", f"use: {', '.join(DEFAULTS)}", file=path)
        if not isinstance(template, str) or not template.strip():
            raise InputError(f"query {name!r} in {path} must be a non-empty PromQL string", file=path)
        render(template, version="v", window="1s", namespace="", deployment="d")  # placeholders checked early
        templates[name] = template
    return templates


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(template: str, *, version: str, window: str, namespace: str, deployment: str) -> str:
    if namespace and not _NAMESPACE.fullmatch(namespace):
        raise UsageError(f"namespace must be a Kubernetes namespace name, got {namespace!r}")
    values = {"version": escape(version), "window": window, "namespace": namespace or ".*",
              "deployment": escape(deployment)}
    try:
        return template.format_map(values)
    except (KeyError, IndexError) as exc:
        raise UsageError(f"unknown placeholder {exc} in query template {template!r}",
                         f"templates may use {', '.join('{' + v + '}' for v in VARIABLES)}; write {{{{ }}}} for "
                         "literal braces") from None
    except ValueError as exc:
        raise UsageError(f"bad query template {template!r}: {exc}",
                         "write {{ and }} for the braces of PromQL label matchers") from None


def duration(seconds: float) -> str:
    """A PromQL duration for a window in seconds (whole seconds, at least 1s)."""
    return f"{max(1, round(seconds))}s"
