"""The streaming pass of validate-data over one table (Parquet, Arrow, CSV/TSV, a save_to_disk folder), column at a
time where it can be.

First the file's column types are checked against the preset once (llmops/data/sources.py ``column_problems``):
a missing column or a column of ints where text is expected is one error naming the file, the column, the type
found and the type expected; every row of the file then counts as having an error. Otherwise each record batch
goes through the columnar fast path (flat presets, no optional per-row check): each key column is normalised from
its buffers (``fastpath.arrow_normalized``: numpy finds the strings that are printable ASCII with single spaces and
newlines, whose normalising is a newline-to-space edit and a trim; only the others are normalised in Python), the
columns are joined by Arrow and each joined key hashed with xxh3, so the duplicate key, its hash and length are the
ones the JSONL path computes and a Parquet row duplicating a JSONL row is found. Empty or whitespace-only strings are
found in every text column and the schema's string length bounds checked per column. Rows the fast path does not
accept (nulls, empty strings, nested columns, a schema beyond length bounds) go through ``RowState.judge`` one by
one, which explains their problems. Rows are named by their 0-based index and, for Parquet, their row group.
"""
from __future__ import annotations

import numpy as np
import xxhash

from llmops.data.fastpath import arrow_normalized, arrow_strings, from_arrow, offsets_of, to_arrow
from llmops.data.formats import Problem
from llmops.data.problems import ERR, NOKEY, Loc
from llmops.data.scan import FLAT, ChunkResult, RowState, ScanConfig, context, finish_chunk, new_chunk
from llmops.data.sources import Source, Table, column_problems, is_text, table_rows


def _text(col):
    """A text column as a plain (large_)string array without nulls, or None when it has nulls."""
    import pyarrow as pa

    if col.null_count:
        return None
    if pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)
    if pa.types.is_string_view(col.type):
        col = col.cast(pa.large_string())
    return col


def _lengths(arr, wide_rows: np.ndarray) -> np.ndarray:
    """Char length of every string of an Arrow string array: its byte length, counted with ``utf8_length`` only in
    the rows that hold non-ASCII."""
    import pyarrow.compute as pc

    out = np.diff(offsets_of(arr)).astype(np.int64)
    if len(wide_rows):
        out[wide_rows] = from_arrow(pc.utf8_length(arr.take(to_arrow(wide_rows))))
    return out


def _prepare(batch, keys: tuple[str, ...], limits, empty: bool) -> tuple[object, np.ndarray, np.ndarray] | None:
    """``(duplicate keys, their lengths, accepted)`` for a batch, or None when the batch has a column only rows can
    check (Arrow and numpy work; run in a second thread it took more time than it saved, holding Python's lock
    between calls).

    The duplicate key is the JSONL fast path's (``normalize`` of each field, joined by U+001F), built column at a
    time: ``fastpath.arrow_normalized`` on each key column, then Arrow's join."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n = batch.num_rows
    ok = np.ones(n, dtype=bool)
    normed, wide = [], []
    for name in keys:
        col = _text(batch.column(name))
        if col is None:
            return None  # a null: the rows say which
        norm, wide_rows = arrow_normalized(col)
        if limits is not None:
            lo, hi = limits[name]
            length = _lengths(col, wide_rows)
            ok &= (length >= lo) & (length <= hi)
        ok &= from_arrow(pc.binary_length(norm)) > 0  # empty or whitespace-only
        normed.append(norm)
        wide.append(wide_rows)
    for name, field in zip(batch.schema.names, batch.schema, strict=True):
        if name in keys:
            continue
        t = field.type
        if pa.types.is_nested(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t):
            return None  # strings inside lists/structs (or bytes): the row walk finds their empty values
        if empty and is_text(t):
            col = batch.column(name)
            if pa.types.is_dictionary(t):
                col = col.cast(t.value_type)
            blank = pc.or_(pc.equal(pc.utf8_length(col), 0), pc.utf8_is_space(col))
            ok &= ~from_arrow(pc.fill_null(blank, False))
    key = normed[0] if len(normed) == 1 else pc.binary_join_element_wise(*normed, arrow_strings(["\x1f"])[0])
    return key, _lengths(key, np.unique(np.concatenate(wide))).astype(np.uint32), ok


def _hashes(key) -> np.ndarray:
    """xxh3 of each key's UTF-8 bytes, as the JSONL path hashes its keys (one call per row, holding Python's lock)."""
    import pyarrow as pa

    binary = key.cast(pa.large_binary() if pa.types.is_large_string(key.type) else pa.binary())
    return np.fromiter(map(xxhash.xxh3_64_intdigest, binary.to_pylist()), dtype=np.uint64, count=len(key))


def scan_table(cfg: ScanConfig, file_index: int) -> ChunkResult:
    ctx = context(cfg)
    src = Source(cfg.files[file_index], cfg.kind(file_index))
    table = Table(src)
    res = new_chunk(cfg, file_index, 0, unit="row")
    res.groups = table.groups
    rows = res.arrays
    try:
        wrong = column_problems(table.schema, cfg.fmt)
        if wrong:
            for col, message in wrong:
                res.sink.add(Problem(f"$.{col}", message), loc=Loc(src.path))
            for _start, _group, batch in table.batches(columns=[] if src.kind == "parquet" else None):
                n = batch.num_rows
                rows.extend_raw(bytes(8 * n), bytes(4 * n), bytes([ERR | NOKEY]) * n)
                rows.maybe_flush()
            return finish_chunk(cfg, ctx, res)
        k1, k2 = FLAT.get(cfg.key_fmt, (None, None))
        keys = () if k1 is None else (k1,) if k2 is None else (k1, k2)
        state = RowState(cfg, ctx, res)
        names = set(table.schema.names)
        limits = None
        fast = bool(keys) and not state.extra_checks and set(keys) <= names and all(
            is_text(table.schema.field(k).type) for k in keys)
        if fast and ctx.schema is not None:
            limits = ctx.schema.string_limits(keys) if names == set(keys) else None
            fast = limits is not None
        empty = cfg.empty != "off"
        for start, group, batch in table.batches():
            got = _prepare(batch, keys, limits, empty) if fast else None
            n = batch.num_rows
            if got is None:
                hashes, lengths, ok = np.zeros(n, np.uint64), np.zeros(n, np.uint32), np.zeros(n, dtype=bool)
            else:
                key, lengths, ok = got
                hashes = _hashes(key)
            flags = np.zeros(n, dtype=np.uint8)
            slow = np.flatnonzero(~ok)
            if len(slow):
                base = len(rows)
                picked = batch if len(slow) == n else batch.take(to_arrow(slow))
                for i, row in zip(slow.tolist(), table_rows(picked), strict=True):
                    loc = Loc(src.path, row=start + i, group=group)
                    hashes[i], lengths[i], flags[i] = state.judge(base + i, loc, row)
            rows.extend_raw(hashes.tobytes(), lengths.tobytes(), flags.tobytes())
            state.flush_tokens(full_only=True)
            rows.maybe_flush(state.pending())
        state.flush_tokens()
    finally:
        res.sink.close()
    res.lines = len(rows)
    return finish_chunk(cfg, ctx, res)
