"""The HTTP face of ``ModelServer``: a Starlette app (served by uvicorn) with the routes, body limits and headers.

Every response, errors and 404s included, carries ``X-Model-Version`` (added by a thin ASGI wrapper, so streamed
responses get it too). Unknown routes and wrong methods answer 404 in OpenAI's error shape, as before.
"""
from __future__ import annotations

import json
import uuid
from typing import Any

from llmops.serve import openai_api as api

MAX_BODY = 1 << 20


class _VersionHeader:
    """ASGI middleware: add ``X-Model-Version`` to every HTTP response."""

    def __init__(self, app: Any, version: str):
        self.app = app
        self.header = (b"x-model-version", version.encode("latin-1", "replace"))

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_header(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), self.header]}
            await send(message)

        await self.app(scope, receive, send_with_header)


def json_response(status: int, payload: dict[str, Any]) -> Any:
    from starlette.responses import Response

    return Response(json.dumps(payload, ensure_ascii=False).encode("utf-8"), status_code=status,
                    media_type="application/json")


async def read_json(request: Any) -> tuple[Any, tuple[int, dict[str, Any]] | None]:
    """The request's JSON body, or (status, error body) when it is too big or not JSON."""
    too_big = (413, api.error_body(f"the request body must be JSON of at most {MAX_BODY} bytes"))
    raw_length = request.headers.get("content-length")
    if raw_length is not None:
        try:
            if int(raw_length) > MAX_BODY:
                return None, too_big
        except ValueError:
            return None, (400, api.error_body("the Content-Length header is not a number"))
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            return None, too_big
        chunks.append(chunk)
    raw = b"".join(chunks)
    try:
        return json.loads(raw or b"null"), None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return None, (400, api.error_body(f"the request body is not valid JSON: {exc}"))


def build_app(server: Any) -> Any:
    """The ASGI app for one ``ModelServer``."""
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    from llmops.monitoring.metrics import CONTENT_TYPE, RequestSample

    async def metrics(request: Any) -> Any:
        return Response(server.metrics.exposition(), media_type=CONTENT_TYPE)

    async def health(request: Any) -> Any:
        return json_response(*server.health())

    async def models(request: Any) -> Any:
        return json_response(*server.models())

    async def costs(request: Any) -> Any:
        return json_response(*server.cost_summary())

    async def feedback(request: Any) -> Any:
        body, problem = await read_json(request)
        return json_response(*(problem or server.feedback(body)))

    def inference(endpoint: str):
        async def handle(request: Any) -> Any:
            request_id = (request.headers.get("x-request-id") or uuid.uuid4().hex)[:128]
            body, problem = await read_json(request)
            if problem:
                server.metrics.record_request(RequestSample(endpoint, problem[0], 0.0))
                return json_response(*problem)
            return await server.infer(endpoint, body, request_id)
        return handle

    async def not_found(request: Any, exc: Exception) -> Any:
        return json_response(404, api.error_body(f"no route {request.method} {request.url.path}",
                                                 code="not_found"))

    routes = [
        Route("/metrics", metrics, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/healthz", health, methods=["GET"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/v1/costs", costs, methods=["GET"]),
        Route("/v1/feedback", feedback, methods=["POST"]),
        Route("/v1/completions", inference("completions"), methods=["POST"]),
        Route("/v1/chat/completions", inference("chat"), methods=["POST"]),
    ]
    app = Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found})
    return _VersionHeader(app, server.info.version)
