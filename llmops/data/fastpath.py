"""Columnar fast path of validate-data for batches of clean rows (the common case for big, good datasets).

For a batch of lines of a flat preset (``prompt-completion`` or ``text``) it parses, validates and hashes with
``map`` over C functions instead of a Python statement per row. It only accepts a batch when every row is a dict
with exactly the preset's fields, all non-empty strings, valid under the schema; otherwise it returns None and
``scan_chunk`` handles the batch row by row, which finds and explains the problems. Both paths compute the same
duplicate key (``checks.dedup_text``), which the tests assert.
"""
from __future__ import annotations

from array import array
from itertools import chain, repeat
from operator import itemgetter

import numpy as np
import orjson
import xxhash

from llmops.data.checks import norm_field, normalize  # noqa: F401 - norm_field: importable from here as before

_INF = float("inf")
_PAD = b"\n\n\n"  # look-ahead past the last line stays in bounds


def line_modes(lines: list[bytes]) -> np.ndarray:
    """Per raw line: 0 = its strings hold no whitespace but single spaces (normalising is ``strip``), 1 = also
    escaped newlines, none next to a space or another newline (``replace`` then ``strip``), 2 = anything else
    (non-ASCII, other escapes, double spaces: the full split/join). Vectorised over a batch small enough for the
    CPU cache; backslashes are rare, so escapes are examined only where they are."""
    n = len(lines)
    modes = np.where(np.fromiter(map(bytes.isascii, lines), dtype=bool, count=n), 0, 2).astype(np.uint8)
    buf = np.frombuffer(b"".join([*lines, _PAD]), dtype=np.uint8)  # lines may end with their newline or not
    even = len(buf) // 2 * 2
    bad = []
    if (buf[:even].view(np.uint16) == 0x2020).any() or (buf[1:1 + (len(buf) - 1) // 2 * 2].view(np.uint16)
                                                         == 0x2020).any():
        sp = buf == 32
        bad.append(np.flatnonzero(sp[:-1] & sp[1:]))
    bs = np.flatnonzero(buf == 92)
    if len(bs) or bad:
        ends = np.cumsum(np.frombuffer(array("q", map(len, lines)), dtype=np.int64))
        if len(bs):
            after = buf[bs + 1]
            esc = bs[after == 110]
            bad.append(bs[after != 110])
            crowded = (buf[esc - 1] == 32) | (buf[esc + 2] == 32) | ((buf[esc + 2] == 92) & (buf[esc + 3] == 110))
            bad.append(esc[crowded])
            ones = np.searchsorted(ends, esc, side="right")
            modes[ones] = np.maximum(modes[ones], 1)
        for positions in bad:
            modes[np.searchsorted(ends, positions, side="right")] = 2
    return modes


def fast_batch(lines: list[bytes], k1: str, k2: str | None, is_valid,
               limits: dict[str, tuple[int, float]] | None = None) -> tuple[array, array] | None:
    """``(hashes, lengths)`` for every line of the batch, or None when any row needs the careful path.
    ``limits`` (``RowSchema.string_limits``) stands for ``is_valid`` with per-field length bounds checked with
    ``min``/``max`` over the batch."""
    keys = (k1,) if k2 is None else (k1, k2)
    try:
        rows = list(map(orjson.loads, lines))
        if set(map(len, rows)) != {len(keys)}:
            return None
        cols = [list(map(itemgetter(key), rows)) for key in keys]  # TypeError: a row is not an object
        if limits is not None:
            _, hi = min(limits.values(), key=itemgetter(1))
            if max(map(len, lines)) > hi:  # a string is at most as long as its JSON line: only then look
                for key, col in zip(keys, cols, strict=True):
                    if max(map(len, col)) > limits[key][1]:
                        return None
            for key, col in zip(keys, cols, strict=True):
                if limits[key][0] > 1 and min(map(len, col)) < limits[key][0]:
                    return None
        elif is_valid is not None and not all(map(is_valid, rows)):
            return None
        modes = line_modes(lines)
        norm = [normalized(col, modes) for col in cols]  # TypeError: a value is not a string
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    if any("" in col for col in norm):  # an empty or whitespace-only field (str.strip and str.isspace agree)
        return None
    texts = list(map("\x1f".join, zip(*norm, strict=True))) if k2 is not None else norm[0]
    return array("Q", map(xxhash.xxh3_64_intdigest, map(str.encode, texts))), array("I", map(len, texts))


def normalized(col: list[str], modes: np.ndarray) -> list[str]:
    """``normalize`` of every string of a column, given the ``line_modes`` of their lines (or the
    ``string_modes`` of the strings)."""
    out = list(map(str.strip, col))
    if modes.any():
        ones, twos = np.flatnonzero(modes == 1).tolist(), np.flatnonzero(modes == 2).tolist()
        flat = map(str.strip, map(str.replace, map(col.__getitem__, ones), repeat("\n"), repeat(" ")))
        for i, text in zip(ones + twos, chain(flat, map(_careful, map(col.__getitem__, twos))), strict=True):
            out[i] = text
    return out


def string_modes(arr) -> np.ndarray:
    """``line_modes`` for the strings of an Arrow string array (no nulls), read from its buffers: 0 = ASCII whose
    only whitespace is single spaces, 1 = also newlines, none next to a space or another newline, 2 = anything
    else. A pair that straddles two strings marks the first one 2, which only costs time."""
    n = len(arr)
    wide = str(arr.type) == "large_string"
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64 if wide else np.int32)[arr.offset:arr.offset + n + 1]
    modes = np.zeros(n, dtype=np.uint8)
    if not n or offsets[-1] == offsets[0]:
        return modes
    buf = np.frombuffer(arr.buffers()[2], dtype=np.uint8)[offsets[0]:offsets[-1]]
    ends = offsets[1:] - offsets[0]
    newline = buf == 10
    ws = buf == 32
    ws |= newline
    odd = np.flatnonzero((buf - np.uint8(32)) >= 96)  # control characters (wrapped below 32), non-ASCII bytes
    odd = odd[buf[odd] != 10]                         # ... but a newline is mode 1
    lines = np.flatnonzero(newline)
    if len(lines):
        modes[np.searchsorted(ends, lines, side="right")] = 1
    for positions in (np.flatnonzero(ws[:-1] & ws[1:]), odd):  # two spaces, a newline next to a space/newline
        if len(positions):
            modes[np.searchsorted(ends, positions, side="right")] = 2
    return modes


def _careful(text: str) -> str:
    """``normalize`` for any text, cheap when its only whitespace besides single spaces is newlines (no printable
    character is whitespace except the space, so a printable text with no double space needs only ``strip``)."""
    flat = text.replace("\n", " ")
    if flat.isprintable() and "  " not in flat:
        return flat.strip()
    return normalize(text)
