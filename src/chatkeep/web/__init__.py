"""The web page: static HTML, CSS and ES modules served by chatkeep itself (no build step)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Scope

STATIC = Path(__file__).parent / "static"
# Defence in depth behind DOMPurify: even injected markup could not run script.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data: blob: http: https:; connect-src 'self'; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


class _Revalidated(StaticFiles):
    """Files are checked with the server on each load (ETag), so an upgrade never runs a mix
    of old and new modules."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers["Cache-Control"] = "no-cache"
        return response


def install(app: FastAPI) -> None:
    """Serve the page at ``/`` (and at ``/c/{session_id}``) and its files under ``/static``."""
    app.mount("/static", _Revalidated(directory=STATIC), name="static")

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    @app.api_route("/c/{session_id}", methods=["GET", "HEAD"], include_in_schema=False)
    async def page() -> FileResponse:
        headers = {
            "Cache-Control": "no-cache",
            "Content-Security-Policy": CSP,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "same-origin",
        }
        return FileResponse(STATIC / "index.html", headers=headers)
