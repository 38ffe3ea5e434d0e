"""Who is asking: an API key (``Authorization: Bearer ck_…``) for programs, or a browser's
sign-in cookie, which must be paired with an ``X-CSRF-Token`` header on unsafe methods."""

from __future__ import annotations

import hmac
import time

from fastapi import Request

from chatkeep.problems import CsrfFailed, Unauthorized
from chatkeep.store import users
from chatkeep.store.engine import Database
from chatkeep.store.users import Principal

SESSION_COOKIE = "chatkeep_session"
CSRF_COOKIE = "chatkeep_csrf"
CSRF_HEADER = "x-csrf-token"
_SAFE = {"GET", "HEAD", "OPTIONS"}


class PrincipalCache:
    """Credential -> principal for a short time, so that a request costs one database hand-off
    (its work), not two (auth, then its work): issue 6.

    A revocation, sign-out or password change made through this process empties the cache at
    once; one made in another process (another worker, ``chatkeep keys revoke``) takes effect
    here within ``ttl_s`` (``auth_cache_ttl_s``, 2 s by default; 0 turns the cache off). Only
    successes are kept: an unknown key is looked up every time.
    """

    MAX_ENTRIES = 10_000

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._entries: dict[tuple[str, str], tuple[Principal, float]] = {}

    def get(self, kind: str, token: str) -> Principal | None:
        entry = self._entries.get((kind, token))
        if entry is None:
            return None
        if entry[1] < time.monotonic():
            self._entries.pop((kind, token), None)
            return None
        return entry[0]

    def put(self, kind: str, token: str, principal: Principal) -> None:
        if self.ttl_s <= 0:
            return
        if len(self._entries) >= self.MAX_ENTRIES:
            self._entries.clear()
        self._entries[(kind, token)] = (principal, time.monotonic() + self.ttl_s)

    def clear(self) -> None:
        self._entries.clear()


def principal_cache(request: Request) -> PrincipalCache:
    state = request.app.state
    cache: PrincipalCache | None = getattr(state, "principal_cache", None)
    if cache is None:
        cache = PrincipalCache(state.settings.auth_cache_ttl_s)
        state.principal_cache = cache
    return cache


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
        token = token.strip()
        cache = principal_cache(request)
        principal = cache.get("key", token)
        if principal is None:
            principal = await db.read(users.principal_for_api_key, token)
            if principal is not None:
                cache.put("key", token, principal)
        if principal is None:
            raise _unauthorized("unknown or revoked API key")
        return principal
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        raise _unauthorized("sign in, or send an API key")
    cache = principal_cache(request)
    principal = cache.get("cookie", cookie)
    if principal is None:
        principal = await db.read(users.principal_for_web_session, cookie)
        if principal is not None:
            cache.put("cookie", cookie, principal)
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
