"""The chat page of `mmcore serve`: `GET /` and its static files (plain HTML, CSS and JavaScript modules
in `static/`, shipped as package data: no CDN, no build step). `docs/chat-page.md` describes it."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["WEB_DIR", "PAGE_HEADERS", "mount_page"]

#: The page's files (package data).
WEB_DIR = Path(__file__).parent / "static"

#: Sent with every page file: the page loads only its own files, and never from a cache that would
#: outlive an upgrade of the package.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        "media-src 'self' data: blob:; connect-src 'self'; base-uri 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


class _PageFiles(StaticFiles):
    """`StaticFiles` with the page's headers."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(k.lower().encode(), v.encode()) for k, v in PAGE_HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        await super().__call__(scope, receive, send_with_headers)


async def _index(request: Request) -> Response:
    return FileResponse(WEB_DIR / "index.html", headers=PAGE_HEADERS)


def mount_page(app: ASGIApp) -> None:
    """Serve the chat page at `/` and its modules and styles under `/static/` of a Starlette or
    FastAPI `app`."""
    app.add_route("/", _index, methods=["GET"])  # type: ignore[attr-defined]
    app.mount("/static", _PageFiles(directory=WEB_DIR), name="page-static")  # type: ignore[attr-defined]
