"""The web page: static HTML, CSS and ES modules served by chatkeep itself (no build step)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Scope

from chatkeep import __version__

STATIC = Path(__file__).parent / "static"
# Defence in depth behind DOMPurify: even injected markup could not run script. The service
# worker and the manifest are the page's own files ('self'), named so nobody has to know the
# fallback rules.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data: blob: http: https:; connect-src 'self'; object-src 'none'; "
    "worker-src 'self'; manifest-src 'self'; "
    "base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
# What the service worker keeps for opening offline: the page and every file it loads.
_SHELL_SUFFIXES = (".js", ".css", ".svg", ".png", ".webmanifest")
_NOT_SHELL = {"sw.js"}


class _Revalidated(StaticFiles):
    """Files are checked with the server on each load (ETag), so an upgrade never runs a mix
    of old and new modules."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers["Cache-Control"] = "no-cache"
        return response


def shell_files() -> list[Path]:
    return sorted(
        p
        for p in STATIC.rglob("*")
        if p.is_file() and p.suffix in _SHELL_SUFFIXES and p.name not in _NOT_SHELL
    )


def service_worker() -> bytes:
    """``static/sw.js`` with its version and file list filled in. The version hashes the
    package version and every file of the page, so any change in a release makes a new worker
    (and a new cache); an unchanged page keeps its cache (issue 9, item 4)."""
    files = shell_files()
    digest = hashlib.sha256(__version__.encode())
    for path in [*files, STATIC / "index.html", STATIC / "sw.js"]:
        digest.update(str(path.relative_to(STATIC)).encode() + b"\0" + path.read_bytes())
    shell = ["/", *(f"/static/{p.relative_to(STATIC).as_posix()}" for p in files)]
    source = (STATIC / "sw.js").read_text()
    source = source.replace("__CHATKEEP_VERSION__", f"{__version__}-{digest.hexdigest()[:16]}")
    return source.replace("__CHATKEEP_SHELL__", json.dumps(shell)).encode()


def install(app: FastAPI) -> None:
    """Serve the page at ``/`` (and at ``/c/{session_id}``), its service worker at ``/sw.js``
    (a worker's scope is its own folder and below, so it must live at the root), and its files
    under ``/static``."""
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

    @app.api_route("/sw.js", methods=["GET", "HEAD"], include_in_schema=False)
    async def sw() -> Response:
        # Made on each request (hashing the page's ~200 KB takes a millisecond): files replaced
        # under a running server are a new version too.
        worker = service_worker()
        headers = {
            "Cache-Control": "no-cache",  # the browser checks for a new release on each visit
            "Content-Security-Policy": "default-src 'self'",
            "X-Content-Type-Options": "nosniff",
        }
        return Response(worker, media_type="text/javascript", headers=headers)
