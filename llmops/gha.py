"""Runner I/O: the only module that knows about GitHub runner files and workflow commands.

- ``set_output``: GITHUB_OUTPUT in the multi-line-safe ``name<<DELIM`` form.
- ``Summary``: step-summary markdown (tables, details, Mermaid charts) appended to GITHUB_STEP_SUMMARY.
- ``Annotations``: ``::error file=,line=::`` annotations, capped, with a count of the rest.
- ``mask``: ``::add-mask::`` for secrets; every masked value is also remembered, and ``scrub`` replaces it with
  ``***`` in what this module writes (outputs, annotations, the step summary): the runner masks its log, not the
  files (a hostile server may echo a token back into an error message).
- ``parse_args``: argparse with action inputs as a fallback (``INPUT_<NAME>`` env vars), typed and checked
  (the converters themselves are llmops.inputs, re-exported here).
- ``forward_logs``: the library reports through ``logging``; scripts (``cli.run_script``) forward its records here
  as annotations. Secrets reach ``::add-mask::`` through ``redact.remember``'s listener, added on import.

Outside a runner (no GITHUB_OUTPUT) every call prints readable text to stdout instead, so each script runs
locally unchanged.
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from llmops import redact
from llmops.errors import UsageError
from llmops.inputs import (  # noqa: F401 - typed inputs, re-exported
    byte_size,
    parse_bool,
    parse_number,
    positive_int,
    split_list,
)

SCRUB_MIN = redact.SCRUB_MIN


def scrub(text: str) -> str:
    """``text`` with every value given to ``mask`` (or ``redact.remember``) replaced by ``***`` (longest first)."""
    return redact.scrub_known(text)


def in_runner() -> bool:
    return bool(os.environ.get("GITHUB_OUTPUT"))


def _out(text: str) -> None:
    text = scrub(text)
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()


# --------------------------------------------------------------------------- outputs

def set_output(name: str, value: Any) -> None:
    """Write one step output; values may contain newlines."""
    text = scrub(_stringify(value))
    path = os.environ.get("GITHUB_OUTPUT")
    if not path:
        _out(f"output {name}={text}")
        return
    delim = f"ghadelim_{uuid.uuid4().hex}"
    while delim in text:  # pragma: no cover - a uuid collision
        delim = f"ghadelim_{uuid.uuid4().hex}"
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(f"{name}<<{delim}\n{text}\n{delim}\n")


def set_outputs(values: dict[str, Any]) -> None:
    for name, value in values.items():
        set_output(name, value)


def _stringify(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else repr(round(value, 6))
    return str(value)


# --------------------------------------------------------------------------- workflow commands

def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_prop(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def annotate(level: str, message: str, *, file: str | None = None, line: int | None = None,
             title: str | None = None) -> None:
    """One annotation (level: error, warning, notice). Outside a runner: ``level: file:line: message``."""
    if level not in ("error", "warning", "notice"):
        raise ValueError(level)
    if not in_runner() and not os.environ.get("GITHUB_ACTIONS"):
        where = f"{file}:{line}: " if file and line else (f"{file}: " if file else "")
        _out(f"{level}: {where}{message}")
        return
    props = []
    if file:
        props.append(f"file={_escape_prop(file)}")
    if line:
        props.append(f"line={int(line)}")
    if title:
        props.append(f"title={_escape_prop(title)}")
    head = f"::{level} {','.join(props)}::" if props else f"::{level}::"
    _out(head + _escape_data(message))


def error(message: str, **kw: Any) -> None:
    annotate("error", message, **kw)


def warning(message: str, **kw: Any) -> None:
    annotate("warning", message, **kw)


class Annotations:
    """Caps annotations (GitHub shows 10 per step and 50 per job); ``close()`` reports how many were held back."""

    def __init__(self, limit: int = 20):
        self.limit = limit
        self.shown = 0
        self.held_back = 0

    def add(self, level: str, message: str, **kw: Any) -> None:
        if self.shown < self.limit:
            self.shown += 1
            annotate(level, message, **kw)
        else:
            self.held_back += 1

    def close(self, where: str = "the report") -> None:
        if self.held_back:
            annotate("warning", f"{self.held_back} more problems not annotated; see {where}")


def mask(secret: str) -> None:
    """Ask the runner to hide a secret in logs (each line separately, as the runner requires)."""
    redact.remember(secret)


def _announce_mask(secret: str) -> None:
    """The ``redact.remember`` listener: ``::add-mask::`` per line, before anything could print the secret."""
    if not in_runner():
        return
    for line in secret.splitlines():
        if line.strip():
            sys.stdout.write(f"::add-mask::{line}\n")
    sys.stdout.flush()


redact.on_remember(_announce_mask)

class RunnerLogHandler(logging.Handler):
    """The library logs; this handler turns its records into annotations: INFO is a notice, WARNING a warning,
    ERROR an error. A record's ``file``, ``line`` and ``title`` extras become the annotation's properties."""

    def emit(self, record: logging.LogRecord) -> None:
        level = "error" if record.levelno >= logging.ERROR else "warning" if record.levelno >= logging.WARNING \
            else "notice"
        annotate(level, record.getMessage(), file=getattr(record, "file", None), line=getattr(record, "line", None),
                 title=getattr(record, "title", None))


def forward_logs(name: str = "llmops") -> None:
    """Send the library's log records (``name`` and below, INFO and up) to the runner as annotations (once)."""
    logger = logging.getLogger(name)
    if not any(isinstance(h, RunnerLogHandler) for h in logger.handlers):
        logger.addHandler(RunnerLogHandler(logging.INFO))
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)


# --------------------------------------------------------------------------- step summary

def _cell(value: Any) -> str:
    return _stringify(value).replace("|", "\\|").replace("\n", "<br>")


class Summary:
    """Builds step-summary markdown; ``write()`` appends it to GITHUB_STEP_SUMMARY or prints it."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def heading(self, text: str, level: int = 2) -> Summary:
        self.parts.append(f"{'#' * level} {text}\n")
        return self

    def text(self, text: str) -> Summary:
        self.parts.append(text.rstrip() + "\n")
        return self

    def table(self, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Summary:
        lines = ["| " + " | ".join(_cell(h) for h in header) + " |",
                 "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
        self.parts.append("\n".join(lines) + "\n")
        return self

    def details(self, summary: str, body: str) -> Summary:
        self.parts.append(f"<details><summary>{summary}</summary>\n\n{body.rstrip()}\n\n</details>\n")
        return self

    def code(self, body: str, lang: str = "") -> Summary:
        self.parts.append(f"```{lang}\n{body.rstrip()}\n```\n")
        return self

    def xychart(self, title: str, x_labels: Sequence[Any], series: dict[str, Sequence[float]],
                y_label: str = "") -> Summary:
        """A Mermaid xychart (GitHub renders it): one line per series."""
        xs = ", ".join(f'"{x}"' for x in x_labels)
        lines = ["```mermaid", "xychart-beta", f'  title "{title}"', f"  x-axis [{xs}]"]
        if y_label:
            lines.append(f'  y-axis "{y_label}"')
        for values in series.values():
            lines.append("  line [" + ", ".join(f"{float(v):.6g}" for v in values) + "]")
        lines.append("```")
        if len(series) > 1:
            lines.append("Lines: " + ", ".join(series))
        self.parts.append("\n".join(lines) + "\n")
        return self

    def render(self) -> str:
        return "\n".join(self.parts)

    def write(self) -> None:
        text = scrub(self.render())
        if not text:
            return
        path = os.environ.get("GITHUB_STEP_SUMMARY")
        if path:
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(text + "\n")
        else:
            _out(text)
        self.parts.clear()


# --------------------------------------------------------------------------- typed inputs

def env_name(dest: str) -> str:
    return "INPUT_" + dest.upper().replace("-", "_")


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse flags; any option not given on the command line falls back to its ``INPUT_<DEST>`` env var.

    This is how action.yml passes inputs (``env: INPUT_MIN_SAMPLES: ${{ inputs.min-samples }}``) without putting
    them into ``run:`` text. Empty env values mean "not set". Booleans accept only true/false; typed options are
    converted (and checked) by the option's own ``type``; ``nargs``/``append`` options split on newlines and commas.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    given = {a.split("=", 1)[0] for a in argv if a.startswith("-")}
    defaults: dict[str, Any] = {}
    for action in parser._actions:  # argparse exposes no public iterator over its options
        if not action.option_strings or action.dest in ("help", argparse.SUPPRESS):
            continue
        if given & set(action.option_strings):
            continue
        raw = os.environ.get(env_name(action.dest), "")
        if raw.strip() == "":
            continue
        flag = action.option_strings[0]
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            value = parse_bool(flag, raw)
            defaults[action.dest] = value if isinstance(action, argparse._StoreTrueAction) else not value
            continue
        if isinstance(action, argparse.BooleanOptionalAction):
            defaults[action.dest] = parse_bool(flag, raw)
            continue
        many = action.nargs in ("*", "+") or isinstance(action, argparse._AppendAction)
        items = split_list(raw) if many else [raw.strip()]
        converted = []
        for item in items:
            try:
                converted.append(action.type(item) if action.type else item)
            except (argparse.ArgumentTypeError, TypeError, ValueError) as exc:
                raise UsageError(f"input {flag.lstrip('-')} ({env_name(action.dest)}): {exc}",
                                 f"fix the value given to {flag.lstrip('-')}") from None
        if action.choices is not None:
            for item in converted:
                if item not in action.choices:
                    raise UsageError(f"input {flag.lstrip('-')} must be one of {', '.join(map(str, action.choices))};"
                                     f" got {item!r}")
        defaults[action.dest] = converted if many else converted[0]
    parser.set_defaults(**defaults)
    # Required options satisfied from the environment must not make argparse complain.
    for action in parser._actions:
        if action.required and action.dest in defaults:
            action.required = False
    return parser.parse_args(argv)
