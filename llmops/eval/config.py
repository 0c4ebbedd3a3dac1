"""Gate configuration: thresholds (file or ``metric>=value`` pairs), gate policy, prices and metric options.

A thresholds file (YAML or JSON) is either a flat map ``{metric: threshold}`` or has these sections (unknown keys
are errors):

    metrics: [accuracy, bleu]            # computed in addition to --metrics
    thresholds:
      accuracy: 0.6                      # a bare number: min for higher-is-better metrics, max for lower-is-better
      bleu: ">= 20"
      latency_p95: {max: 2.0}
    gate: {alpha: 0.05, min_samples: 30, on_inconclusive: fail, bootstrap: 1000, seed: 0,
           min_effect: {bleu: 1.0, perplexity: "2%"},
           correction: westfall-young,     # or holm, none (see llmops/eval/stats.py)
           primary: [exact_match, bleu],   # decide, family-wise tested (default: every metric with a test)
           guard: [rouge]}                 # compared on their own; a regression only warns
    prices: {input_per_1k_tokens: 0.0005, output_per_1k_tokens: 0.0015}
    metric_options: {accuracy: {normalize: "lower,punct", match: prefix}, bleu: {tokenize: zh}}
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmops.errors import InputError, UsageError
from llmops.eval.metrics import REGISTRY, resolve_names
from llmops.eval.stats import CORRECTIONS
from llmops.inputs import load_document, split_list

SECTIONS = ("metrics", "thresholds", "gate", "prices", "metric_options")
GATE_KEYS = ("alpha", "min_samples", "on_inconclusive", "bootstrap", "seed", "min_effect", "correction", "primary",
             "guard")
PRICE_KEYS = ("input_per_1k_tokens", "output_per_1k_tokens")
PAIR = re.compile(r"^\s*([A-Za-z][\w:\-]*)\s*(>=|<=)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")


@dataclass
class Threshold:
    min: float | None = None
    max: float | None = None

    def violated(self, value: float) -> bool:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return True
        return (self.min is not None and value < self.min) or (self.max is not None and value > self.max)

    def text(self) -> str:
        parts = ([f">= {self.min:g}"] if self.min is not None else []) + (
            [f"<= {self.max:g}"] if self.max is not None else [])
        return ", ".join(parts)

    def to_json(self) -> dict:
        return {"min": self.min, "max": self.max}


@dataclass
class GateConfig:
    thresholds: dict[str, Threshold] = field(default_factory=dict)
    metrics: list[str] = field(default_factory=list)
    alpha: float = 0.05
    min_samples: int = 30
    on_inconclusive: str = "fail"
    bootstrap: int = 1000
    seed: int = 0
    min_effect: dict[str, str | float] = field(default_factory=dict)
    correction: str = "westfall-young"
    primary: list[str] = field(default_factory=list)  # empty: every compared metric decides (unless a guard)
    guard: list[str] = field(default_factory=list)  # compared alone at alpha; a regression only warns
    prices: dict[str, float] = field(default_factory=dict)
    metric_options: dict[str, dict] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)

    def role(self, name: str) -> str:
        """``primary`` (decides, in the family-wise tested family) or ``guard`` (warns only)."""
        if name in self.guard or (self.primary and name not in self.primary):
            return "guard"
        return "primary"

    def min_effect_for(self, name: str, metric, baseline_value: float | None) -> float:
        raw = self.min_effect.get(name, metric.default_min_effect)
        return effect_amount(raw, baseline_value, name)


def effect_amount(raw: str | float, baseline_value: float | None, name: str) -> float:
    """``1.0`` (absolute) or ``"2%"`` (relative to the baseline value) -> an absolute amount."""
    text = str(raw).strip()
    try:
        if text.endswith("%"):
            pct = float(text[:-1])
            return abs(baseline_value or 0.0) * pct / 100.0 if baseline_value is not None else 0.0
        return float(text)
    except ValueError:
        raise UsageError(f"min_effect for {name} must be a number or a percentage like 2%, got {raw!r}") from None


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise UsageError(f"{where}: expected a number, got {value!r}")
    try:
        out = float(value)
    except ValueError:
        raise UsageError(f"{where}: expected a number, got {value!r}") from None
    if math.isnan(out):
        raise UsageError(f"{where}: NaN is not a threshold")
    return out


def parse_threshold(name: str, value: Any, where: str) -> Threshold:
    """A threshold from a number (directional default), ``">= x"``/``"<= x"``, or ``{min: x, max: y}``."""
    if isinstance(value, dict):
        bad = sorted(set(value) - {"min", "max"})
        if bad or not value:
            raise UsageError(f"{where}: a threshold object takes min and/or max, got keys {sorted(value)}",
                             "write e.g. {min: 0.6} or {max: 2.0}")
        return Threshold(_number(value["min"], f"{where}.min") if value.get("min") is not None else None,
                         _number(value["max"], f"{where}.max") if value.get("max") is not None else None)
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(>=|<=)?\s*(\S+)\s*", value)
        op, num = (m.group(1), m.group(2)) if m else (None, value)
        if op == ">=":
            return Threshold(min=_number(num, where))
        if op == "<=":
            return Threshold(max=_number(num, where))
        value = num
    higher = REGISTRY[name].higher_is_better if name in REGISTRY else True
    if higher is None:
        raise UsageError(f"{where}: {name} has no better direction; say which bound", f"write {{min: {value}}} or "
                         f"{{max: {value}}}")
    number = _number(value, where)
    return Threshold(min=number) if higher else Threshold(max=number)


def _set_thresholds(config: GateConfig, mapping: dict, where: str) -> None:
    if not isinstance(mapping, dict):
        raise UsageError(f"{where}: thresholds must be a mapping of metric -> threshold")
    for raw_name, value in mapping.items():
        for name in resolve_names([str(raw_name)]):
            config.thresholds[name] = parse_threshold(name, value, f"{where}: {raw_name}")


def parse_pairs(text: str, config: GateConfig) -> None:
    """``accuracy>=0.6, latency_p95<=2`` (commas or newlines between pairs)."""
    for part in split_list(text, ",\n;"):
        m = PAIR.match(part)
        if not m:
            raise UsageError(f"malformed threshold {part.strip()!r}", "write metric>=value or metric<=value, e.g. "
                             "accuracy>=0.6,latency_p95<=2.5, or give a YAML/JSON file")
        name, op, num = m.groups()
        for metric in resolve_names([name]):
            config.thresholds[metric] = Threshold(min=float(num)) if op == ">=" else Threshold(max=float(num))
    config.sources.append("inline")


def load_file(path: Path, config: GateConfig) -> None:
    where = str(path)
    doc = load_document(path, "thresholds file")
    if doc is None:
        raise UsageError(f"{path} is empty", "add a thresholds: mapping", file=where)
    if not isinstance(doc, dict):
        raise UsageError(f"{path}: expected a mapping at the top level, got {type(doc).__name__}", file=where)
    config.sources.append(where)
    if not any(k in SECTIONS for k in doc):
        _set_thresholds(config, doc, where)
        return
    unknown = sorted(set(doc) - set(SECTIONS))
    if unknown:
        raise UsageError(f"{path}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}",
                         f"allowed top-level keys: {', '.join(SECTIONS)}", file=where)
    if doc.get("metrics") is not None:
        items = split_list(doc["metrics"])
        config.metrics += resolve_names([str(m) for m in items])
    _set_thresholds(config, doc.get("thresholds") or {}, where)
    gate = doc.get("gate") or {}
    if not isinstance(gate, dict):
        raise UsageError(f"{path}: gate must be a mapping, got {gate!r}", f"keys: {', '.join(GATE_KEYS)}", file=where)
    if set(gate) - set(GATE_KEYS):
        raise UsageError(f"{path}: gate: unknown keys {', '.join(sorted(set(gate) - set(GATE_KEYS)))}",
                         f"allowed: {', '.join(GATE_KEYS)}", file=where)
    for key in ("alpha", "min_samples", "on_inconclusive", "bootstrap", "seed", "correction", "primary", "guard"):
        if key in gate:
            set_gate_option(config, key, gate[key], f"{path}: gate.{key}")
    effects = gate.get("min_effect") or {}
    if not isinstance(effects, dict):
        raise UsageError(f"{path}: gate.min_effect must map metric -> amount", file=where)
    for raw_name, amount in effects.items():
        for name in resolve_names([str(raw_name)]):
            effect_amount(amount, 1.0, name)
            config.min_effect[name] = amount
    prices = doc.get("prices") or {}
    if not isinstance(prices, dict) or set(prices) - set(PRICE_KEYS):
        raise UsageError(f"{path}: prices takes {', '.join(PRICE_KEYS)}", file=where)
    for key, value in prices.items():
        config.prices[key] = _number(value, f"{path}: prices.{key}")
    options = doc.get("metric_options") or {}
    if not isinstance(options, dict) or not all(isinstance(v, dict) for v in options.values()):
        raise UsageError(f"{path}: metric_options must map metric -> {{option: value}}", file=where)
    for raw_name, opts in options.items():
        for name in resolve_names([str(raw_name)]):
            config.metric_options.setdefault(name, {}).update(opts)


def set_gate_option(config: GateConfig, key: str, value: Any, where: str) -> None:
    if key == "alpha":
        alpha = _number(value, where)
        if not 0 < alpha < 1:
            raise UsageError(f"{where} must be between 0 and 1, got {value}")
        config.alpha = alpha
    elif key in ("min_samples", "bootstrap", "seed"):
        number = _number(value, where)
        if number != int(number) or number < (100 if key == "bootstrap" else 0):
            raise UsageError(f"{where} must be a whole number{' >= 100' if key == 'bootstrap' else ' >= 0'}, "
                             f"got {value}")
        setattr(config, key, int(number))
    elif key == "correction":
        if str(value) not in CORRECTIONS:
            raise UsageError(f"{where} must be one of {', '.join(CORRECTIONS)}, got {value!r}",
                             "westfall-young (the default) keeps the whole gate's false-fail rate at alpha")
        config.correction = str(value)
    elif key in ("primary", "guard"):
        items = split_list(value)
        names = resolve_names([str(m) for m in items])
        setattr(config, key, names)
        other = config.guard if key == "primary" else config.primary
        both = [m for m in names if m in other]
        if both:
            raise UsageError(f"{where}: {', '.join(both)} cannot be both primary and guard", "name each metric in "
                             "one of them")
    elif key == "on_inconclusive":
        if str(value) not in ("fail", "pass"):
            raise UsageError(f"{where} must be fail or pass, got {value!r}")
        config.on_inconclusive = str(value)


def build_config(specs: list[str] | None) -> GateConfig:
    """From ``--thresholds`` values: each is a file path or ``metric>=value`` pairs."""
    config = GateConfig()
    for spec in specs or []:
        spec = spec.strip()
        if not spec:
            continue
        path = Path(spec)
        if ">=" in spec or "<=" in spec:
            parse_pairs(spec, config)
        elif path.is_file():
            load_file(path, config)
        elif path.suffix.lower() in (".yml", ".yaml", ".json"):
            raise InputError(f"thresholds file not found: {spec}", "check the path (relative to the working "
                             "directory)")
        else:
            raise UsageError(f"malformed --thresholds value {spec!r}", "give a YAML/JSON file or pairs like "
                             "accuracy>=0.6,latency_p95<=2.5")
    return config
