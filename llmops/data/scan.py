"""The streaming pass of validate-data: one byte range of one JSONL file in, compact per-row arrays and problems out
(tables: llmops/data/scan_table.py, with the same ``RowState`` and ``RowArrays``).

``scan_chunk`` parses every line (orjson), checks structure (preset, then jsonschema-rs ``is_valid``; detailed
errors only for rows that fail), empty fields, PII, eval overlap and token counts, and records per row an 8-byte
hash of the normalised text (exact duplicates are found later by sorting all hashes), the text length and flags.
Problems go to the chunk's ``ProblemSink`` (llmops/data/problems.py). ``RowArrays`` is all that is kept per row
(13 bytes, 17 with a tokenizer), spilled to the spool folder when the chunk ends. Line numbers are relative to the chunk; ``validate`` adds the offsets when it merges chunks.
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
from llmops.data.problems import DUP, ERR, NOKEY, Loc, ProblemSink
from llmops.data.reader import MAX_DEPTH, MAX_LINE_BYTES, LineBlocks
from llmops.data.rows import RowArrays

TOKEN_BATCH = 512
BATCH = 1024


@dataclass(frozen=True)
class ScanConfig:
    files: tuple[str, ...]
    kinds: tuple[str, ...] = ()       # per file: jsonl, parquet, arrow, csv, tsv, datasets (default: all jsonl)
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

    def kind(self, file_index: int) -> str:
        return self.kinds[file_index] if self.kinds else "jsonl"

    def loc(self, file_index: int, n: int, group: int | None = None) -> Loc:
        """Where row ``n`` of a file is: line ``n`` of a JSONL file, row index ``n`` of a table."""
        if self.kind(file_index) == "jsonl":
            return Loc(self.files[file_index], line=n)
        return Loc(self.files[file_index], row=n, group=group)


@dataclass
class ChunkResult:
    file_index: int
    start: int
    unit: str = "line"                                          # line (JSONL) or row (tables)
    lines: int = 0
    rows: int = 0
    skips: array = field(default_factory=lambda: array("Q"))    # chunk-relative numbers of blank lines
    groups: list | None = None                                  # first row of each Parquet row group
    arrays: RowArrays = field(default_factory=RowArrays)
    sink: ProblemSink | None = None

    @property
    def spool(self) -> str:
        return self.sink.spool if self.sink is not None and self.sink.written else ""


class Context:
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


_CTX: tuple[ScanConfig, Context] | None = None


def context(cfg: ScanConfig) -> Context:
    global _CTX
    if _CTX is None or _CTX[0] != cfg:
        _CTX = (cfg, Context(cfg))
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


FLAT = {"prompt-completion": ("prompt", "completion"), "text": ("text", None)}


def new_chunk(cfg: ScanConfig, file_index: int, start: int = 0, unit: str = "line") -> ChunkResult:
    res = ChunkResult(file_index, start, unit)
    res.sink = ProblemSink(os.path.join(cfg.spool_dir, f"{file_index}-{start}.jsonl"), cfg.keep)
    res.arrays = RowArrays(os.path.join(cfg.spool_dir, f"{file_index}-{start}"), cfg.tokenizer is not None)
    return res


def finish_chunk(cfg: ScanConfig, ctx: Context, res: ChunkResult) -> ChunkResult:
    res.sink.close()
    res.rows = len(res.arrays)
    res.arrays.spill()
    return res


def scan_chunk(cfg: ScanConfig, file_index: int, start: int = 0, end: int | None = None) -> ChunkResult:
    """One byte range of one JSONL file."""
    ctx = context(cfg)
    res = new_chunk(cfg, file_index, start)
    rows = res.arrays
    blocks = LineBlocks(cfg.files[file_index], start, end, keep_ends=True, max_line=cfg.max_line)
    is_valid = ctx.schema.is_valid if ctx.schema else None
    loads, decode_error, hash64, norm = orjson.loads, orjson.JSONDecodeError, xxhash.xxh3_64_intdigest, norm_field
    # Fast path: rows with exactly the preset's string fields, none empty, valid under the schema.
    k1, k2 = FLAT.get(cfg.key_fmt, (None, None))
    nkeys = 1 if k2 is None else 2
    state = RowState(cfg, ctx, res)
    batch_ok = k1 is not None and not state.extra_checks
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
                        rows.extend(*got)
                        lineno += len(lines)
                        continue
                for line in lines:
                    lineno += 1
                    try:
                        row = loads(line)
                    except decode_error:
                        if not line.strip():
                            res.skips.append(lineno)
                            continue
                        prob = parse_problem(line, not blocks.ends_with_newline)
                        rows.bad(ERR | res.sink.add(prob, loc=cfg.loc(file_index, lineno)))
                        continue
                    if k1 is not None and type(row) is dict and len(row) == nkeys:
                        a = row.get(k1)
                        b = row.get(k2) if k2 is not None else "-"
                        if type(a) is str and type(b) is str and a and b and not a.isspace() and not b.isspace() \
                                and (is_valid is None or is_valid(row)):
                            text = norm(line, a) if k2 is None else norm(line, a) + "\x1f" + norm(line, b)
                            digest = hash64(text.encode())
                            flag = state.extra(len(rows), cfg.loc(file_index, lineno), cfg.key_fmt, row, text,
                                               digest) if state.extra_checks else 0
                            rows.add(digest, len(text), flag)
                            state.flush_tokens(full_only=True)
                            continue
                    state.add(cfg.loc(file_index, lineno), row, line)
            rows.maybe_flush(state.pending())
        state.flush_tokens()
    finally:
        if collect:
            gc.enable()
        res.sink.close()
    res.lines = lineno
    return finish_chunk(cfg, ctx, res)


class RowState:
    """The careful handling of one row (format, schema, empty fields, duplicate key) and the optional checks (PII,
    overlap, near-duplicates, tokens), shared by the JSONL and the columnar scans."""

    def __init__(self, cfg: ScanConfig, ctx: Context, res: ChunkResult):
        self.cfg, self.ctx, self.res, self.sink, self.rows = cfg, ctx, res, res.sink, res.arrays
        self.token_batch: list[tuple[int, Loc, str | None, dict]] = []
        self.extra_checks = cfg.pii != "off" or ctx.eval is not None or ctx.near is not None or ctx.tokens is not None

    def judge(self, index: int, loc: Loc, row: object, line: bytes | None = None) -> tuple[int, int, int]:
        """``(hash, length, flags)`` of the row that will be stored at ``index``."""
        cfg, ctx, sink = self.cfg, self.ctx, self.sink
        fmt = cfg.fmt
        try:
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
                    f |= sink.add(p, loc=loc)
                return 0, 0, f
            f = 0
            if cfg.empty != "off":
                for path in checks.empty_paths(row):
                    f |= sink.add(Problem(path, "empty or whitespace-only text", check="empty-fields"), cfg.empty,
                                  loc)
            kf = cfg.key_fmt if cfg.key_fmt is not None and (fmt is not None or fits(cfg.key_fmt, row)) else None
            text = checks.dedup_text(kf, row, line)
            digest = xxhash.xxh3_64_intdigest(text.encode())
            if self.extra_checks:
                f |= self.extra(index, loc, kf, row, text, digest)
        except RecursionError:  # a row orjson accepts (< 1024 levels) but too deep to walk
            prob = Problem("$", f"JSON nested too deeply (more than {MAX_DEPTH} levels of arrays/objects)",
                           check="json")
            return 0, 0, ERR | NOKEY | sink.add(prob, loc=loc)
        return digest, len(text), f

    def add(self, loc: Loc, row: object, line: bytes | None = None) -> None:
        self.rows.add(*self.judge(len(self.rows), loc, row, line))
        self.flush_tokens(full_only=True)

    def pending(self) -> int | None:
        """The first row still waiting for its token count."""
        return self.token_batch[0][0] if self.token_batch else None

    def extra(self, index: int, loc: Loc, kf: str | None, row: dict, text: str, digest: int) -> int:
        cfg, ctx = self.cfg, self.ctx
        f = 0
        if cfg.pii != "off" or ctx.eval is not None or ctx.near is not None:
            f = _optional_checks(cfg, ctx, self.sink, loc, row, text, digest)
        if ctx.tokens is not None:
            self.token_batch.append((index, loc, kf, row))
        return f

    def flush_tokens(self, full_only: bool = False) -> None:
        """Count the tokens of the rows waiting (only once ``TOKEN_BATCH`` wait with ``full_only``); their rows
        must be stored already."""
        if self.token_batch and (not full_only or len(self.token_batch) >= TOKEN_BATCH):
            _count_tokens(self.cfg, self.ctx, self.sink, self.rows, self.token_batch)


def _optional_checks(cfg: ScanConfig, ctx: Context, sink: ProblemSink, loc: Loc, row: dict, text: str,
                     digest: int) -> int:
    f = 0
    if cfg.pii != "off":
        for path, kind, shown in checks.scan_pii(row):
            f |= sink.add(Problem(path, f"looks like {kind.replace('_', ' ')} ({shown})", check="pii"), cfg.pii, loc)
    if ctx.eval is not None:
        hit = ctx.eval.match(row, text)
        if hit:
            kind, where, detail = hit
            f |= sink.add(Problem("$", f"train/eval overlap ({kind}): {detail} at {where}", check="overlap"),
                          cfg.overlap, loc)
    if ctx.near is not None and digest not in ctx.near_seen:
        ctx.near_seen.add(digest)
        n = loc.line if loc.line is not None else loc.row
        index = cfg.files.index(loc.file)
        hit = ctx.near.add((index << 40) | n, text)
        if hit:
            other, score = hit
            where = cfg.loc(other >> 40, other & ((1 << 40) - 1)).text()
            f |= DUP | sink.add(Problem("$", f"near-duplicate of {where} (estimated Jaccard {score:.2f})",
                                        check="near-duplicates"), cfg.near, loc)
    return f


def _count_tokens(cfg: ScanConfig, ctx: Context, sink: ProblemSink, rows: RowArrays,
                  batch: list[tuple[int, Loc, str | None, dict]]) -> None:
    counts = ctx.tokens.count([(kf, row) for _, _, kf, row in batch])
    for (idx, loc, _, _), n in zip(batch, counts, strict=True):
        rows.set_tokens(idx, n)
        if cfg.max_tokens and n > cfg.max_tokens:
            rows.mark(idx, sink.add(Problem("$", f"{n} tokens, over the limit of {cfg.max_tokens}",
                                            check="max-tokens"), loc=loc))
    batch.clear()
