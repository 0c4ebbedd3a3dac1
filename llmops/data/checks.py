"""Per-row checks of validate-data that keep no dataset state.

- ``walk_strings`` / ``empty_paths``: every string value of a row with its JSON path; empty or whitespace-only ones.
- ``normalize`` / ``dedup_text``: the text two rows must share to count as exact duplicates (whitespace runs
  collapsed, ends stripped; case and punctuation kept).
- ``scan_pii``: e-mail addresses, IPv4 addresses and common API-key shapes, reported redacted.
- ``EvalIndex``: train/eval overlap, exact (same normalised prompt/text) and by shared 13-word sequences, the
  n-gram test lm-evaluation-harness uses for decontamination (lower-cased, punctuation removed).
"""
from __future__ import annotations

import re
import string
from collections.abc import Iterator
from pathlib import Path

from llmops.data.formats import message_text
from llmops.data.reader import read_jsonl


def walk_strings(value: object, path: str = "$") -> Iterator[tuple[str, str]]:
    """Yield ``(json_path, text)`` for every string in a parsed row (depth first, document order)."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from walk_strings(item, f"{path}.{key}" if _plain_key(key) else f"{path}[{key!r}]")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from walk_strings(item, f"{path}[{i}]")


def _plain_key(key: str) -> bool:
    return key.isidentifier()


def empty_paths(row: object) -> list[str]:
    """JSON paths of string values that are empty or whitespace only."""
    if type(row) is dict:
        nested = False
        for value in row.values():
            t = type(value)
            if t is str:
                if not value or value.isspace():
                    break
            elif t is dict or t is list:
                nested = True
        else:
            if not nested:
                return []
    return [path for path, text in walk_strings(row) if not text or text.isspace()]


def normalize(text: str) -> str:
    return " ".join(text.split())


def dedup_parts(fmt: str | None, row: dict) -> list[str]:
    """The raw strings that identify a row for duplicate detection under a format (None: every string value)."""
    if fmt == "prompt-completion":
        return [row["prompt"], row["completion"]]
    if fmt == "text":
        return [row["text"]]
    if fmt == "chat":
        return [f"{m['role']}\x1e{message_text(m)}" for m in row["messages"]]
    return [text for _, text in walk_strings(row)]


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


def dedup_text(fmt: str | None, row: dict, line: bytes | None = None) -> str:
    """Normalised duplicate key of a row; ``line`` (the raw JSON) lets clean rows skip the split/join."""
    parts = dedup_parts(fmt, row)
    if line is not None:
        return "\x1f".join([norm_field(line, p) for p in parts])
    return "\x1f".join([normalize(p) for p in parts])


def input_text(row: object) -> str | None:
    """The model-input side of a row: prompt, text, or the user turns of a conversation."""
    if not isinstance(row, dict):
        return None
    for key in ("prompt", "text", "question", "input"):
        if isinstance(row.get(key), str):
            return row[key]
    messages = row.get("messages")
    if isinstance(messages, list):
        users = [m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "user"]
        return "\n".join(u for u in users if isinstance(u, str)) or None
    return None


# --------------------------------------------------------------------------- PII

_PII = re.compile(
    r"(?P<email>\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b)"
    r"|(?P<ipv4>(?<![\d.])(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}(?![\d.]))"
    r"|(?P<aws_key>\b(?:AKIA|ASIA)[0-9A-Z]{16}\b)"
    r"|(?P<github_token>\bgh[pousr]_[A-Za-z0-9]{36,}\b|\bgithub_pat_[A-Za-z0-9_]{22,})"
    r"|(?P<openai_key>\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,})"
    r"|(?P<slack_token>\bxox[abprs]-[A-Za-z0-9-]{10,})"
    r"|(?P<google_api_key>\bAIza[0-9A-Za-z_-]{35})"
    r"|(?P<huggingface_token>\bhf_[A-Za-z0-9]{30,})"
    r"|(?P<stripe_key>\b[sr]k_live_[0-9A-Za-z]{20,})"
    r"|(?P<private_key>-----BEGIN (?:[A-Z]+ )*PRIVATE KEY-----)"
)
_NOT_PII_IPS = {"0.0.0.0", "127.0.0.1", "255.255.255.255"}


def redact(text: str) -> str:
    keep = 2 if len(text) > 8 else 1
    return text[:keep] + "*" * 6 + (text[-2:] if len(text) > 12 else "")


def scan_pii(row: object) -> list[tuple[str, str, str]]:
    """``(json_path, kind, redacted_match)`` for every PII-shaped substring (values are never shown in full)."""
    found = []
    for path, text in walk_strings(row):
        for match in _PII.finditer(text):
            kind = match.lastgroup or "pii"
            if kind == "ipv4" and match.group() in _NOT_PII_IPS:
                continue
            found.append((path, kind, redact(match.group())))
    return found


# --------------------------------------------------------------------------- train/eval overlap

_PUNCT = str.maketrans({c: " " for c in string.punctuation})


def words(text: str) -> list[str]:
    return text.lower().translate(_PUNCT).split()


class EvalIndex:
    """Eval rows indexed for overlap: normalised input texts, and every ``n``-word sequence of every string value."""

    def __init__(self, n: int = 13):
        self.n = n
        self.exact: dict[str, str] = {}
        self.grams: dict[tuple[str, ...], str] = {}
        self.first_words: set[str] = set()
        self.rows = 0

    @classmethod
    def load(cls, paths: list[Path], n: int = 13) -> EvalIndex:
        index = cls(n)
        for path in paths:
            for line, row in read_jsonl(path, what="eval data"):
                index.add(row, f"{path}:{line}")
        return index

    def add(self, row: dict, where: str) -> None:
        self.rows += 1
        text = input_text(row)
        if text is not None and text.strip():
            self.exact.setdefault(normalize(text).lower(), where)
        for _, value in walk_strings(row):
            ws = words(value)
            for i in range(len(ws) - self.n + 1):
                gram = tuple(ws[i:i + self.n])
                self.grams.setdefault(gram, where)
                self.first_words.add(gram[0])

    def match(self, row: dict, full_text: str) -> tuple[str, str, str] | None:
        """``(kind, eval_location, detail)`` for the first overlap of a train row, else None."""
        text = input_text(row)
        if text is not None:
            where = self.exact.get(normalize(text).lower())
            if where:
                return "exact", where, "same prompt as the eval row"
        if not self.grams:
            return None
        ws = words(full_text)
        n, first, grams = self.n, self.first_words, self.grams
        for i in range(len(ws) - n + 1):
            if ws[i] in first:
                gram = tuple(ws[i:i + n])
                where = grams.get(gram)
                if where:
                    return "ngram", where, f"shares the {n}-word sequence '{' '.join(gram)}'"
        return None
