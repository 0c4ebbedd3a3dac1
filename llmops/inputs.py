"""Typed input values and input files: what every CLI flag, action input and config file goes through.

- ``parse_bool`` / ``parse_number`` / ``positive_int`` / ``byte_size``: booleans only true/false, numbers checked
  against their bounds, counts, byte sizes (llmops.gha re-exports them beside ``parse_args``).
- ``split_list``: the one comma/newline list splitter (action inputs are one string; lists are ``a,b`` or one item
  per line), items stripped, empty ones dropped.
- ``load_document``: the one YAML-or-JSON file loader (JSON when the name ends in ``.json``, else YAML): an
  unreadable file or a parse error is an ``InputError`` naming the file (and the line, when the parser knows it).

Pure: they raise UsageError / InputError / ArgumentTypeError and write nothing.
"""
from __future__ import annotations

import argparse
import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llmops.errors import InputError, UsageError


def parse_bool(name: str, text: str) -> bool:
    value = text.strip().lower()
    if value == "true":
        return True
    if value == "false":
        return False
    raise UsageError(f"input '{name}' must be true or false, got {text!r}", "write exactly true or false")


def parse_number(name: str, text: Any, kind: Callable[[str], Any] = float, *, minimum: float | None = None,
                 maximum: float | None = None) -> Any:
    try:
        value = kind(str(text).strip())
    except (TypeError, ValueError):
        raise UsageError(f"{name} must be a{'n integer' if kind is int else ' number'}, got {text!r}",
                         f"give {name} a plain {'integer' if kind is int else 'number'} such as 10") from None
    if isinstance(value, float) and math.isnan(value):
        raise UsageError(f"{name} must be a number, got NaN")
    if minimum is not None and value < minimum:
        raise UsageError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise UsageError(f"{name} must be <= {maximum}, got {value}")
    return value


def positive_int(text: str) -> int:
    """argparse ``type=`` for counts >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def byte_size(text: str) -> int:
    """argparse ``type=`` for sizes: a byte count or a number with KiB/MiB/GiB (also KB/MB/GB, K/M/G = binary)."""
    import re

    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]i?B?|B)?\s*", str(text), re.IGNORECASE)
    if not m:
        raise argparse.ArgumentTypeError(f"must be a size such as 64MiB or 1048576, got {text!r}")
    unit = (m.group(2) or "B").upper().rstrip("B").rstrip("I")
    value = int(float(m.group(1)) * {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[unit])
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 byte, got {text!r}")
    return value


def split_list(text: Any, separators: str = ",\n") -> list[str]:
    """``"a, b\nc,"`` -> ``["a", "b", "c"]``; a list is taken item by item (each item stripped, empty ones dropped)."""
    if isinstance(text, (list, tuple)):
        return [str(item).strip() for item in text if str(item).strip()]
    pattern = "[" + re.escape(separators) + "]"
    return [part.strip() for part in re.split(pattern, str(text or "")) if part.strip()]


def load_document(path: str | Path, what: str) -> Any:
    """The parsed content of a YAML or JSON file; ``what`` names it in errors ("queries file", "price table")."""
    import yaml

    shown = str(path)
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"cannot read {what} {shown}: it does not exist", f"check the {what} path") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise InputError(f"cannot read {what} {shown}: {reason}", f"check the {what} path") from None
    is_json = path.suffix.lower() == ".json"
    try:
        return json.loads(text) if is_json else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        line = line + 1 if line is not None else getattr(exc, "lineno", None)
        reason = getattr(exc, "problem", None) or (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if getattr(exc, "context", None):
            reason += f" ({exc.context})"
        where = f" (line {line})" if line and not is_json else ""
        raise InputError(f"{what} {shown} is not valid {'JSON' if is_json else 'YAML'}{where}: {reason}", file=shown,
                         line=line) from None
