"""Streaming JSONL reading (plain or .gz, several files or globs) with bad input named by file and line.

``expand_inputs`` turns user paths/globs into existing files or raises ``InputError``; ``iter_lines`` yields
``(line_no, raw_bytes)`` in bounded memory; ``read_jsonl`` parses rows and raises ``InputError`` with file:line
for malformed JSON, invalid UTF-8, a BOM or an empty file (for callers that want all-or-nothing, like train and
evaluate; validate-data collects these as row problems instead).
"""
from __future__ import annotations

import glob
import gzip
import io
import json
import os
import zlib
from pathlib import Path
from typing import Iterator

from llmops.errors import InputError

BOM = b"\xef\xbb\xbf"


def expand_inputs(specs: list[str] | str, what: str = "input") -> list[Path]:
    if isinstance(specs, str):
        specs = [specs]
    files: list[Path] = []
    for spec in specs:
        for part in [p.strip() for p in spec.replace("\n", ",").split(",") if p.strip()]:
            if glob.has_magic(part):
                matches = sorted(glob.glob(part, recursive=True))
                if not matches:
                    raise InputError(f"{what}: no file matches {part!r}", "check the glob pattern and the working "
                                     "directory")
                files += [Path(m) for m in matches if os.path.isfile(m)]
            else:
                path = Path(part)
                if not path.exists():
                    raise InputError(f"{what}: file not found: {part}", "check the path (relative paths are from "
                                     f"the working directory {os.getcwd()})")
                if path.is_dir():
                    raise InputError(f"{what}: {part} is a directory", "give a .jsonl file or a glob such as "
                                     f"{part}/*.jsonl")
                files.append(path)
    if not files:
        raise InputError(f"{what}: no files given", "pass at least one .jsonl or .jsonl.gz file")
    return files


def open_binary(path: Path) -> io.BufferedIOBase:
    if str(path).endswith(".gz"):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb", buffering=1 << 20)


def iter_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """Yield (1-based line number, line without the newline); blank lines are skipped."""
    try:
        with open_binary(path) as fh:
            for no, line in enumerate(fh, 1):
                line = line.rstrip(b"\r\n")
                if line.strip():
                    yield no, line
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"{path}: cannot read: {exc}", "is the file complete and, for .gz, a valid gzip file?",
                         file=str(path)) from None


def read_jsonl(path: Path | str, what: str = "data") -> Iterator[tuple[int, dict]]:
    """Parse every row or raise InputError naming the first bad line."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{what} file not found: {path}", "check the path")
    count = 0
    for no, raw in iter_lines(path):
        if no == 1 and raw.startswith(BOM):
            raise InputError(f"{path}:1: file starts with a UTF-8 byte order mark", "save the file as UTF-8 without "
                             "BOM (e.g. sed -i '1s/^\\xEF\\xBB\\xBF//' FILE)", file=str(path), line=1)
        try:
            row = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise InputError(f"{path}:{no}: invalid UTF-8 at byte {exc.start}", "re-encode the file as UTF-8",
                             file=str(path), line=no) from None
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{no}: malformed JSON ({exc.msg} at column {exc.colno})",
                             "each line must be one complete JSON object", file=str(path), line=no) from None
        if not isinstance(row, dict):
            raise InputError(f"{path}:{no}: each line must be a JSON object, got {type(row).__name__}",
                             file=str(path), line=no)
        count += 1
        yield no, row
    if count == 0:
        raise InputError(f"{what} file {path} is empty", "add at least one JSON line", file=str(path))


# --------------------------------------------------------------------------- fast block reading (validate-data)

BLOCK = 8 << 20


def split_ranges(path: Path, parts: int) -> list[tuple[int, int]]:
    """Split a plain (not gzip) file into up to ``parts`` byte ranges that start right after a newline."""
    size = os.path.getsize(path)
    if parts <= 1 or size == 0:
        return [(0, size)]
    bounds = [0]
    with open(path, "rb") as fh:
        for i in range(1, parts):
            fh.seek(max(size * i // parts, bounds[-1]))
            fh.readline()
            pos = fh.tell()
            if pos >= size:
                break
            if pos > bounds[-1]:
                bounds.append(pos)
    bounds.append(size)
    return list(zip(bounds[:-1], bounds[1:], strict=True))


class LineBlocks:
    """Iterate a file (or the byte range ``[start, end)`` of a plain file) as lists of lines without ``\\n``.

    Big blocks split with ``bytes.split`` keep the per-line cost low. After iteration ``ends_with_newline`` tells
    whether the last line was terminated (a missing final newline plus unparsable JSON means a truncated file).
    A trailing ``\\r`` is left on the line (JSON treats it as whitespace).
    """

    def __init__(self, path: Path, start: int = 0, end: int | None = None):
        self.path = Path(path)
        self.start = start
        self.end = end
        self.ends_with_newline = True

    def __iter__(self) -> Iterator[list[bytes]]:
        try:
            with open_binary(self.path) as fh:
                if self.start:
                    fh.seek(self.start)
                left = None if self.end is None else self.end - self.start
                carry = b""
                while left is None or left > 0:
                    block = fh.read(BLOCK if left is None else min(BLOCK, left))
                    if not block:
                        break
                    if left is not None:
                        left -= len(block)
                    lines = block.split(b"\n")
                    if carry:
                        lines[0] = carry + lines[0]
                    carry = lines.pop()
                    if lines:
                        yield lines
                if carry:
                    self.ends_with_newline = False
                    yield [carry]
        except (OSError, EOFError, zlib.error) as exc:
            raise InputError(f"{self.path}: cannot read: {exc}", "is the file complete and, for .gz, a valid gzip "
                             "file?", file=str(self.path)) from None
