"""JSON Schema rows for validate-data: load and check a schema file, validate rows fast, explain failures.

``RowSchema.is_valid`` is jsonschema-rs's compiled check (millions of rows per second); only rows that fail it
pay for ``problems``, which lists every violation with the JSON path of the offending value. A schema file that
is not JSON, is not a valid JSON Schema, or refers to remote documents is an ``InputError`` (exit 2).
"""
from __future__ import annotations

import json
from pathlib import Path

from llmops.data.formats import Problem
from llmops.errors import InputError


def json_path(parts) -> str:
    out = "$"
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if str(part).isidentifier() else f"[{part!r}]")
    return out


class RowSchema:
    def __init__(self, schema: dict, source: str):
        import jsonschema_rs

        self.schema = schema
        self.source = source
        _check_schema(schema, source)
        remote = sorted(set(_remote_refs(schema)))
        if remote:
            raise InputError(f"schema {source} refers to other documents ({', '.join(remote[:3])})",
                             "inline them under $defs and refer with '#/$defs/NAME' (no network is used)",
                             file=source)
        try:
            self.validator = jsonschema_rs.validator_for(schema)
        except (jsonschema_rs.ValidationError, jsonschema_rs.ReferencingError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0]
            raise InputError(f"schema {source} cannot be compiled: {first}",
                             "keep the schema self-contained: local '#/$defs/...' references only, no remote $ref",
                             file=source) from None
        self.is_valid = self.validator.is_valid

    def problems(self, row: object) -> list[Problem]:
        out = []
        for err in self.validator.iter_errors(row):
            out.append(Problem(json_path(err.instance_path), f"schema: {err.message}", check="schema"))
        return out or [Problem("$", "schema: row does not match the schema", check="schema")]


def _remote_refs(node: object):
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("$ref", "$dynamicRef") and isinstance(value, str) and not value.startswith("#"):
                yield value
            else:
                yield from _remote_refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _remote_refs(item)


def _check_schema(schema: object, source: str) -> None:
    import jsonschema_rs

    if not isinstance(schema, (dict, bool)):
        raise InputError(f"schema {source} must be a JSON object, got {type(schema).__name__}",
                         'start from {"type": "object", "required": [...], "properties": {...}}', file=source)
    try:
        jsonschema_rs.meta.validate(schema)
    except jsonschema_rs.ValidationError as exc:
        raise InputError(f"schema {source} is not a valid JSON Schema: {exc.message} (at "
                         f"{json_path(exc.instance_path)})",
                         "fix the schema keyword named above (see https://json-schema.org/understanding-json-schema)",
                         file=source) from None
    except (jsonschema_rs.ReferencingError, ValueError) as exc:  # e.g. an unknown $schema dialect
        first = (str(exc).strip().splitlines() or [""])[0]
        raise InputError(f"schema {source} cannot be checked: {first}",
                         "use a standard $schema (draft 4, 6, 7, 2019-09 or 2020-12) or leave it out",
                         file=source) from None


def load_schema(path: str | Path) -> RowSchema:
    path = Path(path)
    if not path.exists():
        raise InputError(f"schema file not found: {path}", "check the --schema path")
    if path.is_dir():
        raise InputError(f"schema {path} is a directory", "give the path of a .json file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"schema {path} is not UTF-8 text (byte {exc.start})", "save it as UTF-8",
                         file=str(path)) from None
    if not text.strip():
        raise InputError(f"schema file {path} is empty", "write a JSON Schema object into it", file=str(path))
    try:
        schema = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"schema {path} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                         "fix the JSON syntax (a linter such as `python -m json.tool FILE` points at it)",
                         file=str(path), line=exc.lineno) from None
    return RowSchema(schema, str(path))
