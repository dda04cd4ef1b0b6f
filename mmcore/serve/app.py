"""The HTTP routes (FastAPI): parse the body, call the `ChatService`, serialise. Nothing else.

Routes: ``GET /health``, ``GET /v1/models``, ``POST /v1/chat/completions``, ``POST /v1/completions``,
``GET /metrics``. Every error answer is OpenAI's envelope; streams are SSE (``data: {...}`` events,
``data: [DONE]`` last).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from collections.abc import AsyncIterator, Coroutine
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from sse_starlette import EventSourceResponse
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mmcore.serve.chat import ChatService
from mmcore.serve.errors import APIError, api_error_from
from mmcore.serve.metrics import CONTENT_TYPE

__all__ = ["create_app", "SESSION_HEADER"]

logger = logging.getLogger(__name__)

#: The header that pins a conversation to a slot (as the body's ``session_id``).
SESSION_HEADER = "X-Session-ID"
_OPEN_PATHS = ("/health", "/")
#: The status logged for a request whose client went away before its answer (nginx's convention).
CLIENT_CLOSED = 499
#: The chat page's files need no key (its API calls do).
_OPEN_PREFIXES = ("/static/",)


def create_app(service: ChatService, *, api_key: str | None = None, max_body_bytes: int = 32 * 1024 * 1024) -> FastAPI:
    """The server's ASGI app around `service` (closed when the app shuts down).

    `api_key`: when set, every route but ``/health`` wants ``Authorization: Bearer <key>``.
    `max_body_bytes`: larger request bodies get a 413.
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        service.close()

    app = FastAPI(title="mmcore serve", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.service = service

    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError) -> JSONResponse:
        if exc.status >= 500:
            _log_failure(f"{request.method} {request.url.path}", exc)
        return _error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found" if exc.status_code == 404 else "http_error"
        message = f"no route {request.method} {request.url.path}" if exc.status_code in (404, 405) else str(exc.detail)
        return _error_response(APIError(exc.status_code, message, code=kind))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error serving %s %s", request.method, request.url.path)
        return _error_response(api_error_from(exc))

    app.add_middleware(_Guard, service=service, api_key=api_key, max_body_bytes=max_body_bytes)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": service.model_id, "slots": len(service.pool.slots)}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return service.models()

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str) -> dict[str, Any]:
        cards: list[dict[str, Any]] = service.models()["data"]
        for card in cards:
            if card["id"] == model_id:
                return card
        raise APIError(404, f"model {model_id!r} not found; this server serves {service.model_id!r}",
                       param="model", code="model_not_found")  # fmt: skip

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(request: Request) -> Response:
        body = await _json_body(request, max_body_bytes)
        session_id = request.headers.get(SESSION_HEADER)
        if body.get("stream"):
            return await _sse(service.astream_chat_completion(body, session_id=session_id))
        return await _unless_disconnected(request, service.achat_completion(body, session_id=session_id))

    @app.post("/v1/completions", response_model=None)
    async def completions(request: Request) -> Response:
        body = await _json_body(request, max_body_bytes)
        session_id = request.headers.get(SESSION_HEADER)
        if body.get("stream"):
            return await _sse(service.astream_completion(body, session_id=session_id))
        return await _unless_disconnected(request, service.acompletion(body, session_id=session_id))

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(service.metrics.render(), media_type=CONTENT_TYPE)

    from mmcore.serve.web import mount_page

    mount_page(app)  # the chat page: GET / and /static/ (docs/chat-page.md)
    return app


class _Guard:
    """ASGI middleware around every route: the API key, the body limit and the request counter
    (pure ASGI, so streams and disconnects pass through untouched)."""

    def __init__(self, app: ASGIApp, *, service: ChatService, api_key: str | None, max_body_bytes: int) -> None:
        self.app = app
        self.service = service
        self.api_key = api_key
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        endpoint = scope["path"]
        headers = Headers(scope=scope)
        status = [500]

        async def counted(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            if self.api_key is not None and endpoint not in _OPEN_PATHS and not endpoint.startswith(_OPEN_PREFIXES):
                _check_key(headers.get("authorization"), self.api_key)
            length = headers.get("content-length")
            if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
                raise APIError(413, f"request body of {length} bytes is over the limit of {self.max_body_bytes}",
                               code="body_too_large")  # fmt: skip
        except APIError as exc:
            await _error_response(exc)(scope, receive, counted)
        else:
            await self.app(scope, receive, counted)
        finally:
            self.service.metrics.count(endpoint, status[0])


def _log_failure(what: str, exc: BaseException) -> None:
    """Log a server-side failure with its traceback (the client's answer carries none)."""
    cause = exc.__cause__ if isinstance(exc, APIError) and exc.__cause__ is not None else exc
    logger.error("%s failed: %s", what, exc, exc_info=(type(cause), cause, cause.__traceback__))


def _error_response(exc: APIError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return JSONResponse(exc.body(), status_code=exc.status, headers=headers)


def _check_key(header: str | None, api_key: str) -> None:
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), api_key.encode()):
        raise APIError(401, "missing or wrong API key; send 'Authorization: Bearer <key>'",
                       type="authentication_error", code="invalid_api_key")  # fmt: skip


async def _json_body(request: Request, limit: int) -> dict[str, Any]:
    """The request's JSON object (413 past `limit` bytes, 400 when it is not a JSON object)."""
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            raise APIError(413, f"request body is over the limit of {limit} bytes", code="body_too_large")
    try:
        body = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise APIError(400, f"the request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise APIError(400, f"the request body must be a JSON object, got {type(body).__name__}", code="invalid_json")
    return body


async def _unless_disconnected(request: Request, work: Coroutine[Any, Any, dict[str, Any]]) -> Response:
    """`work`'s body as JSON, or, when the client goes away first, `work` cancelled (its generation
    stops within one decode step and its slot is freed) and a 499 nobody reads."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait((task, watcher), return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, APIError):
            await task
        logger.info("client left %s before its answer; generation stopped", request.url.path)
        return Response(status_code=CLIENT_CLOSED)
    return JSONResponse(task.result())


async def _disconnected(request: Request) -> None:
    """Returns when the client disconnects (the body is read already: `receive` waits for that)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _sse(chunks: AsyncIterator[dict[str, Any]]) -> Response:
    """An SSE response of `chunks`; the first is awaited here so a failing request gets its HTTP error."""
    try:
        first = await anext(chunks)
    except StopAsyncIteration:
        first = None

    async def events() -> AsyncIterator[str]:
        try:
            if first is not None:
                yield json.dumps(first, ensure_ascii=False)
            async for chunk in chunks:
                yield json.dumps(chunk, ensure_ascii=False)
        except Exception as exc:  # noqa: BLE001 - any failure becomes the stream's last event
            error = api_error_from(exc)
            if error.status >= 500:
                _log_failure("a stream", exc)
            yield json.dumps(error.body())
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]
        yield "[DONE]"

    return EventSourceResponse(events(), ping=15, sep="\n")
