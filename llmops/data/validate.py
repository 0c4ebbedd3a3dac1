"""validate-data's run: resolve inputs, scan every file (in worker processes for big plain files), merge the
chunks, then the dataset-wide checks (exact duplicates, length outliers, sample counts) and the verdict.

Exit semantics (decided here, documented in docs/actions/validate-data.md): anything that stops us from reading
the data as JSONL at all (missing/unreadable/empty file, BOM, bad gzip, bad schema, tokenizer or eval file) raises
``InputError`` (exit 2); problems in rows, even all of them, are findings (exit 1 when they fail the run).
"""
from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import orjson

from llmops.data import scan
from llmops.data.formats import detect_format, require_format
from llmops.data.reader import (
    BOM,
    MAX_LINE_BYTES,
    LineBlocks,
    encoding_error,
    expand_inputs,
    open_binary,
    sniff_encoding,
    split_ranges,
)
from llmops.errors import InputError, LLMOpsError, UsageError

SEVERITIES = ("off", "warning", "error")
PARALLEL_BYTES = 64 << 20
DETECT_LINES = 1000


@dataclass
class Options:
    inputs: list[str]
    schema: str | None = None
    fmt: str | None = None
    min_samples: int = 1
    max_samples: int | None = None
    eval_data: list[str] = field(default_factory=list)
    tokenizer: str | None = None
    max_tokens: int | None = None
    empty: str = "error"
    duplicates: str = "warning"
    near: str = "off"
    near_threshold: float = 0.8
    overlap: str = "error"
    ngram: int = 13
    pii: str = "off"
    length_outliers: str = "off"
    fail_on: str = "error"
    workers: int = 0                  # 0: automatic (2 processes for big plain files)
    keep: int = 50
    max_line: int = MAX_LINE_BYTES    # longest line read (bytes); longer is an input error naming the line


@dataclass
class Outcome:
    options: Options
    files: list[str]
    fmt: str | None
    fmt_source: str
    rows: int
    chunks: list[scan.ChunkResult]
    line_offsets: list[int]
    counts: dict[str, int]
    kept: list[dict]
    extra_spool: str
    rows_with_errors: int
    rows_with_warnings: int
    dataset_errors: int
    dataset_warnings: int
    stats: dict
    tmpdir: str
    result: str = "pass"

    def cleanup(self) -> None:
        shutil.rmtree(self.tmpdir, ignore_errors=True)


def _check_options(o: Options) -> None:
    for name in ("empty", "duplicates", "near", "overlap", "pii", "length_outliers"):
        if getattr(o, name) not in SEVERITIES:
            raise UsageError(f"{name.replace('_', '-')} must be off, warning or error, got {getattr(o, name)!r}")
    if o.fail_on not in ("error", "warning"):
        raise UsageError(f"fail-on must be error or warning, got {o.fail_on!r}")
    if o.fmt:
        require_format(o.fmt)
    if o.max_tokens is not None and not o.tokenizer:
        raise UsageError("max-tokens needs a tokenizer to count with", "add --tokenizer PATH (a local folder)")
    if o.max_samples is not None and o.max_samples < o.min_samples:
        raise UsageError(f"max-samples ({o.max_samples}) is below min-samples ({o.min_samples})")
    if not 0 < o.near_threshold <= 1:
        raise UsageError(f"near-duplicate threshold must be in (0, 1], got {o.near_threshold}")


def _precheck(path: Path) -> None:
    """File-level problems that make the file unreadable as JSONL (exit 2)."""
    try:
        with open_binary(path) as fh:
            head = fh.read(4096)
    except (OSError, EOFError) as exc:
        raise InputError(f"{path}: cannot read: {exc}", "is it a complete file (and a valid gzip for .gz)?",
                         file=str(path)) from None
    if not head:
        raise InputError(f"input file {path} is empty", "add JSON lines to it or remove it from the inputs",
                         file=str(path))
    if head.startswith(BOM):
        raise InputError(f"{path}: file starts with a UTF-8 byte order mark (BOM)",
                         "save it as UTF-8 without BOM, e.g. sed -i '1s/^\\xEF\\xBB\\xBF//' FILE",
                         file=str(path), line=1)
    problem = sniff_encoding(head)
    if problem:
        raise encoding_error(path, problem)
    if not head.strip() and _only_whitespace(path):
        raise InputError(f"input file {path} holds only whitespace (blank lines), no rows",
                         "add JSON lines to it or remove it from the inputs", file=str(path))


def _only_whitespace(path: Path) -> bool:
    with open_binary(path) as fh:
        while True:
            block = fh.read(1 << 20)
            if not block:
                return True
            if block.strip():
                return False


def _detect(files: list[Path], max_line: int = MAX_LINE_BYTES) -> tuple[str | None, str]:
    seen = 0
    for path in files:
        for lines in LineBlocks(path, max_line=max_line):
            for no, line in enumerate(lines, 1):
                try:
                    row = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue
                fmt = detect_format(row)
                keys = ", ".join(list(row)[:6]) if isinstance(row, dict) else type(row).__name__
                return fmt, f"detected from {path}:{no}" if fmt else f"no preset matches the keys of {path}:{no} " \
                                                                        f"({keys})"
            seen += len(lines)
            if seen >= DETECT_LINES:
                return None, f"no JSON object in the first {DETECT_LINES} lines"
            break
    return None, "no line parses as JSON"


def _tasks(files: list[Path], workers: int) -> list[tuple[int, int, int | None]]:
    tasks = []
    for i, path in enumerate(files):
        gz = str(path).endswith(".gz")
        size = os.path.getsize(path)
        parts = 1 if gz or workers <= 1 or size < PARALLEL_BYTES // 2 else workers * 2
        tasks += [(i, a, b) for a, b in split_ranges(path, parts)] if parts > 1 else [(i, 0, None)]
    return tasks


def _worker(args):
    cfg, file_index, start, end = args
    try:
        return scan.scan_chunk(cfg, file_index, start, end)
    except LLMOpsError as exc:
        return exc


def _run(cfg: scan.ScanConfig, tasks, workers: int) -> list[scan.ChunkResult]:
    if workers <= 1 or len(tasks) <= 1:
        return [scan.scan_chunk(cfg, *task) for task in tasks]
    method = "fork" if sys.platform == "linux" and threading.active_count() == 1 else "spawn"
    with mp.get_context(method).Pool(min(workers, len(tasks))) as pool:
        results = pool.map(_worker, [(cfg, *t) for t in tasks], chunksize=1)
    for res in results:
        if isinstance(res, LLMOpsError):
            raise res
    return results


def validate(o: Options) -> Outcome:
    _check_options(o)
    files = expand_inputs(o.inputs, "input")
    eval_files = expand_inputs(o.eval_data, "eval-data") if o.eval_data else []
    for path in files:
        _precheck(path)
    if o.fmt:
        fmt, key_fmt, source = o.fmt, o.fmt, "given"
    else:
        detected, source = _detect(files, o.max_line)
        if detected is None and not o.schema:
            raise UsageError(f"cannot tell the data format: {source}",
                             "pass --format prompt-completion|chat|text, or --schema FILE for your own shape")
        fmt, key_fmt = (None, detected) if o.schema else (detected, detected)
    workers = o.workers or (min(2, os.cpu_count() or 1) if sum(
        os.path.getsize(p) for p in files if not str(p).endswith(".gz")) >= PARALLEL_BYTES else 1)
    if o.near != "off":
        workers = 1  # one shared LSH index
    tmpdir = tempfile.mkdtemp(prefix="validate-data-")
    try:
        cfg = scan.ScanConfig(
            files=tuple(str(p) for p in files), fmt=fmt, key_fmt=key_fmt, schema=o.schema, empty=o.empty, pii=o.pii,
            eval_files=tuple(str(p) for p in eval_files), ngram=o.ngram, overlap=o.overlap, tokenizer=o.tokenizer,
            max_tokens=o.max_tokens, near=o.near, near_threshold=o.near_threshold, keep=o.keep, spool_dir=tmpdir,
            max_line=o.max_line)
        if o.eval_data and o.overlap == "off":
            cfg = replace(cfg, eval_files=())
        scan.context(cfg)  # schema, eval data and tokenizer errors surface here, before any worker starts
        chunks = _run(cfg, _tasks(files, workers), workers)
        return _finish(o, cfg, files, fmt or key_fmt, source if not o.fmt else "given", chunks, tmpdir)
    except BaseException:
        shutil.rmtree(tmpdir, ignore_errors=True)
        raise


def _finish(o: Options, cfg, files, fmt, source, chunks, tmpdir) -> Outcome:
    from llmops.data.dataset_checks import dataset_checks

    chunks.sort(key=lambda c: (c.file_index, c.start))
    per_file = [0] * len(files)
    line_offsets, cursor = [], {}
    for c in chunks:
        line_offsets.append(cursor.get(c.file_index, 0))
        cursor[c.file_index] = line_offsets[-1] + c.lines
        per_file[c.file_index] += c.rows
    for path, rows in zip(files, per_file, strict=True):
        if rows == 0:
            raise InputError(f"input file {path} has no rows (only blank lines)", "add JSON lines or remove it",
                             file=str(path))
    out = Outcome(options=o, files=[str(p) for p in files], fmt=fmt, fmt_source=source,
                  rows=sum(per_file), chunks=chunks, line_offsets=line_offsets, counts={}, kept=[],
                  extra_spool=os.path.join(tmpdir, "dataset.jsonl"), rows_with_errors=0, rows_with_warnings=0,
                  dataset_errors=0, dataset_warnings=0, stats={}, tmpdir=tmpdir)
    for c, off in zip(chunks, line_offsets, strict=True):
        for key, n in c.counts.items():
            out.counts[key] = out.counts.get(key, 0) + n
        out.kept += [dict(p, line=p["line"] + off) for p in c.kept]
    flags = np.frombuffer(b"".join(bytes(c.flags) for c in chunks), dtype=np.uint8).copy()
    dataset_checks(out, flags, cfg)
    out.rows_with_errors = int(np.count_nonzero(flags & scan.ERR))
    out.rows_with_warnings = int(np.count_nonzero((flags & scan.WARN) & ~(flags & scan.ERR)))
    failing = out.rows_with_errors + out.dataset_errors
    if o.fail_on == "warning":
        failing += out.rows_with_warnings + out.dataset_warnings
    out.result = "fail" if failing else "pass"
    out.kept.sort(key=lambda p: (p["file"] is not None, out.files.index(p["file"]) if p["file"] else 0,
                                 p["line"] or 0))
    return out
