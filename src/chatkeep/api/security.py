"""Security headers on every response, and forwarded headers honoured only from trusted proxies.

``ForwardedHeaders`` owns ``X-Forwarded-For``/``X-Forwarded-Proto`` (``chatkeep serve`` turns
uvicorn's own handling off): a request whose peer is one of ``trusted_proxies`` gets the
client address and scheme the proxy reports; from anyone else the headers are ignored, so a
client cannot claim another address to dodge the per-address sign-in limit, nor claim HTTPS.
With a trusted proxy that says ``https``, the session cookie is ``Secure`` and HSTS is sent.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Responses other than the web page (which sets its own, stricter-for-a-page policy) render
# nothing: JSON, SSE, blobs. No script, no framing, no plugin, whatever a browser is given.
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
# The interactive API docs (/docs) are FastAPI's Swagger page: inline script from a CDN. They
# keep their script but may not be framed.
DOCS_CSP = "frame-ancestors 'none'"

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _networks(entries: Iterable[str]) -> list[_Network]:
    return [ipaddress.ip_network(entry.strip(), strict=False) for entry in entries if entry.strip()]


class ForwardedHeaders:
    def __init__(self, app: ASGIApp, *, trusted_proxies: Iterable[str]) -> None:
        self.app = app
        self.trusted = _networks(trusted_proxies)

    def _is_trusted(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self.trusted)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in {"http", "websocket"} or not self.trusted:
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        if client and self._is_trusted(client[0]):
            headers = {k.lower(): v.decode("latin-1") for k, v in scope["headers"]}
            proto = headers.get(b"x-forwarded-proto", "").split(",")[0].strip().lower()
            if proto in {"http", "https"}:
                scope = {**scope, "scheme": proto}
            hops = [h.strip() for h in headers.get(b"x-forwarded-for", "").split(",") if h.strip()]
            # The rightmost hop that is not one of our proxies is the real client; anything
            # left of it was written by the client itself and proves nothing.
            for hop in reversed(hops):
                if not self._is_trusted(hop):
                    scope = {**scope, "client": (hop, 0)}
                    break
        await self.app(scope, receive, send)


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        https = scope.get("scheme") == "https"

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("Referrer-Policy", "same-origin")
                headers.setdefault("X-Frame-Options", "DENY")
                docs = path.startswith(("/docs", "/redoc"))
                headers.setdefault("Content-Security-Policy", DOCS_CSP if docs else API_CSP)
                if https:
                    headers.setdefault("Strict-Transport-Security", "max-age=31536000")
            await send(message)

        await self.app(scope, receive, with_headers)
