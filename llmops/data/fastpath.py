"""Columnar fast path of validate-data for batches of clean rows (the common case for big, good datasets).

For a batch of lines of a flat preset (``prompt-completion`` or ``text``) it parses, validates and hashes with
``map`` over C functions instead of a Python statement per row. It only accepts a batch when every row is a dict
with exactly the preset's fields, all non-empty strings, valid under the schema; otherwise it returns None and
``scan_chunk`` handles the batch row by row, which finds and explains the problems. Both paths compute the same
duplicate key (``checks.dedup_text``), which the tests assert.
"""
from __future__ import annotations

from operator import itemgetter

import numpy as np
import orjson
import xxhash

from llmops.data.checks import normalize

_STR = {str}
_DICT = {dict}
_PAD = [b"", b"", b""]  # three trailing newlines: look-ahead past the last line stays in bounds


def norm_field(line: bytes, text: str) -> str:
    """``normalize(text)``, cheap when the raw line shows no whitespace but single spaces and escaped newlines."""
    if line.isascii() and b"  " not in line:
        escapes = line.count(b"\\")
        if escapes == 0:
            return text.strip()
        if escapes == line.count(b"\\n"):  # every escape is \n: the only other whitespace is a newline
            flat = text.replace("\n", " ")
            if "  " not in flat:
                return flat.strip()
    return normalize(text)


def line_modes(lines: list[bytes]) -> np.ndarray:
    """Per raw line: 0 = its strings hold no whitespace but single spaces (normalising is ``strip``), 1 = also
    escaped newlines, none next to a space or another newline (``replace`` then ``strip``), 2 = anything else
    (non-ASCII, other escapes, double spaces: the full split/join). Vectorised over a batch small enough for the
    CPU cache; backslashes are rare, so escapes are examined only where they are."""
    n = len(lines)
    modes = np.where(np.fromiter(map(bytes.isascii, lines), dtype=bool, count=n), 0, 2).astype(np.uint8)
    buf = np.frombuffer(b"\n".join(lines + _PAD), dtype=np.uint8)
    even = len(buf) // 2 * 2
    bad = []
    if (buf[:even].view(np.uint16) == 0x2020).any() or (buf[1:1 + (len(buf) - 1) // 2 * 2].view(np.uint16)
                                                         == 0x2020).any():
        sp = buf == 32
        bad.append(np.flatnonzero(sp[:-1] & sp[1:]))
    bs = np.flatnonzero(buf == 92)
    if len(bs) or bad:
        ends = np.cumsum(np.fromiter(map(len, lines), dtype=np.int64, count=n) + 1)
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


def _norm(mode: int, text: str) -> str:
    if mode == 0:
        return text.strip()
    if mode == 1:
        return text.replace("\n", " ").strip()
    return normalize(text)


def fast_batch(lines: list[bytes], k1: str, k2: str | None, is_valid) -> tuple[list[int], list[int]] | None:
    """``(hashes, lengths)`` for every line of the batch, or None when any row needs the careful path."""
    try:
        rows = list(map(orjson.loads, lines))
    except orjson.JSONDecodeError:
        return None
    if set(map(type, rows)) != _DICT or set(map(len, rows)) != {1 if k2 is None else 2}:
        return None
    if is_valid is not None and not all(map(is_valid, rows)):
        return None
    try:
        a = list(map(itemgetter(k1), rows))
        b = list(map(itemgetter(k2), rows)) if k2 is not None else None
    except KeyError:
        return None
    if set(map(type, a)) != _STR or not all(a) or any(map(str.isspace, a)):
        return None
    modes = line_modes(lines)
    if b is not None:
        if set(map(type, b)) != _STR or not all(b) or any(map(str.isspace, b)):
            return None
        texts = list(map("\x1f".join, zip(map(str.strip, a), map(str.strip, b), strict=True)))  # mode 0
        for i in np.flatnonzero(modes).tolist():
            texts[i] = _norm(modes[i], a[i]) + "\x1f" + _norm(modes[i], b[i])
    else:
        texts = list(map(str.strip, a))
        for i in np.flatnonzero(modes).tolist():
            texts[i] = _norm(modes[i], a[i])
    hashes = list(map(xxhash.xxh3_64_intdigest, map(str.encode, texts)))
    return hashes, list(map(len, texts))
