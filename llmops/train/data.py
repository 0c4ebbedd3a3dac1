"""Training rows -> token ids and labels, with the loss mask of each format and the length policy.

- ``prompt-completion``: prompt tokens (with the tokenizer's special tokens) + completion tokens + EOS; only the
  completion and EOS carry labels, the prompt is -100.
- ``chat``: rendered with the tokenizer's chat template; only assistant turns carry labels. With a template that
  marks assistant text with ``{% generation %}`` the tokenizer's own assistant mask is used; otherwise each assistant
  span is found by rendering the conversation up to that turn (the rendering must be prefix-stable, which we check).
- ``text``: every token carries a label.

Every sample's first label is -100 as well: nothing precedes it, and when samples are packed into one row this keeps
the last token of one sample from being trained to predict the first token of the next.

A sample longer than ``max_len`` is an error naming file:line unless truncation is allowed; samples left with no
trainable token after truncation are dropped and counted. Every file is hashed (sha256) for the model metadata.
Rows come from any format llmops/data/sources.py reads (JSONL, Parquet, Arrow, CSV, save_to_disk folders, hf://).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from llmops.data.formats import FORMATS, check_row, detect_format
from llmops.data.sources import iter_rows, resolve, split_where
from llmops.data.sources import sha256 as source_sha256
from llmops.errors import InputError, UsageError

IGNORE = -100
_BATCH = 512


@dataclass
class Sample:
    input_ids: list[int]
    labels: list[int]
    where: str = ""

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass
class DatasetInfo:
    format: str
    files: list[dict] = field(default_factory=list)
    rows: int = 0
    samples: int = 0
    truncated: int = 0
    dropped: int = 0
    tokens: int = 0
    trainable_tokens: int = 0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_rows(spec: str | list[str], fmt: str, what: str = "dataset") -> tuple[list[tuple[str, dict]], DatasetInfo]:
    """Parse and check every row; ``fmt`` may be ``auto`` (detected from the first row)."""
    files = resolve(spec, what)
    rows: list[tuple[str, dict]] = []
    info = DatasetInfo(format=fmt)
    problems: list[str] = []
    first: tuple[str, int | None] | None = None
    for path in files:
        count = 0
        for where, row in iter_rows(path, what):
            count += 1
            if info.format == "auto":
                detected = detect_format(row)
                if detected is None:
                    file, line = split_where(where)
                    raise InputError(f"{where}: cannot tell the data format from the keys {sorted(row)[:6]}",
                                     f"set format to one of {', '.join(FORMATS)}", file=file, line=line)
                info.format = detected
            for problem in check_row(info.format, row):
                problems.append(f"{where}: {problem.path}: {problem.message}")
                first = first or split_where(where)
            rows.append((where, row))
        info.files.append({"path": str(path), "sha256": source_sha256(path), "rows": count})
    info.rows = len(rows)
    if problems:
        shown = "\n  ".join(problems[:5]) + (f"\n  ... and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise InputError(f"{what}: {len(problems)} row(s) do not match the {info.format} format:\n  {shown}",
                         "fix these rows (the validate-data action lists every problem) or choose the right format",
                         file=first[0] if first else None, line=first[1] if first else None)
    return rows, info


def _ids(tokenizer, texts: list[str], special: bool) -> list[list[int]]:
    out: list[list[int]] = []
    for i in range(0, len(texts), _BATCH):
        out += tokenizer(texts[i:i + _BATCH], add_special_tokens=special)["input_ids"]
    return out


def _eos(tokenizer) -> list[int]:
    if tokenizer.eos_token_id is None:
        raise UsageError("the tokenizer has no EOS token, so the model could not learn where an answer ends",
                         "use a tokenizer with eos_token set (tokenizer_config.json)")
    return [tokenizer.eos_token_id]


def encode_prompt_completion(tokenizer, rows: list[dict]) -> list[tuple[list[int], list[int]]]:
    eos = _eos(tokenizer)
    prompts = _ids(tokenizer, [r["prompt"] for r in rows], True)
    completions = _ids(tokenizer, [r["completion"] for r in rows], False)
    return [(p + c + eos, [IGNORE] * len(p) + c + eos) for p, c in zip(prompts, completions, strict=True)]


def encode_text(tokenizer, rows: list[dict]) -> list[tuple[list[int], list[int]]]:
    eos = _eos(tokenizer)
    out = []
    for ids in _ids(tokenizer, [r["text"] for r in rows], True):
        ids = ids if ids[-1:] == eos else ids + eos
        out.append((ids, list(ids)))
    return out


def encode_chat(tokenizer, messages: list[dict], where: str = "") -> tuple[list[int], list[int]]:
    template = getattr(tokenizer, "chat_template", None)
    if not template:
        raise UsageError("format chat needs a tokenizer with a chat template, and this one has none",
                         "use a tokenizer/model folder whose tokenizer_config.json has chat_template, or train with "
                         "format text/prompt-completion")
    if "{% generation %}" in template or "{%- generation %}" in template:
        enc = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True,
                                            return_assistant_tokens_mask=True)
        ids = list(enc["input_ids"])
        return ids, [t if m else IGNORE for t, m in zip(ids, enc["assistant_masks"], strict=True)]

    def render(msgs: list[dict], gen: bool) -> list[int]:
        text = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen)
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    ids = render(messages, False)
    labels = [IGNORE] * len(ids)
    for i, msg in enumerate(messages):
        if msg["role"] != "assistant":
            continue
        before, through = render(messages[:i], True), render(messages[:i + 1], False)
        if ids[:len(before)] != before or ids[:len(through)] != through:
            raise UsageError(f"{where}: the chat template does not render a conversation prefix as a prefix of the "
                             "whole conversation, so the assistant tokens cannot be located",
                             "use a chat template that marks assistant text with {% generation %} ... "
                             "{% endgeneration %}, or train with format text")
        labels[len(before):len(through)] = ids[len(before):len(through)]
    return ids, labels


def encode_rows(tokenizer, fmt: str, rows: list[tuple[str, dict]], max_len: int, truncation: bool,
                info: DatasetInfo, what: str = "dataset") -> list[Sample]:
    """Tokenize checked rows; enforce the length policy; fill the token counts of ``info``."""
    data = [row for _, row in rows]
    if fmt == "prompt-completion":
        encoded = encode_prompt_completion(tokenizer, data)
    elif fmt == "text":
        encoded = encode_text(tokenizer, data)
    else:
        encoded = [encode_chat(tokenizer, row["messages"], where) for (where, row) in rows]
    samples: list[Sample] = []
    too_long: list[tuple[str, int]] = []
    for (where, _), (ids, labels) in zip(rows, encoded, strict=True):
        if len(ids) > max_len:
            if not truncation:
                too_long.append((where, len(ids)))
                continue
            ids, labels = ids[:max_len], labels[:max_len]
            info.truncated += 1
        labels = [IGNORE] + labels[1:]
        if all(label == IGNORE for label in labels):
            info.dropped += 1
            continue
        samples.append(Sample(ids, labels, where))
    if too_long:
        where, n = too_long[0]
        file, line = split_where(where)
        raise InputError(f"{what}: {len(too_long)} sample(s) are longer than max-seq-length {max_len} tokens; "
                         f"first: {where} has {n} tokens",
                         f"raise max-seq-length (the model allows more?), shorten those rows, or set truncation: true "
                         f"to keep only the first {max_len} tokens", file=file, line=line)
    if not samples:
        raise InputError(f"{what}: no sample has a token to train on ({info.dropped} dropped after truncation)",
                         "raise max-seq-length so the completions/assistant turns fit")
    info.samples = len(samples)
    info.tokens = sum(len(s) for s in samples)
    info.trainable_tokens = sum(sum(1 for x in s.labels if x != IGNORE) for s in samples)
    return samples


def load_samples(spec: str | list[str], tokenizer, fmt: str, max_len: int, truncation: bool,
                 what: str = "dataset") -> tuple[list[Sample], DatasetInfo]:
    rows, info = read_rows(spec, fmt, what)
    samples = encode_rows(tokenizer, info.format, rows, max_len, truncation, info, what)
    return samples, info
