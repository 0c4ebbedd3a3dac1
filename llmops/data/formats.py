"""The built-in data formats (presets) shared by validate-data, train and evaluate.

- ``prompt-completion``: ``{"prompt": str, "completion": str}``
- ``chat``: ``{"messages": [{"role": "system"|"user"|"assistant", "content": str}, ...]}`` with the ordering rules
  fine-tuning services enforce: system only first, no assistant before the first user, no two user turns in a row,
  at least one assistant turn, non-empty assistant content.
- ``text``: ``{"text": str}``

``check_row(fmt, row)`` returns a list of ``Problem(path, message)`` (JSON path of the offending value).
"""
from __future__ import annotations

from dataclasses import dataclass

from llmops.errors import UsageError

FORMATS = ("prompt-completion", "chat", "text")
ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class Problem:
    path: str
    message: str
    check: str = "format"
    severity: str = "error"


def require_format(name: str) -> str:
    if name not in FORMATS:
        raise UsageError(f"unknown format {name!r}", f"use one of: {', '.join(FORMATS)}")
    return name


def _string_field(row: dict, key: str, out: list[Problem]) -> None:
    if key not in row:
        out.append(Problem(f"$.{key}", f"missing required field '{key}'"))
    elif not isinstance(row[key], str):
        out.append(Problem(f"$.{key}", f"'{key}' must be a string, got {type(row[key]).__name__}"))


def _check_chat(row: dict, out: list[Problem]) -> None:
    messages = row.get("messages")
    if "messages" not in row:
        out.append(Problem("$.messages", "missing required field 'messages'"))
        return
    if not isinstance(messages, list) or not messages:
        out.append(Problem("$.messages", "'messages' must be a non-empty list of {role, content} objects"))
        return
    seen_user = False
    seen_assistant = False
    previous = None
    for i, msg in enumerate(messages):
        where = f"$.messages[{i}]"
        if not isinstance(msg, dict):
            out.append(Problem(where, "each message must be an object with 'role' and 'content'"))
            return
        role, content = msg.get("role"), msg.get("content")
        if role not in ROLES:
            out.append(Problem(f"{where}.role", f"role must be one of {', '.join(ROLES)}, got {role!r}"))
            return
        if not isinstance(content, str):
            out.append(Problem(f"{where}.content", "content must be a string"))
            return
        if role == "system" and i != 0:
            out.append(Problem(f"{where}.role", "a system message may only come first"))
        elif role == "assistant" and not seen_user:
            out.append(Problem(f"{where}.role", "an assistant message comes before the first user message"))
        elif role == "user" and previous == "user":
            out.append(Problem(f"{where}.role", "two user messages in a row (merge them or add the assistant reply)"))
        if role == "assistant":
            seen_assistant = True
            if not content.strip():
                out.append(Problem(f"{where}.content", "assistant content is empty"))
        seen_user = seen_user or role == "user"
        previous = role
    if not seen_assistant:
        out.append(Problem("$.messages", "no assistant message: nothing to learn from this conversation"))


def check_row(fmt: str, row: object) -> list[Problem]:
    """Structural problems of one parsed row under a preset (empty list: the row fits)."""
    if not isinstance(row, dict):
        return [Problem("$", f"each line must be a JSON object, got {type(row).__name__}")]
    out: list[Problem] = []
    if fmt == "prompt-completion":
        _string_field(row, "prompt", out)
        _string_field(row, "completion", out)
    elif fmt == "text":
        _string_field(row, "text", out)
    elif fmt == "chat":
        _check_chat(row, out)
    else:
        require_format(fmt)
    return out


def detect_format(row: object) -> str | None:
    """Guess the preset from a row's keys (used when no format is given)."""
    if isinstance(row, dict):
        if "messages" in row:
            return "chat"
        if "prompt" in row and "completion" in row:
            return "prompt-completion"
        if "text" in row:
            return "text"
    return None


def row_text(fmt: str, row: dict) -> str:
    """All the text of a row, for duplicate and overlap checks."""
    if fmt == "prompt-completion":
        return f"{row.get('prompt', '')}\n{row.get('completion', '')}"
    if fmt == "chat":
        return "\n".join(f"{m.get('role')}: {m.get('content')}" for m in row.get("messages", []) if isinstance(m, dict))
    return str(row.get("text", ""))
