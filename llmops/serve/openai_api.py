"""The OpenAI-compatible request and response shapes the server speaks (non-streaming completions and chat).

``parse_completion`` / ``parse_chat`` turn a JSON body into prompts + ``SamplingParams`` or raise ``BadRequest``
(answered 400 in OpenAI's error shape, naming the offending field). ``completion_response`` / ``chat_response``
build the bodies, with ``usage`` token counts and the served ``model`` name.
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from llmops.serve.generators import Generation, SamplingParams

MAX_TOKENS_LIMIT = 4096
ROLES = ("system", "user", "assistant", "tool", "developer")


class BadRequest(Exception):
    def __init__(self, message: str, param: str | None = None, status: int = 400, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.status = status
        self.code = code


def error_body(message: str, kind: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


@dataclass(frozen=True)
class ParsedRequest:
    model: str | None
    prompts: list[str]  # completions: one or more prompts; chat: empty (messages instead)
    messages: list[dict[str, str]] | None
    params: SamplingParams


def _int(body: dict, key: str, default: int, lo: int, hi: int) -> int:
    value = body.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise BadRequest(f"'{key}' must be an integer from {lo} to {hi}, got {value!r}", key)
    return value


def _float(body: dict, key: str, default: float, lo: float, hi: float) -> float:
    value = body.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise BadRequest(f"'{key}' must be a number from {lo:g} to {hi:g}, got {value!r}", key)
    return float(value)


def _params(body: dict, default_max_tokens: int) -> SamplingParams:
    if body.get("stream"):
        raise BadRequest("streaming is not supported by this server; send \"stream\": false", "stream")
    _int(body, "n", 1, 1, 1)  # one choice per prompt only
    stop = body.get("stop")
    if stop is None:
        stops: tuple[str, ...] = ()
    elif isinstance(stop, str):
        stops = (stop,)
    elif isinstance(stop, list) and len(stop) <= 4 and all(isinstance(s, str) for s in stop):
        stops = tuple(stop)
    else:
        raise BadRequest("'stop' must be a string or a list of up to 4 strings", "stop")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise BadRequest(f"'seed' must be an integer, got {seed!r}", "seed")
    key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    return SamplingParams(max_tokens=_int(body, key, default_max_tokens, 1, MAX_TOKENS_LIMIT),
                          temperature=_float(body, "temperature", 0.0, 0.0, 2.0),
                          top_p=_float(body, "top_p", 1.0, 0.0, 1.0), seed=seed, stop=stops)


def _model(body: dict) -> str | None:
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise BadRequest("'model' must be a string", "model")
    return model


def _body(body: Any) -> dict:
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    return body


def parse_completion(body: Any, default_max_tokens: int = 16) -> ParsedRequest:
    body = _body(body)
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        prompts = [prompt]
    elif isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt) and len(prompt) <= 16:
        prompts = list(prompt)
    else:
        raise BadRequest("'prompt' must be a string or a list of 1 to 16 strings", "prompt")
    return ParsedRequest(_model(body), prompts, None, _params(body, default_max_tokens))


def _content(value: Any, i: int) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # content parts: only text is supported
        texts = []
        for part in value:
            if not (isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)):
                raise BadRequest(f"messages[{i}].content: only text parts are supported", f"messages[{i}].content")
            texts.append(part["text"])
        return "".join(texts)
    raise BadRequest(f"messages[{i}].content must be a string or a list of text parts", f"messages[{i}].content")


def parse_chat(body: Any, default_max_tokens: int = 16) -> ParsedRequest:
    body = _body(body)
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise BadRequest("'messages' must be a non-empty list of {role, content} objects", "messages")
    messages = []
    for i, msg in enumerate(raw):
        if not isinstance(msg, dict) or msg.get("role") not in ROLES:
            raise BadRequest(f"messages[{i}].role must be one of {', '.join(ROLES)}", f"messages[{i}].role")
        messages.append({"role": msg["role"], "content": _content(msg.get("content"), i)})
    return ParsedRequest(_model(body), [], messages, _params(body, default_max_tokens))


def _usage(gens: list[Generation]) -> dict[str, int]:
    prompt = sum(g.input_tokens for g in gens)
    completion = sum(g.output_tokens for g in gens)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def completion_response(model: str, gens: list[Generation]) -> dict[str, Any]:
    return {
        "id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()), "model": model,
        "choices": [{"index": i, "text": g.text, "logprobs": None, "finish_reason": g.finish_reason}
                    for i, g in enumerate(gens)],
        "usage": _usage(gens),
    }


def chat_response(model: str, gen: Generation) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": gen.text},
                     "finish_reason": gen.finish_reason}],
        "usage": _usage([gen]),
    }
