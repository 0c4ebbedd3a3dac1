"""Assertions as metrics: each is the pass rate of a per-row check, gated like exact match (thresholds, McNemar).

    json_valid       the output parses as JSON (one surrounding markdown code fence is allowed)
    json_schema      ... and validates against a JSON Schema (jsonschema, the schema's own draft)
    regex            re.search(pattern, output) matches
    contains         the output contains the string (or every string of a list)
    not_contains     the output contains none of the strings
    starts_with      the output, leading whitespace stripped, starts with the string (or one of a list)
    tool_call_valid  the output is an OpenAI tool call (``{"tool_calls": [...]}``, the list itself, or one
                     ``{"name", "arguments"}``) naming only declared tools, with arguments valid for their schema

Where the spec comes from, per row: the eval row's ``"assert": {"regex": "^yes"}`` (``"tools"`` for
``tool_call_valid``), else the global ``metric_options: {regex: {value: "^yes"}}``; a file path (ending .json)
is read for schemas and tools. Rows with neither are *not applicable* and left out: the stats are
``(passed, applicable)`` per row, the value is passed / applicable, and McNemar compares the rows applicable in
both runs. ``ignore_case: true`` (contains, not_contains, starts_with, regex) compares case-insensitively.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from llmops.errors import UsageError
from llmops.eval.metric_base import EvalRun, Metric, MetricUnavailable, MetricValue, register

FENCE = re.compile(r"^\s*```[\w-]*\s*\n(.*?)\n?\s*```\s*$", re.S)
NOT_SET = object()


def parse_json(text: str) -> Any:
    """The JSON value of an output (a surrounding ```json fence allowed); NOT_SET when it does not parse."""
    m = FENCE.match(text)
    try:
        return json.loads(m.group(1) if m else text)
    except (ValueError, TypeError):
        return NOT_SET


def _load_spec(spec: Any, what: str) -> Any:
    if isinstance(spec, str) and spec.endswith(".json"):
        try:
            return json.loads(Path(spec).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UsageError(f"{what}: cannot read {spec}: {exc}", "give a JSON file or the value inline") from None
    return spec


def _validator(schema: Any, what: str):
    from jsonschema import exceptions, validators

    if not isinstance(schema, dict):
        raise UsageError(f"{what}: a JSON Schema must be an object, got {type(schema).__name__}")
    cls = validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except exceptions.SchemaError as exc:
        raise UsageError(f"{what}: invalid JSON Schema: {exc.message}") from None
    return cls(schema)


class _Assertion(Metric):
    higher_is_better = True
    test = "mcnemar"
    default_min_effect = 0.01
    unit = "pass rate"
    option_defaults: ClassVar[dict[str, Any]] = {"value": None}
    default_value: ClassVar[Any] = None  # applies to every row without being asked (json_valid)
    row_key: ClassVar[str] = ""  # the eval-row field besides "assert" (tools)

    def check(self, output: str, spec: Any) -> bool:
        raise NotImplementedError

    def prepare(self, spec: Any) -> Any:
        """Turn a spec into what ``check`` uses (compiled regex, schema validator); errors name the spec."""
        return spec

    def compute(self, run: EvalRun) -> MetricValue:
        glob = self.options["value"] if self.options["value"] is not None else self.default_value
        glob = self.prepare(_load_spec(glob, f"metric_options.{self.name}.value")) if glob is not None else None
        rows = run.asserts or [None] * len(run)
        extra_rows = getattr(run, self.row_key) if self.row_key else None
        cache: dict[str, Any] = {}
        passed, applicable, failed = np.zeros(len(run)), np.zeros(len(run)), []
        for i, (pred, asserts) in enumerate(zip(run.predictions, rows, strict=True)):
            spec = (asserts or {}).get(self.name, NOT_SET)
            if spec is NOT_SET and extra_rows is not None and extra_rows[i] is not None:
                spec = extra_rows[i]
            if spec is NOT_SET:
                spec = glob
            else:
                key = json.dumps(spec, sort_keys=True, default=str)
                if key not in cache:
                    cache[key] = self.prepare(_load_spec(spec, f"row {run.ids[i]}: assert.{self.name}"))
                spec = cache[key]
            if spec is None or spec is False:
                continue
            applicable[i] = 1
            if self.check(pred, spec):
                passed[i] = 1
            elif len(failed) < 20:
                failed.append(run.ids[i])
        if not applicable.any():
            raise MetricUnavailable(f"{self.name} has nothing to check: set metric_options.{self.name}.value, or "
                                    f"an \"assert\": {{\"{self.name}\": ...}} field on eval rows")
        stats = np.column_stack([passed, applicable])
        return MetricValue(self.aggregate(stats), stats, {"applicable": int(applicable.sum()),
                                                         "failed_ids": failed})

    def from_sums(self, totals: np.ndarray, counts: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return totals[:, 0] / totals[:, 1]

    def settings(self) -> dict[str, Any]:
        value = self.options["value"]
        out: dict[str, Any] = {"check": self.name}
        if value is not None:
            out["spec"] = hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:12]
        for key in sorted(set(self.options) - {"value"}):
            out[key] = self.options[key]
        return out


def _strings(spec: Any, name: str) -> list[str]:
    items = spec if isinstance(spec, list) else [spec]
    if not items or not all(isinstance(s, str) for s in items):
        raise UsageError(f"{name}: expected a string or a list of strings, got {spec!r}")
    return items


@register
class JsonValid(_Assertion):
    name = "json_valid"
    default_value = True

    def check(self, output: str, spec: Any) -> bool:
        return parse_json(output) is not NOT_SET


@register
class JsonSchema(_Assertion):
    name = "json_schema"

    def prepare(self, spec: Any) -> Any:
        return _validator(spec, self.name)

    def check(self, output: str, spec: Any) -> bool:
        value = parse_json(output)
        return value is not NOT_SET and spec.is_valid(value)


class _Text(_Assertion):
    option_defaults: ClassVar[dict[str, Any]] = {"value": None, "ignore_case": False}

    def prepare(self, spec: Any) -> Any:
        items = _strings(spec, self.name)
        return [s.lower() for s in items] if self.options["ignore_case"] else items

    def text(self, output: str) -> str:
        return output.lower() if self.options["ignore_case"] else output


@register
class Regex(_Text):
    name = "regex"

    def prepare(self, spec: Any) -> Any:
        try:
            return [re.compile(p, re.I if self.options["ignore_case"] else 0) for p in _strings(spec, self.name)]
        except re.error as exc:
            raise UsageError(f"regex: invalid pattern {spec!r}: {exc}") from None

    def check(self, output: str, spec: Any) -> bool:
        return all(p.search(output) for p in spec)


@register
class Contains(_Text):
    name = "contains"

    def check(self, output: str, spec: Any) -> bool:
        return all(s in self.text(output) for s in spec)


@register
class NotContains(_Text):
    name = "not_contains"

    def check(self, output: str, spec: Any) -> bool:
        return not any(s in self.text(output) for s in spec)


@register
class StartsWith(_Text):
    name = "starts_with"

    def check(self, output: str, spec: Any) -> bool:
        return self.text(output).lstrip().startswith(tuple(spec))


def tool_calls(value: Any) -> list[tuple[Any, Any]] | None:
    """(name, arguments) of each call in an OpenAI message / tool_calls list / single call; None if not one."""
    if isinstance(value, dict) and "tool_calls" in value:
        value = value["tool_calls"]
    items = value if isinstance(value, list) else [value]
    calls = []
    for item in items:
        if not isinstance(item, dict):
            return None
        fn = item.get("function", item)
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            return None
        args = fn.get("arguments", {})
        if isinstance(args, str):
            args = parse_json(args)
        calls.append((fn["name"], args))
    return calls or None


@register
class ToolCallValid(_Assertion):
    name = "tool_call_valid"
    row_key = "tools"

    def prepare(self, spec: Any) -> Any:
        if spec is True:
            raise UsageError("tool_call_valid needs the declared tools", "give the row's \"tools\" or "
                             "metric_options.tool_call_valid.value (a tools list or a .json file)")
        if not isinstance(spec, list):
            raise UsageError(f"tool_call_valid: tools must be a list of OpenAI tool objects, got {spec!r}")
        out = {}
        for tool in spec:
            fn = tool.get("function", tool) if isinstance(tool, dict) else None
            if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                raise UsageError(f"tool_call_valid: a tool without a function name: {tool!r}")
            out[fn["name"]] = _validator(fn.get("parameters") or {"type": "object"}, f"tool {fn['name']}")
        return out

    def check(self, output: str, spec: Any) -> bool:
        value = parse_json(output)
        calls = tool_calls(value) if value is not NOT_SET else None
        if not calls:
            return False
        return all(name in spec and isinstance(args, dict) and spec[name].is_valid(args) for name, args in calls)
