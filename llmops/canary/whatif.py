"""What-if: replay windows through the live judge and decision code, with no cluster and no Prometheus.

Input, one window per line (counts are increases over that window; histograms are Prometheus cumulative buckets,
``le`` -> count, ``"+Inf"`` = all requests; every key but ``requests`` optional):

    {"canary": {"requests": 480, "errors": 7, "latency_seconds": {"0.5": 300, "1": 450, "+Inf": 480}}, "stable": {...}}

or a whole ``canary-report.json`` (its windows' ``counts``), to replay a past canary under another policy. Output:
one JSON object per judged window, handed to ``emit`` as soon as it is judged. The weight of each window is the
policy's (the first step, then whatever the previous decision said), exactly as a live run would set it; a pause is
reported and judging goes on with the next window, as a resumed run would. After promote or rollback no more input
is read. A bad window is an ``InputError`` with its line number (exit 2).
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from typing import IO

from llmops.canary.decision import Policy, Progress, decide
from llmops.canary.judge import AnalysisConfig, MissingSeries, evidence, judge
from llmops.errors import InputError

SIDE_KEYS = {"requests", "errors", "latency_seconds", "ttft_seconds", "cost_per_request", "quality"}


def read_windows(stream: IO[str], name: str) -> Iterator[tuple[int, dict]]:
    """(line number, counts) for each window: JSON lines, or one canary-report.json (then the window's index)."""
    number = 0
    for line in stream:
        number += 1
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except ValueError:
            if number == 1 and line.strip() == "{":  # a pretty-printed JSON document: a canary-report.json
                yield from _report(line + stream.read(), name)
                return
            raise InputError(f"{name} line {number}: not a JSON object", "one window per line, e.g. "
                             '{"canary": {"requests": 480, "errors": 7}, "stable": {"requests": 9000, "errors": 90}}',
                             file=name, line=number) from None
        if isinstance(data, dict) and "windows" in data:
            yield from _report(line, name)
            return
        yield number, _checked(data, name, number)


def _report(text: str, name: str) -> Iterator[tuple[int, dict]]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InputError(f"{name} is neither JSON lines nor a canary-report.json: {exc}", file=name) from None
    windows = data.get("windows") if isinstance(data, dict) else None
    if not isinstance(windows, list):
        raise InputError(f"{name}: a canary report needs a list of windows", file=name)
    for i, w in enumerate(windows, 1):
        if not isinstance(w, dict) or "counts" not in w:
            raise InputError(f"{name}: window {i} has no counts (a report written before counts were recorded?)",
                             file=name, line=i)
        yield i, _checked(w["counts"], name, i)


def _checked(data, name: str, number: int) -> dict:
    where = f"{name} line {number}"
    if not isinstance(data, dict) or not isinstance(data.get("canary"), dict):
        raise InputError(f"{where}: a window needs a \"canary\" object", file=name, line=number)
    unknown = set(data) - {"canary", "stable"}
    if unknown:
        raise InputError(f"{where}: unknown keys {sorted(unknown)}", "use canary and stable", file=name, line=number)
    for role in ("canary", "stable"):
        side = data.get(role)
        if side is None:
            continue
        if not isinstance(side, dict):
            raise InputError(f"{where}: {role} must be an object", file=name, line=number)
        bad = set(side) - SIDE_KEYS
        if bad:
            raise InputError(f"{where}: unknown {role} keys {sorted(bad)}", f"use {', '.join(sorted(SIDE_KEYS))}",
                             file=name, line=number)
        for key in ("requests", "errors", "cost_per_request", "quality"):
            v = side.get(key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0):
                raise InputError(f"{where}: {role}.{key} must be a number >= 0, got {v!r}", file=name, line=number)
        if side.get("errors") is not None and side.get("requests") is not None and side["errors"] > side["requests"]:
            raise InputError(f"{where}: {role} has more errors ({side['errors']}) than requests ({side['requests']})",
                             file=name, line=number)
    return data


def replay(windows: Iterable[tuple[int, dict]], cfg: AnalysisConfig, policy: Policy,
           emit: Callable[[dict], None], name: str = "windows") -> str:
    """Judge ``windows`` in order; returns the last decision (promote, rollback, or continue when input ran out)."""
    progress = Progress("canary", "stable", list(policy.steps))
    action = "continue"
    for k, (number, counts) in enumerate(windows, 1):
        weight = progress.weight
        try:
            judged = judge(counts, progress.evidence, cfg, weight, policy.min_requests)
        except (MissingSeries, ValueError) as exc:
            raise InputError(f"{name} line {number}: {exc}", file=name, line=number) from None
        d = decide(progress, judged, policy)
        action = d.action
        emit({"window": k, "weight": weight, "outcome": d.outcome, "decision": d.action,
              "next_weight": progress.weight if d.action == "continue" else 0, "paused": d.paused,
              "reason": d.reason, "missing": list(d.missing), "evidence": evidence(judged)})
        if action != "continue":
            break
    return action
