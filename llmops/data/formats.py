"""The built-in data formats (presets) shared by validate-data, train and evaluate.

- ``prompt-completion``: ``{"prompt": str, "completion": str}``
- ``chat``: ``{"messages": [{"role": "system"|"user"|"assistant", "content": str}, ...]}`` with the ordering rules
  fine-tuning services enforce: system only first, no assistant before the first user, no two user turns in a row,
  at least one assistant turn, non-empty assistant content. OpenAI's chat fine-tuning format is accepted whole:
  assistant ``tool_calls`` (``content`` may then be null) and legacy ``function_call``, ``tool`` messages with
  the ``tool_call_id`` they answer (``function`` for the legacy form), ``tools`` / ``functions`` definitions on
  the row, ``parallel_tool_calls``, and ``weight`` (0 or 1) on assistant turns (at least one must have weight 1).
- ``text``: ``{"text": str}``

``check_row(fmt, row)`` returns a list of ``Problem(path, message)`` (JSON path of the offending value).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

from llmops.errors import UsageError

FORMATS = ("prompt-completion", "chat", "text")
ROLES = ("system", "user", "assistant", "tool", "function")
NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


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
    check_tools(row, out)
    seen_user = False
    learn = 0  # assistant turns that are trained on (weight 1)
    assistants = 0
    previous = None
    open_calls: set[str] = set()
    for i, msg in enumerate(messages):
        where = f"$.messages[{i}]"
        if not isinstance(msg, dict):
            out.append(Problem(where, "each message must be an object with 'role' and 'content'"))
            return
        role, content = msg.get("role"), msg.get("content")
        if role not in ROLES:
            out.append(Problem(f"{where}.role", f"role must be one of {', '.join(ROLES)}, got {role!r}"))
            return
        calls = check_assistant_calls(msg, where, out) if role == "assistant" else False
        if not isinstance(content, str) and not (calls and content is None):
            out.append(Problem(f"{where}.content", "content must be a string" + (
                " (or null on an assistant turn with tool_calls)" if role == "assistant" else "")))
            return
        if "weight" in msg and (role != "assistant" or msg["weight"] not in (0, 1) or type(msg["weight"]) is bool):
            out.append(Problem(f"{where}.weight", "weight goes on assistant messages only and must be 0 or 1"))
        if role == "system" and i != 0:
            out.append(Problem(f"{where}.role", "a system message may only come first"))
        elif role == "assistant" and not seen_user:
            out.append(Problem(f"{where}.role", "an assistant message comes before the first user message"))
        elif role == "user" and previous == "user":
            out.append(Problem(f"{where}.role", "two user messages in a row (merge them or add the assistant reply)"))
        elif role in ("tool", "function") and previous not in ("assistant", "tool", "function"):
            out.append(Problem(f"{where}.role", f"a {role} message must answer an assistant tool call"))
        if role == "tool":
            call_id = msg.get("tool_call_id")
            if not isinstance(call_id, str) or not call_id:
                out.append(Problem(f"{where}.tool_call_id", "a tool message needs the tool_call_id it answers"))
            elif open_calls and call_id not in open_calls:
                out.append(Problem(f"{where}.tool_call_id", f"no earlier tool call has the id {call_id!r}"))
        if role == "assistant":
            assistants += 1
            learn += msg.get("weight", 1) == 1
            if isinstance(msg.get("tool_calls"), list):
                open_calls |= {c.get("id") for c in msg["tool_calls"] if isinstance(c, dict)}
            if not calls and not content.strip():
                out.append(Problem(f"{where}.content", "assistant content is empty"))
        seen_user = seen_user or role == "user"
        previous = role
    if not assistants:
        out.append(Problem("$.messages", "no assistant message: nothing to learn from this conversation"))
    elif not learn:
        out.append(Problem("$.messages", "every assistant message has weight 0: nothing to learn from this "
                           "conversation"))


def check_assistant_calls(msg: dict, where: str, out: list[Problem]) -> bool:
    """OpenAI tool calls on an assistant turn (``tool_calls``, legacy ``function_call``); True when it has some."""
    found = False
    calls = msg.get("tool_calls")
    if calls is not None:
        if not isinstance(calls, list) or not calls:
            out.append(Problem(f"{where}.tool_calls", "tool_calls must be a non-empty list"))
            return False
        for j, call in enumerate(calls):
            at = f"{where}.tool_calls[{j}]"
            if not isinstance(call, dict) or not isinstance(call.get("function"), dict):
                out.append(Problem(at, 'a tool call is {"id", "type": "function", "function": {"name", '
                                   '"arguments"}}'))
                continue
            if call.get("type", "function") != "function":
                out.append(Problem(f"{at}.type", f"tool call type must be 'function', got {call.get('type')!r}"))
            _check_call(call["function"], f"{at}.function", out)
        found = True
    if msg.get("function_call") is not None:
        if isinstance(msg["function_call"], dict):
            _check_call(msg["function_call"], f"{where}.function_call", out)
        else:
            out.append(Problem(f"{where}.function_call", "function_call must be {name, arguments}"))
        found = True
    return found


def _check_call(fn: dict, at: str, out: list[Problem]) -> None:
    if not isinstance(fn.get("name"), str) or not NAME.fullmatch(fn["name"]):
        out.append(Problem(f"{at}.name", "the function name must be 1-64 letters, digits, _ or -"))
    args = fn.get("arguments")
    if not isinstance(args, str):
        out.append(Problem(f"{at}.arguments", "arguments must be a string holding a JSON object"))
        return
    try:
        json.loads(args)
    except (ValueError, RecursionError):
        out.append(Problem(f"{at}.arguments", "arguments is not valid JSON"))


def check_tools(row: dict, out: list[Problem]) -> None:
    """Function definitions: ``tools`` ([{"type": "function", "function": {name, description, parameters}}]) or
    the legacy ``functions`` ([{name, description, parameters}])."""
    for key in ("tools", "functions"):
        if key not in row:
            continue
        defs = row[key]
        if not isinstance(defs, list):
            out.append(Problem(f"$.{key}", f"{key} must be a list of function definitions"))
            continue
        for j, item in enumerate(defs):
            at = f"$.{key}[{j}]"
            fn = item.get("function") if key == "tools" and isinstance(item, dict) else item
            if key == "tools" and isinstance(item, dict) and item.get("type", "function") != "function":
                out.append(Problem(f"{at}.type", f"tool type must be 'function', got {item.get('type')!r}"))
            if not isinstance(fn, dict):
                out.append(Problem(at, "a function definition is {name, description, parameters}" + (
                    ' under {"type": "function", "function": ...}' if key == "tools" else "")))
                continue
            if key == "tools":
                at += ".function"
            if not isinstance(fn.get("name"), str) or not NAME.fullmatch(fn["name"]):
                out.append(Problem(f"{at}.name", "the function name must be 1-64 letters, digits, _ or -"))
            if "parameters" in fn and not isinstance(fn["parameters"], dict):
                out.append(Problem(f"{at}.parameters", "parameters must be a JSON Schema object"))
    if "parallel_tool_calls" in row and not isinstance(row["parallel_tool_calls"], bool):
        out.append(Problem("$.parallel_tool_calls", "parallel_tool_calls must be true or false"))


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
        return "\n".join(f"{m.get('role')}: {message_text(m)}" for m in row.get("messages", []) if isinstance(m, dict))
    return str(row.get("text", ""))


def message_text(msg: dict) -> str:
    """A message's content plus its tool calls (as JSON), for duplicate keys and overlap."""
    content = msg.get("content")
    text = content if isinstance(content, str) else ""
    calls = msg.get("tool_calls") or msg.get("function_call")
    if calls:
        text += ("\n" if text else "") + json.dumps(calls, sort_keys=True, ensure_ascii=False)
    return text
