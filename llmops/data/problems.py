"""The one problem sink of validate-data: every problem of a run, per-row (a scan chunk) or dataset-wide, goes
through a ``ProblemSink``.

It counts problems per ``check/severity``, keeps the first ``keep`` in memory for the summary and the annotations
(the first ``keep`` of the chunk, or of each check with ``per_check``), counts the dataset-wide ones (no file), and
writes every problem to a JSON-lines spool file, so memory stays bounded however many rows fail. ``add`` returns
the row flag the problem sets (``ERR`` or ``WARN``). A record names its place the way the file's format does:
``line`` (1-based) for JSONL, ``row`` (0-based) and ``row_group`` (Parquet) for tables; ``line`` is null then.
A sink is picklable once closed (worker processes send theirs back) and ``merge`` folds one into another's tally.
"""
from __future__ import annotations

from dataclasses import dataclass

import orjson

from llmops.data.formats import Problem

ERR, WARN, NOKEY, DUP = 1, 2, 4, 8  # row flags: error, warning, no duplicate key (unparsable), a duplicate


@dataclass(frozen=True)
class Loc:
    """Where a problem is: a file and a line (JSONL) or a row index with its row group (tables); no file for a
    dataset-wide problem."""
    file: str | None = None
    line: int | None = None
    row: int | None = None
    group: int | None = None

    def text(self) -> str:
        if self.file is None:
            return "(dataset)"
        if self.line is not None:
            return f"{self.file}:{self.line}"
        if self.row is None:
            return self.file
        return f"{self.file} row {self.row}" + (f" (row group {self.group})" if self.group is not None else "")


def record_where(rec: dict) -> str:
    """A report record's place in words (``file:line``, ``file row N (row group G)``, ``(dataset)``)."""
    return Loc(rec.get("file"), rec.get("line"), rec.get("row"), rec.get("row_group")).text()


class ProblemSink:
    def __init__(self, spool: str, keep: int, per_check: bool = False):
        self.spool, self.keep, self.per_check = spool, keep, per_check
        self.counts: dict[str, int] = {}
        self.kept: list[dict] = []
        self.problems = 0
        self.dataset_errors = 0
        self.dataset_warnings = 0
        self.written = False
        self._kept_by_check: dict[str, int] = {}
        self._fh = None

    def add(self, prob: Problem, severity: str | None = None, loc: Loc = Loc()) -> int:
        severity = severity or prob.severity
        rec = {"file": loc.file, "line": loc.line}
        if loc.row is not None:
            rec["row"] = loc.row
            if loc.group is not None:
                rec["row_group"] = loc.group
        rec.update(path=prob.path, check=prob.check, severity=severity, message=prob.message)
        key = f"{prob.check}/{severity}"
        self.counts[key] = self.counts.get(key, 0) + 1
        self.problems += 1
        if loc.file is None:
            if severity == "error":
                self.dataset_errors += 1
            else:
                self.dataset_warnings += 1
        if self.per_check:
            if self._kept_by_check.get(prob.check, 0) < self.keep:
                self._kept_by_check[prob.check] = self._kept_by_check.get(prob.check, 0) + 1
                self.kept.append(rec)
        elif len(self.kept) < self.keep:
            self.kept.append(rec)
        if self._fh is None:
            self._fh = open(self.spool, "wb")
            self.written = True
        self._fh.write(orjson.dumps(rec) + b"\n")
        return ERR if severity == "error" else WARN

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def merge(self, other: ProblemSink, line_offset: int = 0) -> None:
        """Add ``other``'s counts and kept problems (their lines shifted by ``line_offset``) to this tally."""
        for key, n in other.counts.items():
            self.counts[key] = self.counts.get(key, 0) + n
        self.problems += other.problems
        self.dataset_errors += other.dataset_errors
        self.dataset_warnings += other.dataset_warnings
        self.kept += [dict(p, line=p["line"] + line_offset) if line_offset and p["line"] is not None else p
                      for p in other.kept]
