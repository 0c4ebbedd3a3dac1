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
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import orjson

from llmops.data import scan
from llmops.data.dataset_checks import Merged
from llmops.data.formats import detect_format, require_format
from llmops.data.problems import ERR, WARN, ProblemSink
from llmops.data.reader import (
    BLOCK,
    BOM,
    MAX_LINE_BYTES,
    encoding_error,
    is_compressed,
    open_binary,
    sniff_encoding,
    split_ranges,
)
from llmops.data.rows import RowArrays
from llmops.data.sources import Source, Table, resolve
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
    write_clean: str | None = None    # write the rows that passed here (llmops/data/clean.py)


@dataclass
class Outcome:
    """What one run found, built once when every check has run (the report and summary read it)."""
    options: Options
    files: list[str]
    kinds: list[str]
    fmt: str | None
    fmt_source: str
    rows: int
    chunks: list[scan.ChunkResult]
    line_offsets: list[int]
    problems: ProblemSink                 # the tally of every problem (per-row ones merged from the chunks)
    rows_with_errors: int
    rows_with_warnings: int
    stats: dict
    tmpdir: str
    result: str = "pass"
    clean: dict | None = None             # {path, format, rows, sha256} of --write-clean

    @property
    def counts(self) -> dict[str, int]:
        return self.problems.counts

    @property
    def kept(self) -> list[dict]:
        return self.problems.kept

    @property
    def dataset_errors(self) -> int:
        return self.problems.dataset_errors

    @property
    def dataset_warnings(self) -> int:
        return self.problems.dataset_warnings

    @property
    def extra_spool(self) -> str:
        return self.problems.spool

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


def _head(path: Path) -> bytes:
    """The first block of a JSONL file, read once for the file-level checks and the format detection."""
    try:
        with open_binary(path) as fh:
            return fh.read(BLOCK)
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"{path}: cannot read: {exc}", "is it a complete file (and a valid gzip for .gz, zstd for "
                         ".zst)?", file=str(path)) from None


def _precheck(path: Path, head: bytes) -> None:
    """File-level problems that make the file unreadable as JSONL (exit 2)."""
    if not head:
        raise InputError(f"input file {path} is empty", "add JSON lines to it or remove it from the inputs",
                         file=str(path))
    if head.startswith(BOM):
        raise InputError(f"{path}: file starts with a UTF-8 byte order mark (BOM)",
                         "save it as UTF-8 without BOM, e.g. sed -i '1s/^\\xEF\\xBB\\xBF//' FILE",
                         file=str(path), line=1)
    problem = sniff_encoding(head[:4096])
    if problem:
        raise encoding_error(path, problem)
    if not head[:4096].strip() and _only_whitespace(path):
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


def _detect(src: Source, head: bytes | None, max_line: int) -> tuple[str | None, str]:
    """The preset of the first input, from its first parsable line or, for a table, its column names."""
    if src.table:
        names = Table(src).schema.names
        fmt = detect_format(dict.fromkeys(names))
        return fmt, f"detected from the columns of {src}" if fmt else f"no preset matches the columns of {src} " \
                                                                      f"({', '.join(names[:6])})"
    lines = head.split(b"\n")
    if len(head) == BLOCK:
        lines.pop()  # cut in the middle
        if not lines:  # the first line is longer than the head: read on to its end (or to max-line-bytes)
            from llmops.data.reader import LineBlocks

            lines = next(iter(LineBlocks(Path(src.path), max_line=max_line)), [])
    for no, line in enumerate(lines[:DETECT_LINES], 1):
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        fmt = detect_format(row)
        keys = ", ".join(list(row)[:6]) if isinstance(row, dict) else type(row).__name__
        return fmt, f"detected from {src}:{no}" if fmt else f"no preset matches the keys of {src}:{no} ({keys})"
    if len(lines) >= DETECT_LINES:
        return None, f"no JSON object in the first {DETECT_LINES} lines"
    return None, "no line parses as JSON"


def _tasks(sources: list[Source], workers: int) -> list[tuple[int, int, int | None]]:
    tasks = []
    for i, src in enumerate(sources):
        size = os.path.getsize(src.path) if not src.table else 0
        parts = 1 if src.table or is_compressed(src.path) or workers <= 1 or size < PARALLEL_BYTES // 2 \
            else workers * 2
        tasks += [(i, a, b) for a, b in split_ranges(Path(src.path), parts)] if parts > 1 else [(i, 0, None)]
    return tasks


def _scan(cfg: scan.ScanConfig, file_index: int, start: int, end: int | None) -> scan.ChunkResult:
    if cfg.kind(file_index) != "jsonl":
        from llmops.data.scan_table import scan_table

        return scan_table(cfg, file_index)
    return scan.scan_chunk(cfg, file_index, start, end)


def _worker(args):
    cfg, file_index, start, end = args
    try:
        return _scan(cfg, file_index, start, end)
    except LLMOpsError as exc:
        return exc


def _run(cfg: scan.ScanConfig, tasks, workers: int) -> list[scan.ChunkResult]:
    if workers <= 1 or len(tasks) <= 1:
        return [_scan(cfg, *task) for task in tasks]
    # pyarrow starts C++ threads that threading does not count, and a fork copies none of them: spawn then
    tables = any(cfg.kind(i) != "jsonl" for i in range(len(cfg.files)))
    method = "fork" if sys.platform == "linux" and threading.active_count() == 1 and not tables else "spawn"
    with mp.get_context(method).Pool(min(workers, len(tasks))) as pool:
        results = pool.map(_worker, [(cfg, *t) for t in tasks], chunksize=1)
    for res in results:
        if isinstance(res, LLMOpsError):
            raise res
    return results


def validate(o: Options) -> Outcome:
    _check_options(o)
    sources = resolve(o.inputs, "input")
    eval_sources = resolve(o.eval_data, "eval-data") if o.eval_data else []
    heads = {}
    for i, src in enumerate(sources):  # each JSONL file's head is read once: file-level checks and detection
        if not src.table:
            heads[i] = _head(Path(src.path))
            _precheck(Path(src.path), heads[i])
    if o.fmt:
        fmt, key_fmt, source = o.fmt, o.fmt, "given"
    else:
        detected, source = _detect(sources[0], heads.get(0), o.max_line)
        if detected is None and not o.schema:
            raise UsageError(f"cannot tell the data format: {source}",
                             "pass --format prompt-completion|chat|text, or --schema FILE for your own shape")
        fmt, key_fmt = (None, detected) if o.schema else (detected, detected)
    heads.clear()
    workers = o.workers or (min(2, os.cpu_count() or 1) if sum(
        os.path.getsize(s.path) for s in sources if not s.table and not is_compressed(s.path)) >= PARALLEL_BYTES
        else 1)
    if o.near != "off":
        workers = 1  # one shared LSH index
    tmpdir = tempfile.mkdtemp(prefix="validate-data-")
    try:
        cfg = scan.ScanConfig(
            files=tuple(s.path for s in sources), kinds=tuple(s.kind for s in sources), fmt=fmt, key_fmt=key_fmt,
            schema=o.schema, empty=o.empty, pii=o.pii, eval_files=tuple(s.path for s in eval_sources), ngram=o.ngram,
            overlap=o.overlap, tokenizer=o.tokenizer, max_tokens=o.max_tokens, near=o.near,
            near_threshold=o.near_threshold, keep=o.keep, spool_dir=tmpdir, max_line=o.max_line)
        if o.eval_data and o.overlap == "off":
            cfg = replace(cfg, eval_files=())
        scan.context(cfg)  # schema, eval data and tokenizer errors surface here, before any worker starts
        chunks = _run(cfg, _tasks(sources, workers), workers)
        return _finish(o, cfg, sources, fmt or key_fmt, source if not o.fmt else "given", chunks, tmpdir)
    except BaseException:
        shutil.rmtree(tmpdir, ignore_errors=True)
        raise


def _merge(chunks: list[scan.ChunkResult], total: int, tokens: bool) -> Merged:
    """Every chunk's spilled arrays as one array per field: the hashes and flags, which the duplicate check reads
    and sets, in memory (9 bytes per row); lengths and token counts memory-mapped from one file on disk (page cache
    the kernel can drop, read a slice at a time by the length checks)."""
    _release_memory()
    arrays = {}
    for name, code in RowArrays.FIELDS:
        if name == "tokens" and not tokens:
            continue
        dtype = np.dtype(code)
        paths = [c.arrays.files[name] for c in chunks]
        if name in ("lengths", "tokens") and total:
            path = paths[0]
            if len(paths) > 1:
                path = os.path.join(os.path.dirname(paths[0]), f"merged.{name}")
                with open(path, "wb") as out:
                    for part in paths:
                        with open(part, "rb") as fh:
                            shutil.copyfileobj(fh, out, 1 << 20)
                        os.unlink(part)
            arrays[name] = np.memmap(path, dtype=dtype, mode="r", shape=(total,))
            continue
        dest = np.empty(total, dtype=dtype)
        view, pos = memoryview(dest).cast("B"), 0
        for c, part in zip(chunks, paths, strict=True):
            with open(part, "rb") as fh:
                pos += fh.readinto(view[pos:pos + c.rows * dest.itemsize])
            os.unlink(part)
        arrays[name] = dest
    return Merged(arrays["hashes"], arrays["lengths"], arrays["flags"], arrays.get("tokens"))


def _release_memory() -> None:
    """Hand the memory the scan freed back to the system before the dataset-wide arrays are read: reading a table
    leaves the C library's heap as large as the biggest batches made it, and the arrays would come on top."""
    import ctypes

    if "pyarrow" in sys.modules:
        sys.modules["pyarrow"].default_memory_pool().release_unused()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _finish(o: Options, cfg: scan.ScanConfig, sources: list[Source], fmt, source, chunks, tmpdir) -> Outcome:
    from llmops.data.dataset_checks import Locator, dataset_checks

    chunks.sort(key=lambda c: (c.file_index, c.start))
    per_file = [0] * len(sources)
    line_offsets, cursor = [], {}
    for c in chunks:
        line_offsets.append(cursor.get(c.file_index, 0))
        cursor[c.file_index] = line_offsets[-1] + c.lines
        per_file[c.file_index] += c.rows
    for src, rows in zip(sources, per_file, strict=True):
        if rows == 0:
            raise InputError(f"input file {src} has no rows" + (" (only blank lines)" if not src.table else ""),
                             "add rows to it or remove it from the inputs", file=src.path)
    files = [s.path for s in sources]
    tally = ProblemSink(os.path.join(tmpdir, "dataset.jsonl"), o.keep, per_check=True)
    for c, off in zip(chunks, line_offsets, strict=True):
        tally.merge(c.sink, off)
    merged = _merge(chunks, sum(per_file), cfg.tokenizer is not None)
    try:
        stats = dataset_checks(o, merged, Locator(files, chunks, line_offsets), tally)
    finally:
        tally.close()
    flags = merged.flags
    del merged
    rows_with_errors = rows_with_warnings = 0
    for start in range(0, len(flags), 1 << 16):  # slices: a whole-column temporary would be a byte per row
        part = flags[start:start + (1 << 16)]
        rows_with_errors += int(np.count_nonzero(part & ERR))
        rows_with_warnings += int(np.count_nonzero((part & (WARN | ERR)) == WARN))
    failing = rows_with_errors + tally.dataset_errors
    if o.fail_on == "warning":
        failing += rows_with_warnings + tally.dataset_warnings
    tally.kept.sort(key=lambda p: (p["file"] is not None, files.index(p["file"]) if p["file"] else 0,
                                   p["line"] if p["line"] is not None else p.get("row", -1)))
    clean = None
    if o.write_clean:
        from llmops.data.clean import write_clean

        clean = write_clean(o.write_clean, sources, chunks, flags, o.fail_on == "warning", o.max_line)
    return Outcome(options=o, files=files, kinds=[s.kind for s in sources], fmt=fmt, fmt_source=source,
                   rows=sum(per_file), chunks=chunks, line_offsets=line_offsets, problems=tally,
                   rows_with_errors=rows_with_errors, rows_with_warnings=rows_with_warnings, stats=stats,
                   tmpdir=tmpdir, result="fail" if failing else "pass", clean=clean)
