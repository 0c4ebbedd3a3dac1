"""The streaming pass of validate-data over one table (Parquet, Arrow, CSV/TSV, a save_to_disk folder), column at a
time where it can be.

First the file's column types are checked against the preset once (llmops/data/sources.py ``column_problems``):
a missing column or a column of ints where text is expected is one error naming the file, the column, the type
found and the type expected; every row of the file then counts as having an error. Otherwise each record batch
goes through the columnar fast path (flat presets, no optional per-row check): pyarrow.compute normalises the
whitespace exactly as ``checks.normalize`` does (the regex class below is every code point ``str.isspace`` holds),
finds empty or whitespace-only strings in every text column and checks the schema's string length bounds; the
duplicate key, its hash and length are the same as the JSONL path computes, so a Parquet row duplicating a JSONL
row is found. Rows the fast path does not accept (nulls, empty strings, nested columns, a schema beyond length
bounds) go through ``RowState.judge`` one by one, which explains their problems. Rows are named by their 0-based
index and, for Parquet, their row group.
"""
from __future__ import annotations

import numpy as np
import xxhash

from llmops.data.formats import Problem
from llmops.data.problems import ERR, NOKEY, Loc
from llmops.data.scan import FLAT, ChunkResult, RowState, ScanConfig, context, finish_chunk, new_chunk
from llmops.data.sources import Source, Table, column_problems, is_text, table_rows

SPACE = r"[\t\n\x0b\x0c\r\x1c-\x1f \x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}]+"


def _normalised(col):
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)
    return pc.utf8_trim(pc.replace_substring_regex(col, SPACE, " "), " ")


def _fast(batch, keys: tuple[str, ...], limits, empty: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """``(hashes, lengths, accepted)`` for a batch, or None when the batch has a column only rows can check."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n = batch.num_rows
    ok = np.ones(n, dtype=bool)
    normed = []
    for name in keys:
        col = batch.column(name)
        norm = _normalised(col)
        ok &= pc.fill_null(pc.greater(pc.utf8_length(norm), 0), False).to_numpy(zero_copy_only=False)
        if limits is not None:
            lo, hi = limits[name]
            length = pc.fill_null(pc.utf8_length(col), 0).to_numpy(zero_copy_only=False)
            ok &= (length >= lo) & (length <= hi)
        normed.append(pc.fill_null(norm, ""))
    for name, field in zip(batch.schema.names, batch.schema, strict=True):
        if name in keys:
            continue
        t = field.type
        if pa.types.is_nested(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t):
            return None  # strings inside lists/structs (or bytes): the row walk finds their empty values
        if empty and is_text(t):
            blank = pc.equal(pc.utf8_length(_normalised(batch.column(name))), 0)
            ok &= ~pc.fill_null(blank, False).to_numpy(zero_copy_only=False)
    joined = normed[0] if len(normed) == 1 else pc.binary_join_element_wise(*normed, "\x1f")
    lengths = pc.utf8_length(joined).to_numpy(zero_copy_only=False).astype(np.uint32)
    data = joined.cast(pa.binary()).to_pylist()
    hashes = np.fromiter(map(xxhash.xxh3_64_intdigest, data), dtype=np.uint64, count=n)
    return hashes, lengths, ok


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
            return finish_chunk(cfg, ctx, res)
        k1, k2 = FLAT.get(cfg.key_fmt, (None, None))
        keys = () if k1 is None else (k1,) if k2 is None else (k1, k2)
        state = RowState(cfg, ctx, res)
        names = set(table.schema.names)
        limits = None
        fast = bool(keys) and cfg.fmt is not None and not state.extra_checks and set(keys) <= names
        if fast and ctx.schema is not None:
            limits = ctx.schema.string_limits(keys) if names == set(keys) else None
            fast = limits is not None
        for start, group, batch in table.batches():
            got = _fast(batch, keys, limits, cfg.empty != "off") if fast else None
            n = batch.num_rows
            if got is None:
                hashes, lengths, ok = np.zeros(n, np.uint64), np.zeros(n, np.uint32), np.zeros(n, dtype=bool)
            else:
                hashes, lengths, ok = got
            flags = np.zeros(n, dtype=np.uint8)
            slow = np.flatnonzero(~ok)
            if len(slow):
                base = len(rows)
                picked = batch if len(slow) == n else batch.take(slow)
                for i, row in zip(slow.tolist(), table_rows(picked), strict=True):
                    loc = Loc(src.path, row=start + i, group=group)
                    hashes[i], lengths[i], flags[i] = state.judge(base + i, loc, row)
            rows.extend_raw(hashes.tobytes(), lengths.tobytes(), flags.tobytes())
            state.flush_tokens(full_only=True)
        state.flush_tokens()
    finally:
        res.sink.close()
    res.lines = len(rows)
    return finish_chunk(cfg, ctx, res)
