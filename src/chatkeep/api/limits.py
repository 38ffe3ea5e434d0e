"""Limits on what a request may cost (G8): body size (413), content type (415), rate (429).

Rates are counted per user (every authenticated request), per sign-in address and per account
(failed sign-ins), by a ``Limiter`` whose state is shared by the whole deployment."""

from __future__ import annotations

import time
from typing import Protocol

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chatkeep.api.errors import problem_response
from chatkeep.problems import RateLimited
from chatkeep.store import limits as store_limits
from chatkeep.store.engine import Database

_UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


class RequestLimits:
    """Pure ASGI middleware, so that it also guards streaming request bodies: a body larger than
    ``max_body_bytes`` is refused with 413 before the route sees any of it."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _UNSAFE:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
            await self._refuse(scope, receive, send, 413)
            return
        has_body = (length is not None and int(length) > 0) or "transfer-encoding" in headers
        media_type = headers.get("content-type", "").split(";")[0].strip().lower()
        is_json = media_type == "application/json" or media_type.endswith("+json")
        if has_body and scope["path"].startswith("/api/") and not is_json:
            await self._refuse(scope, receive, send, 415)
            return
        if length is not None:
            await self.app(scope, receive, send)
            return
        # A chunked body has no length to check up front: read it (up to the limit) first.
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_body_bytes:
                await self._refuse(scope, receive, send, 413)
                return
        await self.app(scope, _replay(bytes(body), receive), send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, status: int) -> None:
        if status == 413:
            response = problem_response(
                413,
                "payload_too_large",
                "Request body too large",
                f"the body may be at most {self.max_body_bytes} bytes",
            )
        else:
            response = problem_response(
                415,
                "unsupported_media_type",
                "Send application/json",
                "request bodies under /api must be application/json",
            )
        await response(scope, receive, send)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


class Limiter(Protocol):
    """Where rate-limit counts live. Every process of a deployment must share them, so that a
    limit holds whatever the number of workers or replicas (G8): ``DatabaseLimiter`` keeps them
    in the database; a Redis backend can implement the same two methods."""

    async def hit(self, key: str, *, limit: int, window_s: int = 60) -> None:
        """Count one hit on ``key``; raise ``RateLimited`` (429, Retry-After) over ``limit``."""

    async def check(self, key: str, *, limit: int, window_s: int = 60) -> None:
        """Raise ``RateLimited`` if ``key`` already has ``limit`` hits, without counting one."""


class DatabaseLimiter:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def hit(self, key: str, *, limit: int, window_s: int = 60) -> None:
        if limit <= 0:
            return
        wait = await self.db.write(
            store_limits.hit, key, limit=limit, window_s=window_s, now=time.time()
        )
        if wait is not None:
            raise RateLimited(retry_after=wait)

    async def check(self, key: str, *, limit: int, window_s: int = 60) -> None:
        if limit <= 0:
            return
        hits, wait = await self.db.read(store_limits.count, key, window_s=window_s, now=time.time())
        if hits >= limit:
            raise RateLimited(retry_after=wait)
