"""Eval data: rows -> samples with a stable id, deterministic sub-sampling, the data hash, predictions files.

Accepted rows (any format llmops/data/sources.py reads: JSONL(.gz/.zst), Parquet, Arrow, CSV, save_to_disk
folders, hf://datasets/...; table rows are named by row index where JSONL rows are named by line):
    {"prompt": "...", "reference": "..."}      (``completion`` or ``answer`` also name the reference)
    {"messages": [..., {"role": "assistant", "content": "<reference>"}]}   (the last assistant turn is the
                                                                            reference; the turns before it the prompt)
An optional ``id`` names a sample; otherwise the id is a hash of the prompt, so a baseline verdict and a candidate
run on the same prompts are matched sample by sample even when rows are reordered or added. Optional per-row
assertions (llmops/eval/metrics_assert.py): ``"assert": {"regex": "...", "json_schema": {...}, "contains": [...]}``
and ``"tools": [...]`` (the OpenAI tools the row declares, for ``tool_call_valid``).
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

from llmops.data.reader import read_jsonl
from llmops.data.sources import iter_rows, resolve, split_where
from llmops.errors import InputError

REFERENCE_KEYS = ("reference", "completion", "answer")
ASSERT_KEYS = ("json_valid", "json_schema", "regex", "contains", "not_contains", "starts_with", "tool_call_valid")
PREDICTION_KEYS = ("prediction", "output", "response", "completion", "text")


@dataclass
class Sample:
    id: str
    reference: str
    line: int
    prompt: str | None = None
    messages: list[dict] | None = None  # chat rows: the turns before the reference
    asserts: dict | None = None  # per-row assertions {metric name: spec}
    tools: list | None = None  # OpenAI tools declared for this row

    @property
    def is_chat(self) -> bool:
        return self.messages is not None

    def prompt_key(self) -> str:
        return prompt_hash(self.prompt if self.messages is None else self.messages)


@dataclass
class EvalData:
    path: str
    samples: list[Sample]
    rows: int  # rows in the file(s) before sub-sampling
    hash: str

    def __len__(self) -> int:
        return len(self.samples)


def prompt_hash(prompt: str | list | None) -> str:
    text = prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True, ensure_ascii=False)
    return hashlib.sha1((text or "").encode("utf-8")).hexdigest()[:16]


def _reference(row: dict, where: str, path: Path, no: int) -> str | None:
    for key in REFERENCE_KEYS:
        if key in row:
            value = row[key]
            if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                raise InputError(f"{where}: '{key}' must be a string, got {type(value).__name__}",
                                 "one reference string per row", file=str(path), line=no)
            return str(value)
    return None


def parse_row(row: dict, path: Path, no: int) -> Sample:
    sample = _parse_row(row, path, no)
    where = f"{path}:{no}"
    asserts = row.get("assert")
    if asserts is not None:
        if not isinstance(asserts, dict) or set(asserts) - set(ASSERT_KEYS):
            bad = sorted(set(asserts) - set(ASSERT_KEYS)) if isinstance(asserts, dict) else [type(asserts).__name__]
            raise InputError(f"{where}: 'assert' must map assertion -> spec; unknown {', '.join(bad)}",
                             f"assertions: {', '.join(ASSERT_KEYS)}", file=str(path), line=no)
        sample.asserts = asserts
    tools = row.get("tools")
    if tools is not None:
        if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
            raise InputError(f"{where}: 'tools' must be a list of OpenAI tool objects "
                             "({\"type\": \"function\", \"function\": {\"name\", \"parameters\"}})",
                             file=str(path), line=no)
        sample.tools = tools
    return sample


def _parse_row(row: dict, path: Path, no: int) -> Sample:
    where = f"{path}:{no}"
    ref = _reference(row, where, path, no)
    rid = row.get("id")
    sid = str(rid) if isinstance(rid, (str, int)) and not isinstance(rid, bool) and str(rid) else None
    if "messages" in row:
        msgs = row["messages"]
        if not isinstance(msgs, list) or not all(isinstance(m, dict) and isinstance(m.get("content"), str)
                                                 and isinstance(m.get("role"), str) for m in msgs):
            raise InputError(f"{where}: 'messages' must be a list of {{role, content}} objects",
                             file=str(path), line=no)
        if ref is None:
            last = max((i for i, m in enumerate(msgs) if m["role"] == "assistant"), default=None)
            if last is None:
                raise InputError(f"{where}: chat row has no reference: no assistant message and no 'reference'",
                                 "end the conversation with the expected assistant reply, or add \"reference\"",
                                 file=str(path), line=no)
            ref, msgs = msgs[last]["content"], msgs[:last]
        if not any(m["role"] == "user" for m in msgs):
            raise InputError(f"{where}: chat row has no user message before the reference",
                             "the prompt is the turns before the last assistant message", file=str(path), line=no)
        return Sample(sid or "", ref, no, messages=msgs)
    if not isinstance(row.get("prompt"), str):
        raise InputError(f"{where}: row has no 'prompt' string (and no 'messages')",
                         "eval rows are {\"prompt\": ..., \"reference\": ...} or chat rows {\"messages\": [...]}",
                         file=str(path), line=no)
    if ref is None:
        raise InputError(f"{where}: row has no reference", "add \"reference\" (or \"completion\"/\"answer\") with "
                         "the expected output", file=str(path), line=no)
    return Sample(sid or "", ref, no, prompt=row["prompt"])


def load_eval_data(path: str | Path, *, sample_size: int = 0, seed: int = 0) -> EvalData:
    """Read every row (errors name file:line), give each an id, keep ``sample_size`` of them (0: all)."""
    path = Path(path)
    samples: list[Sample] = []
    seen: dict[str, int] = {}
    for n, (where, row) in enumerate(r for src in resolve(str(path), "eval data") for r in iter_rows(src, "eval data")):
        file, no = split_where(where)
        try:
            sample = parse_row(row, Path(file), no if no is not None else n)
        except InputError as exc:
            if no is None:  # a table row: say "file row N" where JSONL says "file:line"
                raise InputError(exc.message.replace(f"{file}:{n}", where, 1), exc.hint, file=file) from None
            raise
        base = sample.id or sample.prompt_key()
        seen[base] = seen.get(base, 0) + 1
        sample.id = base if seen[base] == 1 else f"{base}#{seen[base]}"
        samples.append(sample)
    rows = len(samples)
    if sample_size and sample_size < rows:
        # Keep the samples with the smallest seeded hash of their id: stable when rows are added or reordered.
        ranked = sorted(samples, key=lambda s: hashlib.sha1(f"{seed}:{s.id}".encode()).hexdigest())
        keep = {s.id for s in ranked[:sample_size]}
        samples = [s for s in samples if s.id in keep]
    return EvalData(str(path), samples, rows, data_hash(samples))


def data_hash(samples: list[Sample]) -> str:
    h = hashlib.sha256()
    for s in samples:
        key = [s.id, s.prompt if s.messages is None else s.messages, s.reference]
        if s.asserts is not None or s.tools is not None:  # rows without them hash as before
            key += [s.asserts, s.tools]
        h.update(json.dumps(key, sort_keys=True, ensure_ascii=False).encode("utf-8"))
        h.update(b"\n")
    return "sha256:" + h.hexdigest()


def _opt_number(row: dict, key: str, where: str, path: Path, no: int, kind=float):
    value = row.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise InputError(f"{where}: '{key}' must be a non-negative number, got {value!r}",
                         "write the measured number (NaN and Infinity are not measurements)", file=str(path), line=no)
    return kind(value)


def load_predictions(path: str | Path, samples: list[Sample]) -> list[dict]:
    """Predictions made elsewhere, matched to the samples by ``id``, else by prompt/messages; one dict per sample.

    Rows: {"id" or "prompt" or "messages", "prediction" (or output/response/completion/text),
    optional "latency_s", "prompt_tokens", "output_tokens"}.
    """
    path = Path(path)
    by_key: dict[str, dict] = {}
    for no, row in read_jsonl(path, what="predictions"):
        where = f"{path}:{no}"
        pred = next((row[k] for k in PREDICTION_KEYS if k in row), None)
        if isinstance(pred, (dict, list)):  # structured output, e.g. an OpenAI message with tool_calls
            pred = json.dumps(pred, ensure_ascii=False)
        if not isinstance(pred, str):
            raise InputError(f"{where}: row has no prediction string", f"add one of: {', '.join(PREDICTION_KEYS)}",
                             file=str(path), line=no)
        entry = {"prediction": pred, "latency_s": _opt_number(row, "latency_s", where, path, no),
                 "prompt_tokens": _opt_number(row, "prompt_tokens", where, path, no, int),
                 "output_tokens": _opt_number(row, "output_tokens", where, path, no, int)}
        keys = []
        if row.get("id") is not None:
            keys.append("id:" + str(row["id"]))
        if isinstance(row.get("prompt"), str):
            keys.append("p:" + prompt_hash(row["prompt"]))
        if isinstance(row.get("messages"), list):
            msgs = row["messages"]
            if msgs and isinstance(msgs[-1], dict) and msgs[-1].get("role") == "assistant":
                msgs = msgs[:-1]
            keys.append("p:" + prompt_hash(msgs))
        if not keys:
            raise InputError(f"{where}: prediction row has no 'id', 'prompt' or 'messages' to match it to the eval "
                             "data", "copy the eval row's id or prompt into each prediction row",
                             file=str(path), line=no)
        for key in keys:
            by_key.setdefault(key, entry)
    out, missing = [], []
    for s in samples:
        entry = by_key.get("id:" + s.id) or by_key.get("p:" + s.prompt_key())
        if entry is None:
            missing.append(s)
        out.append(entry)
    if missing:
        first = missing[0]
        raise InputError(f"{path}: no prediction for {len(missing)} of {len(samples)} eval samples (first: id "
                         f"{first.id}, eval line {first.line})", "predict every eval row, or lower --sample-size")
    return out
