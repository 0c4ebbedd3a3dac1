"""Fault injection for tests and canary drills, configured by environment variables.

    LLMOPS_FAULT_ERROR_RATE      fraction of inference requests answered 500 (0..1; default 0)
    LLMOPS_FAULT_SEED            seed for which requests fail (an integer): the same seed gives the same sequence
    LLMOPS_FAULT_LATENCY_MS      milliseconds added to every inference request before it is handled (default 0)
    LLMOPS_FAULT_QUALITY_SCORE   pin the online quality gauge to this value (0..1), ignoring feedback

Only /v1/completions and /v1/chat/completions are affected; /health and /metrics always answer truthfully.
Bad values are errors (exit 2), never silently ignored: a drill that injects nothing would pass for the wrong reason.
"""
from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from llmops.errors import UsageError

ENV_ERROR_RATE = "LLMOPS_FAULT_ERROR_RATE"
ENV_SEED = "LLMOPS_FAULT_SEED"
ENV_LATENCY_MS = "LLMOPS_FAULT_LATENCY_MS"
ENV_QUALITY = "LLMOPS_FAULT_QUALITY_SCORE"


def _number(env: Mapping[str, str], name: str, lo: float, hi: float | None) -> float | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise UsageError(f"{name} must be a number, got {raw!r}", f"unset {name} or give a number") from None
    if not (value >= lo and (hi is None or value <= hi)):
        span = f"from {lo:g} to {hi:g}" if hi is not None else f">= {lo:g}"
        raise UsageError(f"{name} must be {span}, got {raw!r}")
    return value


@dataclass
class Faults:
    error_rate: float = 0.0
    latency_ms: float = 0.0
    seed: int | None = None
    quality_score: float | None = None
    _rng: random.Random = field(init=False, repr=False)
    _lock: threading.Lock = field(init=False, repr=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if not 0.0 <= self.error_rate <= 1.0:
            raise UsageError(f"fault error rate must be from 0 to 1, got {self.error_rate}")
        if self.latency_ms < 0:
            raise UsageError(f"fault latency must be >= 0 ms, got {self.latency_ms}")
        self._rng = random.Random(self.seed)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Faults:
        env = os.environ if env is None else env
        seed_raw = env.get(ENV_SEED, "").strip()
        try:
            seed = int(seed_raw) if seed_raw else None
        except ValueError:
            raise UsageError(f"{ENV_SEED} must be an integer, got {seed_raw!r}") from None
        return cls(error_rate=_number(env, ENV_ERROR_RATE, 0.0, 1.0) or 0.0,
                   latency_ms=_number(env, ENV_LATENCY_MS, 0.0, None) or 0.0,
                   seed=seed, quality_score=_number(env, ENV_QUALITY, 0.0, 1.0))

    @property
    def active(self) -> bool:
        return bool(self.error_rate or self.latency_ms or self.quality_score is not None)

    def should_fail(self) -> bool:
        """Draw for one request (thread-safe; with a seed the n-th call always gives the same answer)."""
        if self.error_rate <= 0:
            return False
        with self._lock:
            return self._rng.random() < self.error_rate

    def delay(self) -> None:
        if self.latency_ms > 0:
            time.sleep(self.latency_ms / 1000.0)

    def describe(self) -> dict[str, float | int | None]:
        return {"error_rate": self.error_rate, "latency_ms": self.latency_ms, "seed": self.seed,
                "quality_score": self.quality_score}
