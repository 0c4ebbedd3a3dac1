"""JSON Schema rows for validate-data: load and check a schema file, validate rows fast, explain failures.

``RowSchema.is_valid`` is jsonschema-rs's compiled check (millions of rows per second); only rows that fail it
pay for ``problems``, which lists every violation with the JSON path of the offending value. ``string_limits``
reduces a flat schema (an object of length-limited strings) to per-field length bounds, so the columnar fast path
checks whole batches with ``min``/``max`` instead of a call per row. A schema file that
is not JSON, is not a valid JSON Schema, or refers to remote documents is an ``InputError`` (exit 2).

No network, ever: a ``$schema`` other than the standard drafts, a ``$ref`` / ``$dynamicRef`` / ``$recursiveRef``
that is not local (``#...``) are errors naming the key and where it is, found before jsonschema-rs sees the schema
(on a pull request the schema comes from the PR: fetching would be a request forgery from the runner); the
compiled validator gets a retriever that refuses every URI. Error messages never print a row's string values
whole (an e-mail address in a wrong-typed field): they are redacted the way the PII check redacts.
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
        remote = list(_remote_refs(schema))
        if remote:
            where, key, value = remote[0]
            more = f" (and {len(remote) - 1} more)" if len(remote) > 1 else ""
            if key == "$schema":
                raise InputError(f"schema {source}: '$schema' at {where} names the meta-schema {value!r}, which is not "
                                 f"a standard JSON Schema draft{more}; validate-data uses no network",
                                 "use a standard draft (e.g. https://json-schema.org/draft/2020-12/schema) or leave "
                                 "$schema out", file=source)
            raise InputError(f"schema {source}: '{key}' at {where} refers to other documents ({value}){more}; "
                             "validate-data uses no network",
                             "inline it under $defs and refer with '#/$defs/NAME'", file=source)
        _check_schema(schema, source)
        try:
            self.validator = jsonschema_rs.validator_for(schema, retriever=_refuse)
        except (jsonschema_rs.ValidationError, jsonschema_rs.ReferencingError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0]
            raise InputError(f"schema {source} cannot be compiled: {first}",
                             "keep the schema self-contained: local '#/$defs/...' references only, no remote $ref",
                             file=source) from None
        self.is_valid = self.validator.is_valid

    def string_limits(self, keys: tuple[str, ...]) -> dict[str, tuple[int, float]] | None:
        """``{key: (min_length, max_length)}`` such that a row whose fields are exactly ``keys``, all strings, is
        valid iff every length is within its bounds; None when the schema says more than that (any other
        keyword), so the caller must use ``is_valid``."""
        return flat_string_limits(self.schema, keys)

    def problems(self, row: object) -> list[Problem]:
        out = []
        for err in self.validator.iter_errors(row):
            out.append(Problem(json_path(err.instance_path), f"schema: {redact_message(err.message, err.instance)}",
                               check="schema"))
        return out or [Problem("$", "schema: row does not match the schema", check="schema")]


_NOTES = {"$schema", "$id", "$comment", "title", "description", "examples", "default", "deprecated", "readOnly",
          "writeOnly"}


def _has_type(schema: dict, name: str) -> bool:
    t = schema.get("type", name)
    return t == name or (isinstance(t, list) and name in t)


def flat_string_limits(schema: object, keys: tuple[str, ...]) -> dict[str, tuple[int, float]] | None:
    if schema is True or schema == {}:
        return {k: (0, float("inf")) for k in keys}
    if not isinstance(schema, dict) or set(schema) - _NOTES - {"type", "required", "properties",
                                                               "additionalProperties"}:
        return None
    props = schema.get("properties", {})
    required = schema.get("required", [])
    extra = schema.get("additionalProperties", True)
    if not _has_type(schema, "object") or not isinstance(props, dict) or not isinstance(required, list) \
            or extra not in (True, False) or not set(required) <= set(keys):
        return None
    limits = {}
    for key in keys:
        if key not in props:
            if extra is False:
                return None
            limits[key] = (0, float("inf"))
            continue
        sub = props[key]
        if sub is True or sub == {}:
            limits[key] = (0, float("inf"))
            continue
        if not isinstance(sub, dict) or set(sub) - _NOTES - {"type", "minLength", "maxLength"} \
                or not _has_type(sub, "string"):
            return None
        lo, hi = sub.get("minLength", 0), sub.get("maxLength", float("inf"))
        if type(lo) not in (int, float) or type(hi) not in (int, float):
            return None
        limits[key] = (lo, hi)
    return limits


STANDARD_DRAFTS = {f"{scheme}://json-schema.org/{draft}" for scheme in ("http", "https") for draft in (
    "draft-03/schema", "draft-04/schema", "draft-06/schema", "draft-07/schema", "draft/2019-09/schema",
    "draft/2020-12/schema")}


def _refuse(uri: str):
    raise ValueError(f"{uri}: validate-data uses no network (inline the document under $defs)")


def _remote_refs(node: object, path: tuple = ()):
    """``(json_path, key, value)`` of every reference that would need another document."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("$ref", "$dynamicRef", "$recursiveRef") and isinstance(value, str) \
                    and not value.startswith("#"):
                yield json_path(path), key, value
            elif key == "$schema" and isinstance(value, str) and value.rstrip("#") not in STANDARD_DRAFTS:
                yield json_path(path), key, value
            else:
                yield from _remote_refs(value, (*path, key))
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from _remote_refs(item, (*path, i))


def redact_message(message: str, instance: object) -> str:
    """A jsonschema error message without the offending value in full."""
    from llmops.data.checks import redact

    if isinstance(instance, str) and instance:
        shown = json.dumps(instance, ensure_ascii=False)
        return message.replace(shown, f'"{redact(instance)}" ({len(instance)} characters)') if shown in message \
            else message.replace(instance, redact(instance))
    if isinstance(instance, (dict, list)):
        for text in (json.dumps(instance, ensure_ascii=False), json.dumps(instance, ensure_ascii=False,
                                                                          separators=(",", ":"))):
            message = message.replace(text, "the " + ("object" if isinstance(instance, dict) else "array"))
    return message


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
    from llmops.data.reader import check_regular

    path = Path(path)
    if not path.exists() and not path.is_symlink():
        raise InputError(f"schema file not found: {path}", "check the --schema path")
    if path.is_dir():
        raise InputError(f"schema {path} is a directory", "give the path of a .json file")
    check_regular(path, "schema")  # a FIFO or a device would block or never end
    if path.stat().st_size > 16 << 20:
        raise InputError(f"schema {path} is larger than 16 MiB", "a JSON Schema is a small file; check the path")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"schema {path} is not UTF-8 text (byte {exc.start})", "save it as UTF-8",
                         file=str(path)) from None
    if not text.strip():
        raise InputError(f"schema file {path} is empty", "write a JSON Schema object into it", file=str(path))
    try:
        schema = json.loads(text)
    except RecursionError:
        raise InputError(f"schema {path} is nested too deeply", "flatten it with $defs", file=str(path)) from None
    except json.JSONDecodeError as exc:
        raise InputError(f"schema {path} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                         "fix the JSON syntax (a linter such as `python -m json.tool FILE` points at it)",
                         file=str(path), line=exc.lineno) from None
    return RowSchema(schema, str(path))
