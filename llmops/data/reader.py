"""Streaming JSONL reading (plain, .gz or .zst, several files or globs) with bad input named by file and line.

``expand_inputs`` turns user paths/globs into existing regular files or raises ``InputError`` (a FIFO, a device
such as /dev/zero, a symlink loop are named as such; a path that exists is taken whole even when it holds a
comma); ``iter_lines`` yields ``(line_no, raw_bytes)`` in bounded memory: no line may be longer than
``max_line`` bytes (default ``MAX_LINE_BYTES``, 64 MiB), so an endless line (a gzip bomb, a stream of zeros) is an
error naming the line, not a machine out of memory; ``read_jsonl`` parses rows and raises ``InputError`` with
file:line for malformed JSON, invalid UTF-8, UTF-16, a BOM, nesting too deep or an empty file (for callers that
want all-or-nothing, like train and evaluate; validate-data collects these as row problems instead).
``sniff_encoding`` says what a file that is not UTF-8 JSON text is (UTF-16/32, gzip without .gz, binary).
"""
from __future__ import annotations

import errno
import glob
import gzip
import io
import json
import os
import stat
import zlib
from pathlib import Path
from typing import Iterator

from llmops.errors import InputError
from llmops.inputs import split_list

BOM = b"\xef\xbb\xbf"
MAX_LINE_BYTES = 64 << 20
MAX_DEPTH = 1000  # JSON nesting deeper than this is refused (orjson stops at 1024, Python recursion near 1000)


def size_text(n: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and n % (1 << (shift - 4)) == 0:
            return f"{n / (1 << shift):g} {unit}"
    return f"{n} bytes"


def line_too_long(path: Path | str, where: str, limit: int, line: int | None = None) -> InputError:
    return InputError(f"{path}:{where}: line is longer than {size_text(limit)} (no newline within that many bytes)",
                      "write one JSON object per line (a file compressed or streamed as one endless line is "
                      "refused), or raise max-line-bytes if rows really are that long", file=str(path), line=line)


def sniff_encoding(head: bytes) -> str | None:
    """Why the first bytes of a file are not UTF-8 JSON lines, or None when they may be."""
    if head.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")):
        return "is UTF-32 text (it starts with a UTF-32 byte order mark), not UTF-8"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        order = "little" if head.startswith(b"\xff\xfe") else "big"
        return f"is UTF-16 text ({order}-endian byte order mark {head[:2].hex(' ').upper()}), not UTF-8"
    if head.startswith(b"\x1f\x8b"):
        return "is gzip-compressed, but its name does not end in .gz"
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return "is zstd-compressed, but its name does not end in .zst"
    if head.startswith(b"PAR1"):
        return "is a Parquet file, but its name does not end in .parquet"
    if head.startswith(b"ARROW1"):
        return "is an Arrow IPC file, but its name does not end in .arrow"
    if b"\x00" in head:
        sample = head[:512]
        if sample[1::2].count(0) > len(sample) // 4 or sample[0::2].count(0) > len(sample) // 4:
            return "looks like UTF-16 text without a byte order mark (every other byte is zero), not UTF-8"
        return "is a binary file (it contains NUL bytes), not JSON lines text"
    return None


def encoding_error(path: Path | str, problem: str) -> InputError:
    return InputError(f"{path} {problem}", "save the data as UTF-8 JSON lines (e.g. iconv -f UTF-16 -t UTF-8 IN > "
                      "OUT), one JSON object per line", file=str(path), line=1)


def check_regular(path: Path | str, what: str = "input", not_found: str | None = None) -> Path:
    """``path`` if it is (or links to) a regular file; otherwise an InputError that says what it is."""
    part = str(path)
    try:
        st = os.stat(part)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InputError(f"{what}: {part} is a symbolic link loop (it points back at itself)",
                             "point the link at a real file, or pass the file itself") from None
        if os.path.islink(part):
            raise InputError(f"{what}: {part} is a broken symbolic link (to {os.readlink(part)}, which does not "
                             "exist)", "fix the link or pass the file itself") from None
        if exc.errno == errno.ENOENT:
            raise InputError(not_found or f"{what}: file not found: {part}", "check the path (relative paths are from the "
                             f"working directory {os.getcwd()})") from None
        raise InputError(f"{what}: cannot read {part}: {exc.strerror}", "check the path and its permissions") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{what}: {part} is a directory", f"give a .jsonl file or a glob such as {part}/*.jsonl")
    if not stat.S_ISREG(st.st_mode):
        kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else "a character device" if
                stat.S_ISCHR(st.st_mode) else "a block device" if stat.S_ISBLK(st.st_mode) else "a socket" if
                stat.S_ISSOCK(st.st_mode) else "not a regular file")
        raise InputError(f"{what}: {part} is {kind}, not a regular file",
                         "give a file on disk: pipes and devices (such as /dev/zero) can be endless or block for "
                         "ever, so they are not read")
    return Path(part)


def split_spec(spec: str) -> list[str]:
    """A spec's paths: one per line, each line split on commas unless the whole line names an existing path."""
    out = []
    for line in spec.split("\n"):
        line = line.strip()
        if not line:
            continue
        if "," in line and (os.path.lexists(line) or glob.has_magic(line) and glob.glob(line)):
            out.append(line)
        else:
            out += split_list(line)
    return out


def expand_inputs(specs: list[str] | str, what: str = "input") -> list[Path]:
    if isinstance(specs, str):
        specs = [specs]
    files: list[Path] = []
    for spec in specs:
        for part in split_spec(spec):
            if glob.has_magic(part):
                matches = sorted(glob.glob(part, recursive=True))
                if not matches:
                    raise InputError(f"{what}: no file matches {part!r}", "check the glob pattern and the working "
                                     "directory")
                files += [Path(m) for m in matches if os.path.isfile(m)]
            else:
                files.append(check_regular(part, what))
    if not files:
        raise InputError(f"{what}: no files given", "pass at least one .jsonl or .jsonl.gz file")
    return files


class _Zstd(io.RawIOBase):
    """A .zst file's decompressed bytes; a corrupt frame is an OSError like a bad gzip."""

    def __init__(self, path: Path):
        import zstandard

        self._raw = open(path, "rb")
        self._error = zstandard.ZstdError
        self._reader = zstandard.ZstdDecompressor().stream_reader(self._raw, read_across_frames=True)

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        try:
            return self._reader.readinto(buf)
        except self._error as exc:
            raise OSError(f"invalid zstd data ({exc})") from None

    def close(self) -> None:
        if not self.closed:
            self._reader.close()
            self._raw.close()
        super().close()


def is_compressed(path: Path | str) -> bool:
    return str(path).endswith((".gz", ".zst"))


def open_binary(path: Path) -> io.BufferedIOBase:
    name = str(path)
    if name.endswith(".gz"):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    if name.endswith(".zst"):
        return io.BufferedReader(_Zstd(path), 1 << 20)
    return open(path, "rb", buffering=1 << 20)


def iter_lines(path: Path, max_line: int | None = None) -> Iterator[tuple[int, bytes]]:
    """Yield (1-based line number, line without the newline); blank lines are skipped; lines longer than
    ``max_line`` bytes (default ``MAX_LINE_BYTES``) raise InputError naming the line."""
    limit = max_line or MAX_LINE_BYTES
    try:
        with open_binary(path) as fh:
            no = 0
            while True:
                line = fh.readline(limit + 1)
                if not line:
                    break
                no += 1
                if len(line) > limit and not (len(line) == limit + 1 and line.endswith(b"\n")):
                    raise line_too_long(path, str(no), limit, no)
                line = line.rstrip(b"\r\n")
                if line.strip():
                    yield no, line
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"{path}: cannot read: {exc}", "is the file complete and, for .gz, a valid gzip file?",
                         file=str(path)) from None


def read_jsonl(path: Path | str, what: str = "data") -> Iterator[tuple[int, dict]]:
    """Parse every row or raise InputError naming the first bad line."""
    path = check_regular(path, f"{what} file", not_found=f"{what} file not found: {path}")
    count = 0
    for no, raw in iter_lines(path):
        if no == 1 and raw.startswith(BOM):
            raise InputError(f"{path}:1: file starts with a UTF-8 byte order mark", "save the file as UTF-8 without "
                             "BOM (e.g. sed -i '1s/^\\xEF\\xBB\\xBF//' FILE)", file=str(path), line=1)
        if count == 0 and sniff_encoding(raw[:4096]):
            raise encoding_error(path, sniff_encoding(raw[:4096]))
        try:
            row = json.loads(raw.decode("utf-8"))
        except RecursionError:
            raise InputError(f"{path}:{no}: JSON nested too deeply", f"keep rows under {MAX_DEPTH} levels of nesting",
                             file=str(path), line=no) from None
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

BLOCK = 512 << 10  # a block, its lines and their rows stay in the CPU cache while they are checked


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

    Big blocks split in C keep the per-line cost low. After iteration ``ends_with_newline`` tells whether the last
    line was terminated (a missing final newline plus unparsable JSON means a truncated file). A trailing ``\\r``
    is left on the line (JSON treats it as whitespace). ``keep_ends=True`` leaves the ``\\n`` on every line but a
    last unterminated one, which is 2-3x cheaper per line (``BytesIO.readlines`` finds newlines with ``memchr``;
    ``bytes.split`` compares byte by byte).
    """

    def __init__(self, path: Path, start: int = 0, end: int | None = None, keep_ends: bool = False,
                 max_line: int | None = None):
        self.path = Path(path)
        self.start = start
        self.end = end
        self.keep_ends = keep_ends
        self.max_line = max_line or MAX_LINE_BYTES
        self.ends_with_newline = True

    def _too_long(self, lines_before: int) -> InputError:
        if self.start:
            return line_too_long(self.path, f"line {lines_before + 1} after byte {self.start}", self.max_line)
        return line_too_long(self.path, str(lines_before + 1), self.max_line, lines_before + 1)

    def __iter__(self) -> Iterator[list[bytes]]:
        limit, keep_ends = self.max_line, self.keep_ends
        check_each = limit < BLOCK  # a whole line can fit in one block only then
        seen = 0  # lines yielded so far (for the line number of an error)
        try:
            with open_binary(self.path) as fh:
                if self.start:
                    fh.seek(self.start)
                left = None if self.end is None else self.end - self.start
                carry: list[bytes] = []  # pieces of an unfinished line: joined once, not once per block
                carry_len = 0
                while left is None or left > 0:
                    block = fh.read(BLOCK if left is None else min(BLOCK, left))
                    if not block:
                        break
                    if left is not None:
                        left -= len(block)
                    lines = io.BytesIO(block).readlines() if keep_ends else block.split(b"\n")
                    if len(lines) == 1 and (not keep_ends or not lines[0].endswith(b"\n")):
                        carry.append(lines[0])  # no newline in this block
                        carry_len += len(lines[0])
                        if carry_len > limit:
                            raise self._too_long(seen)
                        continue
                    if carry:
                        carry.append(lines[0])
                        lines[0] = b"".join(carry)
                        carry = []
                        if len(lines[0]) - keep_ends > limit:
                            raise self._too_long(seen)
                    rest = lines.pop() if not keep_ends or not lines[-1].endswith(b"\n") else b""
                    if check_each and lines and max(map(len, lines)) - keep_ends > limit:
                        raise self._too_long(seen + next(i for i, x in enumerate(lines) if len(x) - keep_ends > limit))
                    carry_len = len(rest)
                    if rest:
                        carry = [rest]
                    if lines:
                        seen += len(lines)
                        yield lines
                if carry:
                    self.ends_with_newline = False
                    last = b"".join(carry)
                    if len(last) > limit:
                        raise self._too_long(seen)
                    yield [last]
        except (OSError, EOFError, zlib.error) as exc:
            raise InputError(f"{self.path}: cannot read: {exc}", "is the file complete and, for .gz, a valid gzip "
                             "file?", file=str(self.path)) from None
