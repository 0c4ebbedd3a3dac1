"""Dataset-wide checks of validate-data, run on the merged per-row arrays after the streaming pass.

- exact duplicates: the 8-byte hashes of the normalised texts are sorted one slice of the hash space at a time
  (a sixteenth of them at once, half a byte per row) to find the hashes that occur more than once; only the rows holding
  those are then looked at, and each is reported with the first occurrence it repeats. Memory above the 13 bytes
  per row the arrays hold (hash 8, length 4, flags 1) stays at about 1 byte per row plus the duplicates;
- length outliers: rows whose length (tokens when a tokenizer is given, else characters) is beyond Tukey's far-out
  fences (3 x IQR) on the log scale (quartiles from the order statistics: the log is monotonic);
  percentiles are exact order statistics found with a 16-bit histogram and a second pass over the few rows in
  the bins that hold them, so no column is copied or sorted whole;
- sample counts: ``min-samples`` counts rows without errors, ``max-samples`` counts all rows;
- statistics for the report and summary (length percentiles and a power-of-two histogram).

Row ordinals map back to file lines (JSONL, through each chunk's list of skipped blank lines) or row indexes and
row groups (tables) with ``Locator``. Every problem goes to the run's ``ProblemSink``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from llmops.data.formats import Problem
from llmops.data.problems import DUP, ERR, NOKEY, WARN, Loc, ProblemSink

if TYPE_CHECKING:
    from llmops.data.validate import Options

SLICE = 1 << 16    # rows per step of the whole-array passes (their temporaries stay this small)
BUCKETS = 16       # slices of the hash space sorted one at a time


@dataclass
class Merged:
    """The per-row arrays of every chunk, in row order."""
    hashes: np.ndarray      # uint64
    lengths: np.ndarray     # uint32
    flags: np.ndarray       # uint8
    tokens: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.flags)


class Locator:
    """``Loc`` (file and line, or row index and row group) of global row ordinals."""

    def __init__(self, files: list[str], chunks, line_offsets: list[int]):
        self.files, self.chunks, self.offsets = files, chunks, line_offsets
        self.starts = np.cumsum([0] + [c.rows for c in chunks])

    def __call__(self, rows: np.ndarray) -> list[Loc]:
        chunks = self.chunks
        rows = np.asarray(rows, dtype=np.int64)
        which = np.searchsorted(self.starts, rows, side="right") - 1
        lines = np.empty(len(rows), dtype=np.int64)
        groups = np.full(len(rows), -1, dtype=np.int64)
        for ci in np.unique(which).tolist():
            sel = which == ci
            c = chunks[ci]
            rel = rows[sel] - self.starts[ci]
            if c.unit == "row":
                lines[sel] = rel
                if c.groups:
                    groups[sel] = np.searchsorted(np.asarray(c.groups), rel, side="right") - 1
                continue
            skips = np.frombuffer(c.skips.tobytes(), dtype=np.uint64).astype(np.int64)
            adjusted = skips - np.arange(len(skips))
            lines[sel] = self.offsets[ci] + rel + 1 + np.searchsorted(adjusted, rel + 1, side="right")
        out = []
        for ci, n, g in zip(which.tolist(), lines.tolist(), groups.tolist(), strict=True):
            c = chunks[ci]
            file = self.files[c.file_index]
            out.append(Loc(file, line=n) if c.unit == "line" else Loc(file, row=n, group=g if g >= 0 else None))
        return out


def _keyed(flags: np.ndarray, start: int, stop: int) -> np.ndarray:
    return (flags[start:stop] & NOKEY) == 0


def _repeated_hashes(m: Merged) -> np.ndarray:
    """Sorted hash values that more than one keyed row has."""
    n, found = len(m), []
    edges = [(2 ** 64 * i) // BUCKETS for i in range(BUCKETS + 1)]
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        parts = []
        for start in range(0, n, SLICE):
            h = m.hashes[start:start + SLICE]
            sel = _keyed(m.flags, start, start + SLICE) & (h >= np.uint64(lo))
            if hi < 2 ** 64:
                sel &= h < np.uint64(hi)
            parts.append(h[sel])
        bucket = np.concatenate(parts) if parts else np.empty(0, np.uint64)
        del parts
        bucket.sort()
        found.append(np.unique(bucket[1:][bucket[1:] == bucket[:-1]]))
        del bucket
    return np.concatenate(found) if found else np.empty(0, np.uint64)


def _member(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """``np.isin`` for a sorted set, without isin's sort of both arrays together."""
    idx = np.minimum(np.searchsorted(sorted_set, values), len(sorted_set) - 1)
    return sorted_set[idx] == values


def _duplicates(o: Options, m: Merged, locate: Locator, sink: ProblemSink) -> dict:
    repeated = _repeated_hashes(m)
    if not len(repeated):
        return {"duplicates": 0, "groups": 0}
    rows = np.concatenate([np.flatnonzero(_keyed(m.flags, s, s + SLICE) & _member(m.hashes[s:s + SLICE], repeated))
                           + s for s in range(0, len(m), SLICE)])
    order = np.argsort(m.hashes[rows], kind="stable")  # rows ascending within each hash
    grouped, h = rows[order], m.hashes[rows][order]
    starts = np.ones(len(h), dtype=bool)
    starts[1:] = h[1:] != h[:-1]
    first = grouped[np.flatnonzero(starts)][np.cumsum(starts) - 1]
    dup = ~starts
    dup_rows, first_rows = grouped[dup], first[dup]
    by_row = np.argsort(dup_rows, kind="stable")
    dup_rows, first_rows = dup_rows[by_row], first_rows[by_row]
    severity = o.duplicates
    m.flags[dup_rows] |= DUP | (ERR if severity == "error" else WARN)
    for start in range(0, len(dup_rows), 65536):
        for loc, floc in zip(locate(dup_rows[start:start + 65536]), locate(first_rows[start:start + 65536]),
                             strict=True):
            where = floc.text() if floc.file != loc.file else f"line {floc.line}" if floc.line is not None else \
                f"row {floc.row}"
            sink.add(Problem("$", f"exact duplicate of {where} (same text after whitespace normalisation)",
                             check="duplicates"), severity, loc)
    return {"duplicates": int(len(dup_rows)), "groups": int(len(repeated))}


def _keyed_slices(m: Merged, values: np.ndarray):
    """The values of keyed rows, one slice at a time (no copy of the whole column)."""
    for s in range(0, len(m), SLICE):
        yield values[s:s + SLICE][_keyed(m.flags, s, s + SLICE)]


def _order_stats(m: Merged, values: np.ndarray, ks: list[int]) -> dict[int, int]:
    """The ``k``-th smallest keyed values (0-based), exactly, in two passes of bounded memory: a histogram of the
    values' top 16 bits, then the values of the few bins that hold the wanted ranks."""
    top = max((int(v.max()) for v in _keyed_slices(m, values) if len(v)), default=0)
    shift = max(0, top.bit_length() - 16)
    counts = np.zeros((top >> shift) + 1, dtype=np.int64)
    for v in _keyed_slices(m, values):
        counts += np.bincount(v >> shift, minlength=len(counts))
    cum = np.cumsum(counts)
    bins = {k: int(np.searchsorted(cum, k, side="right")) for k in ks}
    found = {b: [] for b in set(bins.values())}
    wanted = np.array(sorted(found), dtype=np.int64)
    for v in _keyed_slices(m, values):
        hit = v[np.isin(v >> shift, wanted)]
        for b in found:
            found[b].append(hit[(hit >> shift) == b])
    ordered = {b: np.sort(np.concatenate(parts)) for b, parts in found.items()}
    return {k: int(ordered[b][k - (int(cum[b - 1]) if b else 0)]) for k, b in bins.items()}


def _lerp(a: float, b: float, t: float) -> float:
    """numpy's linear interpolation between order statistics (the same rounding as ``np.percentile``)."""
    return b - (b - a) * (1 - t) if t >= 0.5 else a + (b - a) * t


def _percentiles(m: Merged, values: np.ndarray, n: int, qs: list[float], transform=float) -> list[float]:
    """``np.percentile(transform(keyed values), qs)`` (linear method) for a monotonic ``transform``."""
    idx = [q / 100 * (n - 1) for q in qs]
    ks = sorted({int(np.floor(i)) for i in idx} | {min(int(np.floor(i)) + 1, n - 1) for i in idx})
    stats = _order_stats(m, values, ks)
    out = []
    for i in idx:
        lo = int(np.floor(i))
        out.append(_lerp(transform(stats[lo]), transform(stats[min(lo + 1, n - 1)]), i - lo))
    return out


def _keyed_count(m: Merged) -> int:
    return sum(int(np.count_nonzero(_keyed(m.flags, s, s + SLICE))) for s in range(0, len(m), SLICE))


def _outliers(o: Options, m: Merged, locate: Locator, sink: ProblemSink, lengths: np.ndarray, unit: str) -> dict:
    n = _keyed_count(m)
    if n < 20:
        return {"outliers": 0, "note": "fewer than 20 rows: no outlier test"}
    q1, q3 = _percentiles(m, lengths, n, [25, 75], lambda v: float(np.log1p(np.float64(v))))
    spread = max(q3 - q1, 0.25)
    lo, hi = float(np.expm1(q1 - 3 * spread)), float(np.expm1(q3 + 3 * spread))
    rows = np.concatenate([np.flatnonzero(_keyed(m.flags, s, s + SLICE) & ((lengths[s:s + SLICE] < lo)
                                                                          | (lengths[s:s + SLICE] > hi))) + s
                           for s in range(0, len(m), SLICE)] or [np.empty(0, np.int64)])
    severity = o.length_outliers
    m.flags[rows] |= ERR if severity == "error" else WARN
    typical = f"{int(np.expm1(q1))}-{int(np.expm1(q3))}"
    for loc, n in zip(locate(rows), lengths[rows].tolist(), strict=True):
        side = "long" if n > hi else "short"
        sink.add(Problem("$", f"unusually {side}: {n} {unit} (typical {typical}, allowed {max(0, int(lo))}-{int(hi)})",
                         check="length-outliers"), severity, loc)
    return {"outliers": int(len(rows)), "low": round(lo, 1), "high": round(hi, 1)}


def length_stats(m: Merged, values: np.ndarray) -> dict:
    """min, percentiles, max, mean and a power-of-two histogram of the keyed rows' lengths (``np.percentile``'s
    numbers, without a copy of the column)."""
    n = _keyed_count(m)
    if n == 0:
        return {}
    p50, p95, p99 = _percentiles(m, values, n, [50, 95, 99])
    low = min(int(v.min()) for v in _keyed_slices(m, values) if len(v))
    top = max(int(v.max()) for v in _keyed_slices(m, values) if len(v))
    total = sum(int(v.sum(dtype=np.uint64)) for v in _keyed_slices(m, values))
    edges = [0] + [2 ** k for k in range(max(1, top.bit_length()) + 1)]
    bins = edges + [edges[-1] + 1]
    counts = np.zeros(len(bins) - 1, dtype=np.int64)
    for v in _keyed_slices(m, values):
        counts += np.histogram(v, bins=bins)[0]
    uppers = edges[1:] + [edges[-1] + 1]
    hist = [{"from": a, "to": b - 1, "rows": c} for a, b, c in zip(edges, uppers, counts.tolist(), strict=True) if c]
    return {"min": low, "p50": round(p50, 1), "p95": round(p95, 1), "p99": round(p99, 1),
            "max": top, "mean": round(total / n, 1), "histogram": hist}


def dataset_checks(o: Options, m: Merged, locate: Locator, sink: ProblemSink) -> dict:
    """Run the dataset-wide checks; set their flags in ``m.flags``; return the statistics for the report."""
    stats: dict = {"chars": length_stats(m, m.lengths)}
    if m.tokens is not None:
        stats["tokens"] = length_stats(m, m.tokens)
    if o.duplicates != "off":
        stats["duplicates"] = _duplicates(o, m, locate, sink)
    if o.length_outliers != "off":
        use = m.tokens if m.tokens is not None else m.lengths
        stats["length_outliers"] = _outliers(o, m, locate, sink, use, "tokens" if m.tokens is not None else "chars")
    valid = sum(int(np.count_nonzero((m.flags[s:s + SLICE] & ERR) == 0)) for s in range(0, len(m), SLICE))
    stats["valid_rows"] = valid
    if valid < o.min_samples:
        sink.add(Problem("$", f"{valid} valid rows, fewer than min-samples {o.min_samples} ({len(m)} rows read, "
                         f"{len(m) - valid} with errors)", check="min-samples"))
    if o.max_samples is not None and len(m) > o.max_samples:
        sink.add(Problem("$", f"{len(m)} rows, more than max-samples {o.max_samples}", check="max-samples"))
    return stats
