"""Who is asking: an API key (``Authorization: Bearer ck_…``) for programs, or a browser's
sign-in cookie, which must be paired with an ``X-CSRF-Token`` header on unsafe methods."""

from __future__ import annotations

import hmac

from fastapi import Request

from chatkeep.problems import CsrfFailed, Unauthorized
from chatkeep.store import users
from chatkeep.store.engine import Database
from chatkeep.store.users import Principal

SESSION_COOKIE = "chatkeep_session"
CSRF_COOKIE = "chatkeep_csrf"
CSRF_HEADER = "x-csrf-token"
_SAFE = {"GET", "HEAD", "OPTIONS"}


async def current_user(request: Request) -> Principal:
    db: Database = request.app.state.db
    principal = await _authenticate(request, db)
    request.app.state.rate_limiter.hit(f"user:{principal.user_pk}")
    request.state.principal = principal
    return principal


async def _authenticate(request: Request, db: Database) -> Principal:
    header = request.headers.get("authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip().startswith("ck_"):
            raise _unauthorized("use 'Authorization: Bearer ck_…' with an API key")
        principal = await db.read(users.principal_for_api_key, token.strip())
        if principal is None:
            raise _unauthorized("unknown or revoked API key")
        return principal
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        raise _unauthorized("sign in, or send an API key")
    principal = await db.read(users.principal_for_web_session, cookie)
    if principal is None:
        raise _unauthorized("your sign-in has expired")
    if request.method not in _SAFE:
        sent = request.headers.get(CSRF_HEADER, "")
        if not principal.csrf_token or not hmac.compare_digest(sent, principal.csrf_token):
            raise CsrfFailed("send the X-CSRF-Token header given at sign-in")
    return principal


def _unauthorized(detail: str) -> Unauthorized:
    problem = Unauthorized(detail)
    problem.headers["WWW-Authenticate"] = 'Bearer realm="chatkeep"'
    return problem
