"""Dataset-wide checks of validate-data, run on the merged per-row arrays after the streaming pass.

- exact duplicates: sort the 8-byte hashes of the normalised texts (16 bytes of memory per row at most) and report
  every row whose text appeared before, naming the first occurrence;
- length outliers: rows whose length (tokens when a tokenizer is given, else characters) is beyond Tukey's far-out
  fences (3 x IQR) on the log scale;
- sample counts: ``min-samples`` counts rows without errors, ``max-samples`` counts all rows;
- statistics for the report and summary (length percentiles and a power-of-two histogram).

Row ordinals map back to file lines through each chunk's list of skipped blank lines (``line_of``).
"""
from __future__ import annotations

import numpy as np
import orjson

from llmops.data import scan


class _Writer:
    def __init__(self, out):
        self.out = out
        self.fh = None
        self.kept: dict[str, int] = {}

    def add(self, check: str, severity: str, message: str, file: str | None = None, line: int | None = None,
            path: str = "$") -> None:
        rec = {"file": file, "line": line, "path": path, "check": check, "severity": severity, "message": message}
        key = f"{check}/{severity}"
        self.out.counts[key] = self.out.counts.get(key, 0) + 1
        if file is None:
            if severity == "error":
                self.out.dataset_errors += 1
            else:
                self.out.dataset_warnings += 1
        if self.kept.get(check, 0) < self.out.options.keep:
            self.kept[check] = self.kept.get(check, 0) + 1
            self.out.kept.append(rec)
        if self.fh is None:
            self.fh = open(self.out.extra_spool, "wb")
        self.fh.write(orjson.dumps(rec) + b"\n")

    def close(self) -> None:
        if self.fh:
            self.fh.close()


def _array(chunks, name: str, dtype) -> np.ndarray:
    return np.frombuffer(b"".join(getattr(c, name).tobytes() for c in chunks), dtype=dtype)


def line_of(out, rows: np.ndarray) -> list[tuple[str, int]]:
    """(file, line) of global row ordinals, in the order given."""
    chunks = out.chunks
    starts = np.cumsum([0] + [c.rows for c in chunks])
    rows = np.asarray(rows, dtype=np.int64)
    which = np.searchsorted(starts, rows, side="right") - 1
    lines = np.empty(len(rows), dtype=np.int64)
    for ci in np.unique(which).tolist():
        sel = which == ci
        c = chunks[ci]
        rel = rows[sel] - starts[ci]
        skips = np.frombuffer(c.skips.tobytes(), dtype=np.uint64).astype(np.int64)
        adjusted = skips - np.arange(len(skips))
        lines[sel] = out.line_offsets[ci] + rel + 1 + np.searchsorted(adjusted, rel + 1, side="right")
    return [(out.files[chunks[ci].file_index], line) for ci, line in zip(which.tolist(), lines.tolist(), strict=True)]


def _duplicates(out, w: _Writer, flags: np.ndarray, hashes: np.ndarray) -> dict:
    keyed = np.flatnonzero((flags & scan.NOKEY) == 0)
    order = np.argsort(hashes[keyed], kind="stable")
    sorted_h = hashes[keyed][order]
    starts = np.ones(len(sorted_h), dtype=bool)
    starts[1:] = sorted_h[1:] != sorted_h[:-1]
    dup_pos = np.flatnonzero(~starts)
    if len(dup_pos) == 0:
        return {"duplicates": 0, "groups": 0}
    run_first = np.maximum.accumulate(np.where(starts, np.arange(len(sorted_h)), 0))
    dup_rows = keyed[order[dup_pos]]
    first_rows = keyed[order[run_first[dup_pos]]]
    by_row = np.argsort(dup_rows, kind="stable")
    dup_rows, first_rows = dup_rows[by_row], first_rows[by_row]
    severity = out.options.duplicates
    flags[dup_rows] |= scan.ERR if severity == "error" else scan.WARN
    for start in range(0, len(dup_rows), 65536):
        dups = line_of(out, dup_rows[start:start + 65536])
        firsts = line_of(out, first_rows[start:start + 65536])
        for (file, line), (ffile, fline) in zip(dups, firsts, strict=True):
            where = f"line {fline}" if ffile == file else f"{ffile}:{fline}"
            w.add("duplicates", severity, f"exact duplicate of {where} (same text after whitespace normalisation)",
                  file, line)
    return {"duplicates": int(len(dup_rows)), "groups": int(np.count_nonzero(~starts[1:] & starts[:-1]))}


def _outliers(out, w: _Writer, flags: np.ndarray, lengths: np.ndarray, unit: str) -> dict:
    keyed = np.flatnonzero((flags & scan.NOKEY) == 0)
    if len(keyed) < 20:
        return {"outliers": 0, "note": "fewer than 20 rows: no outlier test"}
    logs = np.log1p(lengths[keyed].astype(np.float64))
    q1, q3 = np.percentile(logs, [25, 75])
    spread = max(q3 - q1, 0.25)
    lo, hi = float(np.expm1(q1 - 3 * spread)), float(np.expm1(q3 + 3 * spread))
    mask = (lengths[keyed] < lo) | (lengths[keyed] > hi)
    rows = keyed[mask]
    severity = out.options.length_outliers
    flags[rows] |= scan.ERR if severity == "error" else scan.WARN
    typical = f"{int(np.expm1(q1))}-{int(np.expm1(q3))}"
    for (file, line), n in zip(line_of(out, rows), lengths[rows].tolist(), strict=True):
        side = "long" if n > hi else "short"
        w.add("length-outliers", severity, f"unusually {side}: {n} {unit} (typical {typical}, allowed "
              f"{max(0, int(lo))}-{int(hi)})", file, line)
    return {"outliers": int(len(rows)), "low": round(lo, 1), "high": round(hi, 1)}


def length_stats(values: np.ndarray) -> dict:
    if len(values) == 0:
        return {}
    p50, p95, p99 = np.percentile(values, [50, 95, 99]).tolist()
    top = int(values.max())
    edges = [0] + [2 ** k for k in range(max(1, top.bit_length()) + 1)]
    counts = np.histogram(values, bins=edges + [edges[-1] + 1])[0].tolist()
    uppers = edges[1:] + [edges[-1] + 1]
    hist = [{"from": a, "to": b - 1, "rows": n} for a, b, n in zip(edges, uppers, counts, strict=True) if n]
    return {"min": int(values.min()), "p50": round(p50, 1), "p95": round(p95, 1), "p99": round(p99, 1),
            "max": top, "mean": round(float(values.mean()), 1), "histogram": hist}


def dataset_checks(out, flags: np.ndarray, cfg) -> None:
    o = out.options
    w = _Writer(out)
    chunks = out.chunks
    try:
        hashes = _array(chunks, "hashes", np.uint64)
        lengths = _array(chunks, "lengths", np.uint32)
        tokens = _array(chunks, "tokens", np.uint32) if cfg.tokenizer else None
        keyed = (flags & scan.NOKEY) == 0
        out.stats["chars"] = length_stats(lengths[keyed])
        if tokens is not None:
            out.stats["tokens"] = length_stats(tokens[keyed])
        if o.duplicates != "off":
            out.stats["duplicates"] = _duplicates(out, w, flags, hashes)
        if o.length_outliers != "off":
            use = tokens if tokens is not None else lengths
            out.stats["length_outliers"] = _outliers(out, w, flags, use, "tokens" if tokens is not None else "chars")
        valid = int(np.count_nonzero((flags & scan.ERR) == 0))
        out.stats["valid_rows"] = valid
        if valid < o.min_samples:
            w.add("min-samples", "error", f"{valid} valid rows, fewer than min-samples {o.min_samples} "
                  f"({out.rows} rows read, {out.rows - valid} with errors)")
        if o.max_samples is not None and out.rows > o.max_samples:
            w.add("max-samples", "error", f"{out.rows} rows, more than max-samples {o.max_samples}")
    finally:
        w.close()
