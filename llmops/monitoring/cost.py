"""Inference cost: a price table read from config, and a tracker with daily (UTC) and per-version summaries.

Price table file (YAML or JSON; unknown keys are errors; prices are per million tokens)::

    currency: USD
    gpu_hour: 2.50                 # price of one GPU hour; a request is charged its generation seconds
    models:
      default: {input_per_million: 0.50, output_per_million: 1.50}
      support-bot-v3: {input_per_million: 0.40, output_per_million: 1.20}

``models`` keys are matched against the model version first, then the model name, then ``default``. All money is
``decimal.Decimal`` (the seed's float sums drifted); the tracker keeps running totals per (UTC day, version) rather
than a list of every request, so a long-running server uses constant memory.
"""
from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from llmops.errors import UsageError
from llmops.inputs import load_document

MILLION = Decimal(1_000_000)
SECONDS_PER_HOUR = Decimal(3600)
_TOP_KEYS = {"currency", "gpu_hour", "models"}
_MODEL_KEYS = {"input_per_million", "output_per_million"}


def _money(value: Any, where: str) -> Decimal:
    if isinstance(value, bool):
        raise UsageError(f"{where} must be a number, got {value!r}")
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise UsageError(f"{where} must be a number, got {value!r}", "write a price such as 0.5") from None
    if not amount.is_finite() or amount < 0:
        raise UsageError(f"{where} must be a number >= 0, got {value!r}")
    return amount


@dataclass(frozen=True)
class ModelPrice:
    input_per_million: Decimal = Decimal(0)
    output_per_million: Decimal = Decimal(0)


@dataclass(frozen=True)
class PriceTable:
    models: dict[str, ModelPrice] = field(default_factory=lambda: {"default": ModelPrice()})
    gpu_hour: Decimal = Decimal(0)
    currency: str = "USD"

    @classmethod
    def from_dict(cls, data: Any, source: str = "price table") -> PriceTable:
        if not isinstance(data, dict):
            raise UsageError(f"{source}: expected a mapping with keys {sorted(_TOP_KEYS)}")
        unknown = set(data) - _TOP_KEYS
        if unknown:
            raise UsageError(f"{source}: unknown key(s) {sorted(unknown)}", f"allowed keys: {sorted(_TOP_KEYS)}")
        models_raw = data.get("models") or {}
        if not isinstance(models_raw, dict):
            raise UsageError(f"{source}: 'models' must map a model version or name to its prices")
        models: dict[str, ModelPrice] = {}
        for name, prices in models_raw.items():
            if not isinstance(prices, dict):
                raise UsageError(f"{source}: models.{name} must be a mapping with {sorted(_MODEL_KEYS)}")
            bad = set(prices) - _MODEL_KEYS
            if bad:
                raise UsageError(f"{source}: models.{name}: unknown key(s) {sorted(bad)}",
                                 f"allowed keys: {sorted(_MODEL_KEYS)} (prices per million tokens)")
            models[str(name)] = ModelPrice(*(_money(prices.get(k, 0), f"{source}: models.{name}.{k}")
                                             for k in ("input_per_million", "output_per_million")))
        models.setdefault("default", ModelPrice())
        currency = str(data.get("currency") or "USD")
        return cls(models=models, gpu_hour=_money(data.get("gpu_hour", 0), f"{source}: gpu_hour"), currency=currency)

    @classmethod
    def load(cls, path: str | Path) -> PriceTable:
        return cls.from_dict(load_document(path, "price table"), str(path))

    def price_for(self, model_version: str, model_name: str | None = None) -> ModelPrice:
        for key in (model_version, model_name):
            if key and key in self.models:
                return self.models[key]
        return self.models["default"]

    def cost(self, model_version: str, input_tokens: int, output_tokens: int, gpu_seconds: float = 0.0,
             model_name: str | None = None) -> CostRecord:
        price = self.price_for(model_version, model_name)
        return CostRecord(
            model_version=model_version,
            input_tokens=int(input_tokens),
            output_tokens=int(output_tokens),
            input_cost=price.input_per_million * int(input_tokens) / MILLION,
            output_cost=price.output_per_million * int(output_tokens) / MILLION,
            compute_cost=self.gpu_hour * Decimal(str(max(0.0, float(gpu_seconds)))) / SECONDS_PER_HOUR,
            at=datetime.now(timezone.utc),
        )


@dataclass(frozen=True)
class CostRecord:
    """The cost of one request; ``total`` is derived, never stored separately."""

    model_version: str
    input_tokens: int
    output_tokens: int
    input_cost: Decimal
    output_cost: Decimal
    compute_cost: Decimal
    at: datetime

    @property
    def total(self) -> Decimal:
        return self.input_cost + self.output_cost + self.compute_cost


@dataclass
class _Totals:
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    input_cost: Decimal = Decimal(0)
    output_cost: Decimal = Decimal(0)
    compute_cost: Decimal = Decimal(0)

    def add(self, record: CostRecord) -> None:
        self.requests += 1
        self.input_tokens += record.input_tokens
        self.output_tokens += record.output_tokens
        self.input_cost += record.input_cost
        self.output_cost += record.output_cost
        self.compute_cost += record.compute_cost

    def as_dict(self) -> dict[str, Any]:
        total = self.input_cost + self.output_cost + self.compute_cost
        return {"requests": self.requests, "input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                "input_cost": self.input_cost, "output_cost": self.output_cost, "compute_cost": self.compute_cost,
                "total_cost": total}


class CostTracker:
    """Running cost totals per UTC day and model version (thread-safe)."""

    def __init__(self, prices: PriceTable | None = None):
        self.prices = prices or PriceTable()
        self._totals: dict[tuple[str, str], _Totals] = defaultdict(_Totals)
        self._lock = threading.Lock()

    def track(self, model_version: str, input_tokens: int, output_tokens: int, gpu_seconds: float = 0.0, *,
              model_name: str | None = None, at: datetime | None = None) -> CostRecord:
        if input_tokens < 0 or output_tokens < 0 or gpu_seconds < 0:
            raise ValueError("token counts and GPU seconds must be >= 0")
        record = self.prices.cost(model_version, input_tokens, output_tokens, gpu_seconds, model_name)
        if at is not None:
            if at.tzinfo is None:
                raise ValueError("'at' must be timezone-aware (UTC days are ambiguous for naive datetimes)")
            record = replace(record, at=at.astimezone(timezone.utc))
        self.add(record)
        return record

    def add(self, record: CostRecord) -> None:
        day = record.at.astimezone(timezone.utc).date().isoformat()
        with self._lock:
            self._totals[(day, record.model_version)].add(record)

    def _grouped(self, index: int) -> dict[str, dict[str, Any]]:
        groups: dict[str, _Totals] = defaultdict(_Totals)
        with self._lock:
            for key, totals in self._totals.items():
                g = groups[key[index]]
                for name in ("requests", "input_tokens", "output_tokens", "input_cost", "output_cost",
                             "compute_cost"):
                    setattr(g, name, getattr(g, name) + getattr(totals, name))
        return {key: groups[key].as_dict() for key in sorted(groups)}

    def daily_summary(self) -> dict[str, dict[str, Any]]:
        """``{"2025-01-31": {"requests", "input_tokens", "output_tokens", "*_cost", "total_cost"}}`` (UTC days)."""
        return self._grouped(0)

    def version_summary(self) -> dict[str, dict[str, Any]]:
        """The same totals per model version, over all days."""
        return self._grouped(1)

    def total(self) -> Decimal:
        return sum((s["total_cost"] for s in self.version_summary().values()), Decimal(0))


def to_jsonable(summary: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Summaries with Decimals as strings (exact) for JSON output."""
    return {k: {n: (format(v.normalize(), "f") if isinstance(v, Decimal) else v) for n, v in row.items()}
            for k, row in summary.items()}
