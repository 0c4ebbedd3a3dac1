"""JSON logs for requests and model events: stdlib logging with a one-object-per-line JSON formatter.

Privacy by default: a request log carries the lengths and sha256 hashes of the prompt and the response, never their
text, unless the logger was created with ``log_content=True`` (``--log-content``). Timestamps are UTC ISO-8601.

    log = RequestLogger("llmops.serve")           # adds a JSON handler on stderr once
    log.request("req-1", model_version="v2", prompt=p, response=r, status=200, latency_s=0.4,
                input_tokens=12, output_tokens=30)
    log.event("model_loaded", model_version="v2", load_seconds=3.1)
"""
from __future__ import annotations

import hashlib
import json
import logging
import sys
from datetime import datetime, timezone
from typing import IO, Any

_STANDARD = set(vars(logging.LogRecord("x", 0, "x", 0, "x", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, msg, plus the record's ``fields`` extra and other extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key != "fields":
                entry[key] = value
        entry.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False, sort_keys=False)


def json_handler(stream: IO[str] | None = None) -> logging.Handler:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler._llmops_json = True  # type: ignore[attr-defined]  # marks our handler so it is added only once
    return handler


def setup_json_logger(name: str, stream: IO[str] | None = None, level: int = logging.INFO) -> logging.Logger:
    """The named logger with exactly one JSON handler (idempotent; does not propagate to the root logger)."""
    logger = logging.getLogger(name)
    logger.setLevel(level)
    logger.propagate = False
    for handler in list(logger.handlers):
        if getattr(handler, "_llmops_json", False):
            if stream is None or getattr(handler, "stream", None) is stream:
                return logger
            logger.removeHandler(handler)
    logger.addHandler(json_handler(stream))
    return logger


def text_digest(text: str | None) -> dict[str, Any]:
    """Length and sha256 of a text: enough to join logs and spot duplicates without storing the text."""
    if text is None:
        return {"chars": 0, "sha256": None}
    return {"chars": len(text), "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()}


class RequestLogger:
    """Request and event records for one service (fixes the seed's LLMLogger: UTC, JSON, no prompt text)."""

    def __init__(self, service: str = "llmops.serve", *, log_content: bool = False, stream: IO[str] | None = None,
                 level: int = logging.INFO):
        self.logger = setup_json_logger(service, stream, level)
        self.log_content = log_content

    def request(self, request_id: str, *, model_version: str, prompt: str | None, response: str | None,
                status: int, latency_s: float, input_tokens: int = 0, output_tokens: int = 0,
                **extra: Any) -> None:
        fields: dict[str, Any] = {
            "event": "request", "request_id": request_id, "model_version": model_version, "status": status,
            "latency_ms": round(latency_s * 1000, 3), "input_tokens": input_tokens, "output_tokens": output_tokens,
        }
        for name, text in (("prompt", prompt), ("response", response)):
            digest = text_digest(text)
            fields[f"{name}_chars"] = digest["chars"]
            fields[f"{name}_sha256"] = digest["sha256"]
            if self.log_content:
                fields[name] = text
        fields.update(extra)
        level = logging.ERROR if status >= 500 else logging.WARNING if status >= 400 else logging.INFO
        self.logger.log(level, "request", extra={"fields": fields})

    def event(self, event_type: str, level: int = logging.INFO, **details: Any) -> None:
        self.logger.log(level, event_type, extra={"fields": {"event": event_type, **details}})
