"""The streaming pass of validate-data: one byte range of one file in, compact per-row arrays and problems out.

``scan_chunk`` parses every line (orjson), checks structure (preset, then jsonschema-rs ``is_valid``; detailed
errors only for rows that fail), empty fields, PII, eval overlap and token counts, and records per row an 8-byte
hash of the normalised text (exact duplicates are found later by sorting all hashes), the text length and flags.
Problems go to a spool file (JSON lines) so memory stays bounded however many rows fail; the first few are kept
for the summary. Line numbers are relative to the chunk; ``validate`` adds the offsets when it merges chunks.
Runs in the main process or in worker processes (everything it needs is in the picklable ``ScanConfig``).
"""
from __future__ import annotations

import gc
import json
import os
from array import array
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import xxhash

from llmops.data import checks
from llmops.data.fastpath import fast_batch, norm_field
from llmops.data.formats import Problem, check_row
from llmops.data.reader import MAX_DEPTH, MAX_LINE_BYTES, LineBlocks

ERR, WARN, NOKEY = 1, 2, 4
TOKEN_BATCH = 512
BATCH = 1024


@dataclass(frozen=True)
class ScanConfig:
    files: tuple[str, ...]
    fmt: str | None = None            # preset rows are checked against (None: no preset)
    key_fmt: str | None = None        # preset used to pick the text of a row when it fits (dedup, tokens, overlap)
    schema: str | None = None
    empty: str = "error"              # off | warning | error
    pii: str = "off"
    eval_files: tuple[str, ...] = ()
    ngram: int = 13
    overlap: str = "error"
    tokenizer: str | None = None
    max_tokens: int | None = None
    near: str = "off"
    near_threshold: float = 0.8
    keep: int = 50                    # problems kept in memory per chunk for the summary
    spool_dir: str = ""
    max_line: int = MAX_LINE_BYTES


@dataclass
class ChunkResult:
    file_index: int
    start: int
    lines: int = 0
    rows: int = 0
    skips: array = field(default_factory=lambda: array("Q"))    # chunk-relative numbers of blank lines
    hashes: array = field(default_factory=lambda: array("Q"))
    lengths: array = field(default_factory=lambda: array("I"))
    tokens: array = field(default_factory=lambda: array("I"))
    flags: bytearray = field(default_factory=bytearray)
    counts: dict = field(default_factory=dict)                  # "check/severity" -> problems
    kept: list = field(default_factory=list)
    spool: str = ""
    problems: int = 0


class _Context:
    """What every chunk of one run shares, built once per process."""

    def __init__(self, cfg: ScanConfig):
        from llmops.data.schema import load_schema

        self.schema = load_schema(cfg.schema) if cfg.schema else None
        self.eval = checks.EvalIndex.load([Path(p) for p in cfg.eval_files], cfg.ngram) if cfg.eval_files else None
        self.tokens = None
        if cfg.tokenizer:
            from llmops.data.tokens import TokenCounter
            self.tokens = TokenCounter(cfg.tokenizer)
        self.near = None
        if cfg.near != "off":
            from llmops.data.neardup import NearDuplicates
            self.near = NearDuplicates(cfg.near_threshold)
            self.near_seen: set[int] = set()


_CTX: tuple[ScanConfig, _Context] | None = None


def context(cfg: ScanConfig) -> _Context:
    global _CTX
    if _CTX is None or _CTX[0] != cfg:
        _CTX = (cfg, _Context(cfg))
    return _CTX[1]


def fits(fmt: str | None, row: dict) -> bool:
    """Cheap test that a row has the shape of a preset (full rules: formats.check_row)."""
    if fmt == "prompt-completion":
        return type(row.get("prompt")) is str and type(row.get("completion")) is str
    if fmt == "text":
        return type(row.get("text")) is str
    if fmt == "chat":
        msgs = row.get("messages")
        return type(msgs) is list and all(type(m) is dict and type(m.get("role")) is str
                                          and type(m.get("content")) is str for m in msgs)
    return False


def parse_problem(raw: bytes, unterminated: bool) -> Problem:
    """Why a non-blank line did not parse, in words a user can act on."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Problem("$", f"invalid UTF-8 at byte {exc.start + 1} of the line (re-encode the file as UTF-8)",
                       check="json")
    if text.startswith("\ufeff"):
        return Problem("$", "line starts with a byte order mark (files concatenated with a BOM?); remove it",
                       check="json")
    try:
        json.loads(text)
    except RecursionError:
        return Problem("$", f"JSON nested too deeply (more than {MAX_DEPTH} levels of arrays/objects)", check="json")
    except json.JSONDecodeError as exc:
        detail = f"{exc.msg} (column {exc.colno})"
        if unterminated:
            return Problem("$", f"truncated last line: the file ends in the middle of a row ({detail}, no final "
                           "newline); was the file cut off while writing or uploading?", check="json")
        return Problem("$", f"malformed JSON: {detail}", check="json")
    return Problem("$", "not strict JSON (NaN, Infinity, a lone surrogate or a number out of range)", check="json")


class _Sink:
    def __init__(self, cfg: ScanConfig, res: ChunkResult):
        self.cfg, self.res = cfg, res
        self.fh = None
        self.path = cfg.files[res.file_index]

    def add(self, line: int, prob: Problem, severity: str | None = None) -> int:
        severity = severity or prob.severity
        res = self.res
        rec = {"file": self.path, "line": line, "path": prob.path, "check": prob.check, "severity": severity,
               "message": prob.message}
        key = f"{prob.check}/{severity}"
        res.counts[key] = res.counts.get(key, 0) + 1
        res.problems += 1
        if len(res.kept) < self.cfg.keep:
            res.kept.append(rec)
        if self.fh is None:
            self.fh = open(os.path.join(self.cfg.spool_dir, f"{res.file_index}-{res.start}.jsonl"), "wb")
            res.spool = self.fh.name
        self.fh.write(orjson.dumps(rec) + b"\n")
        return ERR if severity == "error" else WARN

    def close(self) -> None:
        if self.fh:
            self.fh.close()


FLAT = {"prompt-completion": ("prompt", "completion"), "text": ("text", None)}


def scan_chunk(cfg: ScanConfig, file_index: int, start: int = 0, end: int | None = None) -> ChunkResult:
    ctx = context(cfg)
    res = ChunkResult(file_index, start)
    sink = _Sink(cfg, res)
    blocks = LineBlocks(cfg.files[file_index], start, end, keep_ends=True, max_line=cfg.max_line)
    is_valid = ctx.schema.is_valid if ctx.schema else None
    loads, decode_error, hash64, norm = orjson.loads, orjson.JSONDecodeError, xxhash.xxh3_64_intdigest, norm_field
    hashes, lengths, flags, skips = res.hashes, res.lengths, res.flags, res.skips
    # Fast path: rows with exactly the preset's string fields, none empty, valid under the schema.
    k1, k2 = FLAT.get(cfg.key_fmt, (None, None))
    nkeys = 1 if k2 is None else 2
    extra = cfg.pii != "off" or ctx.eval is not None or ctx.near is not None or ctx.tokens is not None
    state = _RowState(cfg, ctx, sink, res)
    batch_ok = k1 is not None and not extra
    limits = ctx.schema.string_limits((k1,) if k2 is None else (k1, k2)) if ctx.schema and k1 is not None else None
    lineno = 0
    collect = gc.isenabled()
    gc.disable()  # rows are trees without cycles, freed by reference counting; collections only cost time
    try:
        for block in blocks:
            for pos in range(0, len(block), BATCH):
                lines = block[pos:pos + BATCH]
                if batch_ok:
                    got = fast_batch(lines, k1, k2, is_valid, limits)
                    if got is not None:
                        hashes.extend(got[0])
                        lengths.extend(got[1])
                        flags.extend(bytes(len(lines)))
                        lineno += len(lines)
                        continue
                for line in lines:
                    lineno += 1
                    try:
                        row = loads(line)
                    except decode_error:
                        if not line.strip():
                            skips.append(lineno)
                            continue
                        flags.append(ERR | NOKEY | sink.add(lineno, parse_problem(line, not blocks.ends_with_newline)))
                        hashes.append(0)
                        lengths.append(0)
                        continue
                    if k1 is not None and type(row) is dict and len(row) == nkeys:
                        a = row.get(k1)
                        b = row.get(k2) if k2 is not None else "-"
                        if type(a) is str and type(b) is str and a and b and not a.isspace() and not b.isspace() \
                                and (is_valid is None or is_valid(row)):
                            text = norm(line, a) if k2 is None else norm(line, a) + "\x1f" + norm(line, b)
                            hashes.append(hash64(text.encode()))
                            lengths.append(len(text))
                            flags.append(0)
                            if extra:
                                state.extra(file_index, lineno, cfg.key_fmt, row, text)
                            continue
                    n = len(flags)
                    try:
                        state.row(file_index, lineno, line, row)
                    except RecursionError:  # a row orjson accepts (< 1024 levels) but too deep to walk
                        state.too_deep(lineno, n)
        state.flush_tokens()
    finally:
        if collect:
            gc.enable()
        sink.close()
    res.lines = lineno
    res.rows = len(flags)
    if ctx.tokens is not None:
        res.tokens.extend([0] * (res.rows - len(res.tokens)))
    return res


class _RowState:
    """The general (slower) handling of one row, and the optional checks, for ``scan_chunk``."""

    def __init__(self, cfg: ScanConfig, ctx: _Context, sink: _Sink, res: ChunkResult):
        self.cfg, self.ctx, self.sink, self.res = cfg, ctx, sink, res
        self.token_batch: list[tuple[int, int, str | None, dict]] = []

    def row(self, file_index: int, lineno: int, line: bytes, row: object) -> None:
        cfg, ctx, sink, res = self.cfg, self.ctx, self.sink, self.res
        fmt = cfg.fmt
        if type(row) is not dict:
            probs = [Problem("$", f"each line must be a JSON object, got {type(row).__name__}")]
        else:
            probs = None
            if fmt == "chat" or (fmt is not None and not fits(fmt, row)):
                probs = check_row(fmt, row) or None
            if ctx.schema is not None and not ctx.schema.is_valid(row):
                probs = (probs or []) + ctx.schema.problems(row)
        if probs:
            f = NOKEY
            for p in probs:
                f |= sink.add(lineno, p)
            res.flags.append(f)
            res.hashes.append(0)
            res.lengths.append(0)
            return
        f = 0
        if cfg.empty != "off":
            for path in checks.empty_paths(row):
                f |= sink.add(lineno, Problem(path, "empty or whitespace-only text", check="empty-fields"), cfg.empty)
        kf = cfg.key_fmt if cfg.key_fmt is not None and (fmt is not None or fits(cfg.key_fmt, row)) else None
        text = checks.dedup_text(kf, row, line)
        res.hashes.append(xxhash.xxh3_64_intdigest(text.encode()))
        res.lengths.append(len(text))
        res.flags.append(f)
        self.extra(file_index, lineno, kf, row, text)

    def too_deep(self, lineno: int, n: int) -> None:
        res = self.res
        del res.flags[n:], res.hashes[n:], res.lengths[n:]
        prob = Problem("$", f"JSON nested too deeply (more than {MAX_DEPTH} levels of arrays/objects)", check="json")
        res.flags.append(ERR | NOKEY | self.sink.add(lineno, prob))
        res.hashes.append(0)
        res.lengths.append(0)

    def extra(self, file_index: int, lineno: int, kf: str | None, row: dict, text: str) -> None:
        cfg, ctx, res = self.cfg, self.ctx, self.res
        if cfg.pii != "off" or ctx.eval is not None or ctx.near is not None:
            res.flags[-1] |= _optional_checks(cfg, ctx, self.sink, file_index, lineno, row, text, res.hashes[-1])
        if ctx.tokens is not None:
            self.token_batch.append((len(res.flags) - 1, lineno, kf, row))
            if len(self.token_batch) >= TOKEN_BATCH:
                self.flush_tokens()

    def flush_tokens(self) -> None:
        if self.token_batch:
            _count_tokens(self.cfg, self.ctx, self.sink, self.res, self.token_batch)


def _optional_checks(cfg: ScanConfig, ctx: _Context, sink: _Sink, file_index: int, lineno: int, row: dict,
                     text: str, digest: int) -> int:
    f = 0
    if cfg.pii != "off":
        for path, kind, shown in checks.scan_pii(row):
            f |= sink.add(lineno, Problem(path, f"looks like {kind.replace('_', ' ')} ({shown})", check="pii"),
                          cfg.pii)
    if ctx.eval is not None:
        hit = ctx.eval.match(row, text)
        if hit:
            kind, where, detail = hit
            f |= sink.add(lineno, Problem("$", f"train/eval overlap ({kind}): {detail} at {where}",
                                          check="overlap"), cfg.overlap)
    if ctx.near is not None and digest not in ctx.near_seen:
        ctx.near_seen.add(digest)
        hit = ctx.near.add((file_index << 40) | lineno, text)
        if hit:
            other, score = hit
            where = f"{cfg.files[other >> 40]}:{other & ((1 << 40) - 1)}"
            f |= sink.add(lineno, Problem("$", f"near-duplicate of {where} (estimated Jaccard {score:.2f})",
                                          check="near-duplicates"), cfg.near)
    return f


def _count_tokens(cfg: ScanConfig, ctx: _Context, sink: _Sink, res: ChunkResult,
                  batch: list[tuple[int, int, str | None, dict]]) -> None:
    counts = ctx.tokens.count([(kf, row) for _, _, kf, row in batch])
    tokens = res.tokens
    tokens.extend([0] * (batch[-1][0] + 1 - len(tokens)))
    for (idx, lineno, _, _), n in zip(batch, counts, strict=True):
        tokens[idx] = n
        if cfg.max_tokens and n > cfg.max_tokens:
            res.flags[idx] |= sink.add(lineno, Problem("$", f"{n} tokens, over the limit of {cfg.max_tokens}",
                                                       check="max-tokens"))
    batch.clear()
