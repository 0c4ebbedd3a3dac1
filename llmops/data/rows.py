"""The per-row state of a validate-data scan (``RowArrays``): 13 bytes per row (17 with a tokenizer), in memory for
at most ``SPILL_ROWS`` rows at a time, the rest in files the run's dataset-wide checks read back.
"""
from __future__ import annotations

from array import array

from llmops.data.problems import NOKEY

SPILL_ROWS = 1 << 16


class RowArrays:
    """What a scan keeps per row, and all it keeps: the 8-byte hash of the row's duplicate key, its length (4
    bytes), its flags (1 byte) and, with a tokenizer, its token count (4 bytes). Every code path (the JSONL fast
    batch, the inline fast row, the careful row, the columnar batch) appends through these methods, so the arrays
    stay in step. Rows are appended to files under ``prefix`` every ``SPILL_ROWS`` (``maybe_flush``), so a scan
    holds at most that many in memory; ``validate`` reads the files back into one array per field. Indexes are
    the row's number in the chunk."""

    FIELDS = (("hashes", "Q"), ("lengths", "I"), ("flags", "B"), ("tokens", "I"))

    def __init__(self, prefix: str = "", with_tokens: bool = False):
        self.prefix, self.with_tokens = prefix, with_tokens
        self.hashes, self.lengths, self.tokens = array("Q"), array("I"), array("I")
        self.flags = bytearray()
        self.base = 0                      # rows already written to the files
        self.files: dict[str, str] = {}

    def __len__(self) -> int:
        return self.base + len(self.flags)

    def add(self, digest: int, length: int, flag: int) -> None:
        self.hashes.append(digest)
        self.lengths.append(length)
        self.flags.append(flag)

    def bad(self, flag: int) -> None:
        """A row without a duplicate key (it did not parse or did not fit the format)."""
        self.add(0, 0, flag | NOKEY)

    def extend(self, hashes, lengths, flags=None) -> None:
        self.hashes.extend(hashes)
        self.lengths.extend(lengths)
        self.flags.extend(flags if flags is not None else bytes(len(lengths)))

    def extend_raw(self, hashes: bytes, lengths: bytes, flags: bytes) -> None:
        """Rows given as machine-order uint64 / uint32 / uint8 bytes (a numpy batch's ``tobytes()``)."""
        self.hashes.frombytes(hashes)
        self.lengths.frombytes(lengths)
        self.flags += flags

    def mark(self, index: int, flag: int) -> None:
        self.flags[index - self.base] |= flag

    def set_tokens(self, index: int, n: int) -> None:
        i = index - self.base
        self.tokens.extend([0] * (i + 1 - len(self.tokens)))
        self.tokens[i] = n

    def maybe_flush(self, pending: int | None = None) -> None:
        """Write out the rows held in memory once there are ``SPILL_ROWS``, up to the first row still waiting for
        its token count (``pending``)."""
        if len(self.flags) >= SPILL_ROWS:
            self.flush(len(self.flags) if pending is None else pending - self.base)

    def flush(self, k: int | None = None) -> None:
        k = len(self.flags) if k is None else k
        if k <= 0:
            return
        if self.with_tokens:
            self.tokens.extend([0] * (k - len(self.tokens)))
        for name, _ in self.FIELDS:
            if name == "tokens" and not self.with_tokens:
                continue
            path = self.files.setdefault(name, f"{self.prefix}.{name}")
            data = getattr(self, name)
            with open(path, "ab") as fh:
                fh.write(memoryview(data)[:k])
            del data[:k]
        self.base += k

    def spill(self) -> None:
        """Write out every row; nothing per row stays in memory."""
        self.flush()
        for name, _ in self.FIELDS:
            if name != "tokens" or self.with_tokens:
                path = self.files.setdefault(name, f"{self.prefix}.{name}")
                open(path, "ab").close()  # a chunk without rows still has (empty) files
