"""The OpenAI-compatible request and response shapes the server speaks: completions and chat, whole or streamed.

``parse_completion`` / ``parse_chat`` turn a JSON body into prompts + ``SamplingParams`` (+ ``n``, ``stream``) or
raise ``BadRequest`` (answered in OpenAI's error shape, naming the offending field). ``completion_response`` /
``chat_response`` build whole bodies; ``completion_chunk`` / ``chat_chunk`` / ``usage_chunk`` the server-sent events
of a stream (``data: {...}`` lines ending with ``data: [DONE]``, as the ``openai`` client reads them). ``usage``
counts the prompt tokens and only the completion tokens that were returned.
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from llmops.serve.generators import SamplingParams

MAX_TOKENS_LIMIT = 4096
MAX_N = 16
MAX_CHOICES = 64
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
    n: int = 1
    stream: bool = False
    include_usage: bool = False  # stream_options.include_usage: a last chunk with the usage


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


def _stream(body: dict) -> tuple[bool, bool]:
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise BadRequest(f"'stream' must be true or false, got {stream!r}", "stream")
    options = body.get("stream_options")
    if options is None:
        return stream, False
    if not stream:
        raise BadRequest("'stream_options' is only allowed with \"stream\": true", "stream_options")
    if not isinstance(options, dict) or not isinstance(options.get("include_usage", False), bool):
        raise BadRequest("'stream_options' must be an object like {\"include_usage\": true}", "stream_options")
    return stream, bool(options.get("include_usage"))


def _params(body: dict, default_max_tokens: int) -> SamplingParams:
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
    return _request(body, prompts, None, default_max_tokens)


def _request(body: dict, prompts: list[str], messages: list[dict[str, str]] | None,
             default_max_tokens: int) -> ParsedRequest:
    params = _params(body, default_max_tokens)
    n = _int(body, "n", 1, 1, MAX_N)
    if n * max(1, len(prompts)) > MAX_CHOICES:
        raise BadRequest(f"prompts x n must be at most {MAX_CHOICES}, got {n * len(prompts)}", "n")
    stream, include_usage = _stream(body)
    return ParsedRequest(_model(body), prompts, messages, params, n, stream, include_usage)


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
    return _request(body, [], messages, default_max_tokens)


@dataclass(frozen=True)
class Output:
    """One finished choice as the response shows it."""

    text: str
    finish_reason: str
    completion_tokens: int


def usage(prompt_tokens: int, outputs: list[Output]) -> dict[str, int]:
    completion = sum(o.completion_tokens for o in outputs)
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion, "total_tokens": prompt_tokens + completion}


def new_id(kind: str) -> str:
    return f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{uuid.uuid4().hex}"


def completion_response(model: str, prompt_tokens: int, outputs: list[Output]) -> dict[str, Any]:
    return {
        "id": new_id("completions"), "object": "text_completion", "created": int(time.time()), "model": model,
        "choices": [{"index": i, "text": o.text, "logprobs": None, "finish_reason": o.finish_reason}
                    for i, o in enumerate(outputs)],
        "usage": usage(prompt_tokens, outputs),
    }


def chat_response(model: str, prompt_tokens: int, outputs: list[Output]) -> dict[str, Any]:
    return {
        "id": new_id("chat"), "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": i, "message": {"role": "assistant", "content": o.text}, "logprobs": None,
                     "finish_reason": o.finish_reason} for i, o in enumerate(outputs)],
        "usage": usage(prompt_tokens, outputs),
    }


def completion_chunk(rid: str, created: int, model: str, index: int, text: str,
                     finish_reason: str | None = None) -> dict[str, Any]:
    return {"id": rid, "object": "text_completion", "created": created, "model": model,
            "choices": [{"index": index, "text": text, "logprobs": None, "finish_reason": finish_reason}]}


def chat_chunk(rid: str, created: int, model: str, index: int, delta: dict[str, str],
               finish_reason: str | None = None) -> dict[str, Any]:
    return {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]}


def usage_chunk(kind: str, rid: str, created: int, model: str, prompt_tokens: int,
                outputs: list[Output]) -> dict[str, Any]:
    return {"id": rid, "object": "chat.completion.chunk" if kind == "chat" else "text_completion",
            "created": created, "model": model, "choices": [], "usage": usage(prompt_tokens, outputs)}
