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
    """``normalize`` of every string of a column, given the ``line_modes`` of their lines."""
    out = list(map(str.strip, col))
    if modes.any():
        ones, twos = np.flatnonzero(modes == 1).tolist(), np.flatnonzero(modes == 2).tolist()
        flat = map(str.strip, map(str.replace, map(col.__getitem__, ones), repeat("\n"), repeat(" ")))
        for i, text in zip(ones + twos, chain(flat, map(_careful, map(col.__getitem__, twos))), strict=True):
            out[i] = text
    return out


def to_arrow(values: np.ndarray):
    """A numpy int64 or bool array as Arrow, sharing or packing its buffer (``pa.array`` of a numpy array imports
    pandas: a fifth of a second the first time)."""
    import pyarrow as pa

    if values.dtype == bool:
        return pa.Array.from_buffers(pa.bool_(), len(values), [None, pa.py_buffer(np.packbits(values,
                                                                                               bitorder="little"))])
    values = np.ascontiguousarray(values, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), len(values), [None, pa.py_buffer(values)])


def arrow_strings(texts: list[str], large: bool = False):
    """Python strings as an Arrow (large_)string array, built from one joined buffer."""
    import pyarrow as pa

    encoded = [t.encode() for t in texts]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64 if large else np.int32)
    np.cumsum(np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)), out=offsets[1:])
    return pa.Array.from_buffers(pa.large_string() if large else pa.string(), len(encoded),
                                 [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))])


def offsets_of(arr) -> np.ndarray:
    """The ``len(arr) + 1`` offsets of an Arrow (large_)string or binary array into its data buffer."""
    import pyarrow as pa

    large = pa.types.is_large_string(arr.type) or pa.types.is_large_binary(arr.type)
    return np.frombuffer(arr.buffers()[1], dtype=np.int64 if large else np.int32)[arr.offset:arr.offset + len(arr) + 1]


def from_arrow(arr) -> np.ndarray:
    """An Arrow integer or boolean array without nulls as numpy, read from its buffers (``Array.to_numpy`` imports
    pandas too)."""
    import pyarrow as pa

    n, start = len(arr), arr.offset
    if pa.types.is_boolean(arr.type):
        bits = np.frombuffer(arr.buffers()[1], dtype=np.uint8)
        return np.unpackbits(bits, bitorder="little")[start:start + n].view(bool)
    return np.frombuffer(arr.buffers()[1], dtype=f"<i{arr.type.bit_width // 8}")[start:start + n]


# Python's whitespace (what ``str.split`` splits on) beyond ASCII, as the UTF-8 byte pairs / triples that spell it
_WIDE_SPACE = [chr(c).encode() for c in range(128, 0x3001) if chr(c).isspace()]
_WIDE2 = np.array([b[0] << 8 | b[1] for b in _WIDE_SPACE if len(b) == 2], dtype=np.int64)
_WIDE3 = np.array([b[0] << 16 | b[1] << 8 | b[2] for b in _WIDE_SPACE if len(b) == 3], dtype=np.int64)
assert all(len(b) in (2, 3) for b in _WIDE_SPACE)


def arrow_normalized(arr) -> tuple[object, np.ndarray]:
    """``(normalize of every string, rows holding non-ASCII)`` for an Arrow string array without nulls, from its
    buffers: a string whose only whitespace is spaces and newlines, no two of them side by side, is normalised by
    turning each newline into a space and trimming the spaces at its ends (numpy and ``ascii_trim``, which never
    touches a multi-byte character); only the other strings (tabs, other ASCII controls, Unicode spaces, double
    spaces) go through Python. A pair of spaces that straddles two strings sends the first of them the slow way,
    which only costs time. Char lengths equal byte lengths except in the rows returned."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(arr)
    offsets = offsets_of(arr)
    first, last = int(offsets[0]), int(offsets[-1])
    none = np.zeros(0, dtype=np.int64)
    if not n or first == last:
        return arr, none
    data = np.frombuffer(arr.buffers()[2], dtype=np.uint8)[first:last]
    ends = offsets[1:] - first
    odd = np.flatnonzero((data - np.uint8(32)) >= 95)  # outside printable ASCII: controls, newlines, non-ASCII
    slow_bytes = [none]  # positions of bytes that send their string through Python
    nonascii = none
    edited = False
    if len(odd):
        values = data[odd]
        newline = odd[values == 10]
        slow_bytes.append(odd[(values < 32) & (values != 10)])  # tabs, \r, ... (and controls that are not whitespace)
        high = odd[values >= 0xC2]  # lead bytes of multi-byte characters
        if len(high):
            nonascii = np.unique(np.searchsorted(ends, high, side="right"))
            padded = np.concatenate([data, np.zeros(2, dtype=np.uint8)])
            b0, b1, b2 = (padded[high + i].astype(np.int64) for i in range(3))
            two, three = b0 << 8 | b1, b0 << 16 | b1 << 8 | b2
            slow_bytes.append(high[np.isin(two, _WIDE2) | np.isin(three, _WIDE3)])
        if len(newline):
            data = data.copy()
            data[newline] = 32
            edited = True
    space = data == 32
    pairs = space[:-1] & space[1:]
    if pairs.any():
        slow_bytes.append(np.flatnonzero(pairs))
    flat = arr
    if edited:  # newlines turned into spaces: an array over the edited bytes
        flat = pa.Array.from_buffers(arr.type, n, [None, pa.py_buffer((offsets - first).astype(offsets.dtype)),
                                                   pa.py_buffer(data)])
    out = pc.ascii_trim(flat, " ")
    slow_rows = np.unique(np.searchsorted(ends, np.concatenate(slow_bytes), side="right"))
    if len(slow_rows):
        mask = np.zeros(n, dtype=bool)
        mask[slow_rows] = True
        texts = list(map(_careful, arr.take(to_arrow(slow_rows)).to_pylist()))
        out = pc.replace_with_mask(out, to_arrow(mask), arrow_strings(texts, pa.types.is_large_string(out.type)))
    return out, nonascii


def _careful(text: str) -> str:
    """``normalize`` for any text, cheap when its only whitespace besides single spaces is newlines (no printable
    character is whitespace except the space, so a printable text with no double space needs only ``strip``)."""
    flat = text.replace("\n", " ")
    if flat.isprintable() and "  " not in flat:
        return flat.strip()
    return normalize(text)
