"""Limits on what a request may cost (G8): body size (413), content type (415), rate (429)."""

from __future__ import annotations

import math
import time
from collections import defaultdict, deque

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chatkeep.api.errors import problem_response
from chatkeep.problems import RateLimited

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


class RateLimiter:
    """A sliding one-minute window per key, in this process. With N worker processes a user
    may reach N times the limit; the limit is a guard against runaway clients, not a quota."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._hits: defaultdict[str, deque[float]] = defaultdict(deque)

    def hit(self, key: str) -> None:
        if self.per_minute <= 0:
            return
        now = time.monotonic()
        window = self._hits[key]
        while window and window[0] <= now - 60:
            window.popleft()
        if len(window) >= self.per_minute:
            raise RateLimited(retry_after=max(1, math.ceil(window[0] + 60 - now)))
        window.append(now)
        if len(self._hits) > 100_000:  # forget idle keys rather than grow without bound
            for idle in [k for k, w in self._hits.items() if not w or w[-1] <= now - 60]:
                del self._hits[idle]
