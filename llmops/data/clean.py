"""``--write-clean PATH``: the rows that passed validate-data, in the input's format, so a pipeline trains on exactly
what was validated.

A row is kept when it has no error, is not an exact (or near) duplicate of an earlier row when those checks are on,
and, with ``fail-on: warning``, has no warning. JSONL inputs are copied line by line, byte for byte (PATH's suffix
picks plain, .gz or .zst); table inputs (Parquet, Arrow, CSV/TSV, save_to_disk folders) are written as Parquet,
Arrow IPC or CSV/TSV by PATH's suffix, with their columns and types as read. The file is written beside PATH and
renamed into place when complete; PATH may not be one of the inputs. Returns ``{path, format, rows, sha256}``: the
sha256 is the one train records for its input files (llmops/data/sources.py ``sha256``).
"""
from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from llmops.data.problems import DUP, ERR, WARN
from llmops.data.reader import LineBlocks
from llmops.data.sources import Source, Table, kind_of, sha256
from llmops.errors import InputError, UsageError

TABLE_OUT = ("parquet", "arrow", "csv", "tsv")


def output_kind(path: str, sources: list[Source]) -> str:
    """The format PATH's suffix names, checked against the inputs'; UsageError when they cannot match."""
    kind = kind_of(path)
    tables = {s.table for s in sources}
    if len(tables) > 1:
        raise UsageError("write-clean: the inputs mix JSONL and table files, so there is no one input format to write",
                         "validate the JSONL and the table inputs in separate steps, each with its own write-clean")
    if True in tables:
        if kind not in TABLE_OUT:
            raise UsageError(f"write-clean {path}: the inputs are tables ({sources[0].kind}), so the clean rows are "
                             "written as a table", "end the path in .parquet, .arrow, .csv or .tsv")
    elif kind != "jsonl" or not str(path).endswith((".jsonl", ".jsonl.gz", ".jsonl.zst", ".json")):
        raise UsageError(f"write-clean {path}: the inputs are JSONL, so the clean rows are written as JSONL",
                         "end the path in .jsonl, .jsonl.gz or .jsonl.zst")
    return kind


def _keep_mask(flags: np.ndarray, strict: bool) -> np.ndarray:
    bad = ERR | DUP | (WARN if strict else 0)
    return (flags & bad) == 0


def _open_text_out(path: str, name: str):
    """``path`` opened for writing, compressed as ``name``'s suffix says."""
    if name.endswith(".gz"):
        return gzip.open(path, "wb")
    if name.endswith(".zst"):
        import zstandard

        return zstandard.ZstdCompressor().stream_writer(open(path, "wb"), closefd=True)
    return open(path, "wb", buffering=1 << 20)


def _write_jsonl(tmp: str, name: str, sources, keep: np.ndarray, max_line: int) -> int:
    written, row = 0, 0
    with _open_text_out(tmp, name) as out:
        for src in sources:
            for lines in LineBlocks(Path(src.path), keep_ends=True, max_line=max_line):
                for line in lines:
                    if not line.strip():
                        continue
                    if keep[row]:
                        out.write(line if line.endswith(b"\n") else line + b"\n")
                        written += 1
                    row += 1
    return written


def _write_table(tmp: str, kind: str, sources, keep: np.ndarray) -> int:
    import pyarrow as pa

    writer, schema, row, written = None, None, 0, 0
    try:
        for src in sources:
            for _start, _group, batch in Table(src).batches():
                mask = keep[row:row + batch.num_rows]
                row += batch.num_rows
                part = batch.filter(pa.array(mask))
                if writer is None:
                    schema = part.schema
                    writer = _writer(tmp, kind, schema)
                elif part.schema != schema:
                    try:
                        part = part.cast(schema)
                    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError):
                        raise UsageError(f"write-clean: {src} has other columns or types than {sources[0]} "
                                         f"({part.schema.names} vs {schema.names})",
                                         "give inputs with the same columns, or validate them in separate steps"
                                         ) from None
                if part.num_rows:
                    try:
                        writer.write_batch(part)
                    except pa.ArrowNotImplementedError as exc:  # nested columns into CSV
                        raise UsageError(f"write-clean: cannot write {src}'s columns as {kind}: {exc}",
                                         "end the path in .parquet or .arrow, which hold nested columns") from None
                    written += part.num_rows
    finally:
        if writer is not None:
            writer.close()
    return written


def _writer(path: str, kind: str, schema):
    import pyarrow as pa

    if kind == "parquet":
        import pyarrow.parquet as pq

        return pq.ParquetWriter(path, schema)
    if kind == "arrow":
        return pa.ipc.new_file(path, schema)
    import pyarrow.csv as pacsv

    return pacsv.CSVWriter(path, schema, write_options=pacsv.WriteOptions(delimiter="\t" if kind == "tsv" else ","))


def write_clean(path: str, sources: list[Source], chunks, flags: np.ndarray, strict: bool, max_line: int) -> dict:
    kind = output_kind(path, sources)
    keep = _keep_mask(flags, strict)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = str(target.with_name(f".{target.name}.partial"))
    try:
        if kind == "jsonl":
            rows = _write_jsonl(tmp, str(target), sources, keep, max_line)
        else:
            rows = _write_table(tmp, kind, sources, keep)
        os.replace(tmp, target)
    except OSError as exc:
        raise InputError(f"cannot write the clean rows to {path}: {exc.strerror or exc}",
                         "give write-clean a writable path") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return {"path": str(path), "format": kind, "rows": rows, "sha256": sha256(str(target))}
