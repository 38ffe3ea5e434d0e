"""``create_app``: the one place the server is put together."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chatkeep import __version__, metrics, web
from chatkeep.api import errors
from chatkeep.api.limits import RateLimiter, RequestLimits
from chatkeep.api.routes import auth, blobs, health, messages, search, sessions, turns
from chatkeep.providers.registry import Providers
from chatkeep.settings import Settings
from chatkeep.store import migrate
from chatkeep.store import search as search_index
from chatkeep.store.engine import Database
from chatkeep.turns.manager import TurnManager


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.is_sqlite:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        db = Database(
            settings.resolved_database_url,
            sqlite_synchronous=settings.sqlite_synchronous,
            pool_size=settings.db_pool_size,
            retry_attempts=settings.db_retry_attempts,
            on_retry=lambda _exc: metrics.DB_RETRIES.inc(),
        )
        if settings.migrate_on_start:
            await migrate.upgrade(db)
            await db.write(search_index.use_language, language=settings.search_language)
        providers = await Providers.from_settings(settings)
        turns = TurnManager(db, providers, settings)
        await turns.start()
        app.state.db = db
        app.state.turns = turns
        app.state.on_session_deleted = turns.on_session_deleted
        try:
            yield
        finally:
            await turns.stop()
            await providers.aclose()
            await db.dispose()

    app = FastAPI(
        title="chatkeep",
        version=__version__,
        summary="Chat sessions and messages for language models, stored exactly once.",
        lifespan=lifespan,
        docs_url="/docs",
        openapi_url="/openapi.json",
    )
    app.state.settings = settings
    app.state.rate_limiter = RateLimiter(settings.rate_limit_per_minute)
    app.state.login_limiter = RateLimiter(settings.login_attempts_per_minute)
    errors.install(app)
    for router in (
        health.router,
        auth.router,
        sessions.router,
        messages.router,
        messages.batch_router,
        turns.router,
        blobs.router,
        search.router,
    ):
        app.include_router(router)

    web.install(app)
    app.add_middleware(RequestLimits, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(Timing)
    return app


class Timing:
    """Request latency by route template (not by raw path, which would explode the labels)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def timed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                route = scope.get("route")
                path = getattr(route, "path", "unmatched")
                metrics.REQUEST_SECONDS.labels(scope["method"], path).observe(
                    time.perf_counter() - started
                )
            await send(message)

        await self.app(scope, receive, timed_send)
