"""What an OpenAI-compatible server says about itself: its own error messages, the model it served, its timings.

- ``server_error(body)``: the message and code of an error body, whatever the server's shape: OpenAI's, llama.cpp's
  and vLLM's ``{"error": {"message", "type", "param", "code"}}`` (also our reference server's), vLLM's older
  ``{"object": "error", "message", ...}``, TGI's ``{"error": "...", "error_type": "..."}``, FastAPI's
  ``{"detail": ...}`` (SGLang and most Python servers), or a plain ``{"message": ...}``.
- ``model_refused(status, error)``: the server refused the *model name* (OpenAI's ``model_not_found`` code, a
  ``param`` of ``model``, or a 404 whose message talks about the model), so the fix is ``--endpoint-model``.
- ``Identity``: what each reply said it was: the ``model`` field of the body, the ``X-Model-Version`` header (our
  reference server sets it on every response; a gateway may add it), and the ids ``GET /v1/models`` lists (with
  the ``model_version`` our server adds to each). The verdict records it beside the URL.
- ``server_seconds(reply, headers)``: the server's own time for the request where it reports one: llama.cpp's
  ``timings`` (``prompt_ms + predicted_ms``, from the slot starting on it, so queueing for a slot is excluded) or
  TGI's ``x-inference-time`` header (milliseconds).
"""
from __future__ import annotations

import re
import threading
from collections import Counter
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ServerError:
    message: str = ""
    code: str = ""  # the code, or failing that the type (model_not_found, NotFoundError, validation, ...)
    param: str = ""


def _text(x: object) -> str:
    return x.strip() if isinstance(x, str) else str(x) if isinstance(x, (int, float)) else ""


def server_error(doc: object) -> ServerError:
    """The server's own message from a decoded error body (``ServerError()`` when there is none)."""
    if not isinstance(doc, dict):
        return ServerError()
    err = doc.get("error")
    if isinstance(err, dict):  # OpenAI, vLLM, llama.cpp, ours
        return ServerError(_text(err.get("message")), _text(err.get("code")) or _text(err.get("type")),
                           _text(err.get("param")))
    if isinstance(err, str):  # TGI
        return ServerError(err.strip(), _text(doc.get("error_type")))
    detail = doc.get("detail")
    if isinstance(detail, list):  # FastAPI validation errors: [{"loc": [...], "msg": "..."}]
        detail = "; ".join(_text(d.get("msg")) if isinstance(d, dict) else _text(d) for d in detail)
    if _text(detail):
        return ServerError(_text(detail))
    if _text(doc.get("message")):  # vLLM before the nested form: {"object": "error", "message", "type", "code"}
        return ServerError(_text(doc.get("message")), _text(doc.get("code")) if isinstance(doc.get("code"), str)
                           else _text(doc.get("type")), _text(doc.get("param")))
    return ServerError()


def parse_error(body: bytes) -> ServerError:
    import json

    try:
        return server_error(json.loads(body))
    except (ValueError, RecursionError):
        return ServerError()


def model_refused(status: int, error: ServerError) -> bool:
    """Did the server refuse the model name (rather than the path, or another setting)?"""
    if error.code.lower() in ("model_not_found", "modelnotfounderror") or error.param == "model":
        return True
    return status == 404 and re.search(r"\bmodels?\b", error.message, re.IGNORECASE) is not None


def server_seconds(reply: object, headers: object) -> float | None:
    """The server's own time for one request (seconds), or None where it reports none."""
    timings = reply.get("timings") if isinstance(reply, dict) else None
    if isinstance(timings, dict):
        parts = [timings.get("prompt_ms"), timings.get("predicted_ms")]
        if all(isinstance(p, (int, float)) and p >= 0 for p in parts):
            return (parts[0] + parts[1]) / 1000.0  # type: ignore[operator]
    value = headers.get("x-inference-time") if hasattr(headers, "get") else None
    try:
        ms = float(value) if value is not None else -1.0
    except ValueError:
        return None
    return ms / 1000.0 if ms >= 0 else None


@dataclass
class Identity:
    """The model the server said it served, over every reply of a run (thread-safe)."""

    models: Counter = field(default_factory=Counter)  # the body's "model" field
    versions: Counter = field(default_factory=Counter)  # the X-Model-Version header
    listed: list[dict] | None = None  # GET /v1/models: [{"id", "model_version"?}], None when it has none
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def saw(self, reply: object, headers: object) -> None:
        model = reply.get("model") if isinstance(reply, dict) else None
        version = headers.get("x-model-version") if hasattr(headers, "get") else None
        with self.lock:
            if isinstance(model, str) and model:
                self.models[model[:200]] += 1
            if isinstance(version, str) and version.strip():
                self.versions[version.strip()[:200]] += 1

    def set_listed(self, doc: object) -> None:
        data = doc.get("data") if isinstance(doc, dict) else None
        if not isinstance(data, list):
            return
        self.listed = [{k: str(m[k])[:200] for k in ("id", "model_version") if m.get(k) not in (None, "")}
                       for m in data[:50] if isinstance(m, dict) and m.get("id") not in (None, "")]

    def listed_ids(self) -> list[str]:
        return [m["id"] for m in self.listed or []]

    def version(self) -> str | None:
        """The one version the replies named (the header), else the one /v1/models names; None if not one."""
        if len(self.versions) == 1:
            return next(iter(self.versions))
        if not self.versions:
            named = {m["model_version"] for m in self.listed or [] if m.get("model_version")}
            if len(named) == 1 and len(self.listed or []) == 1:
                return next(iter(named))
        return None

    def to_json(self) -> dict:
        return {"served_model": self.models.most_common(1)[0][0] if self.models else None,
                "served_models": dict(self.models) if len(self.models) > 1 else None,
                "model_version_header": self.versions.most_common(1)[0][0] if self.versions else None,
                "model_version_headers": dict(self.versions) if len(self.versions) > 1 else None,
                "models_listed": self.listed}
