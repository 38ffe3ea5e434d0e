"""Every error leaves as RFC 9457 ``application/problem+json`` with a stable ``code`` (G8).

No traceback ever reaches a client: unexpected exceptions are logged here and answered with a
plain ``internal_error``; database trouble that outlived its retries is a ``503`` to retry.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException

from chatkeep import metrics
from chatkeep.problems import IdempotencyConflict, Problem, StorageUnavailable, Unavailable

log = logging.getLogger("chatkeep.api")
PROBLEM_JSON = "application/problem+json"
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def problem_response(
    status: int,
    code: str,
    title: str,
    detail: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = {
        "type": f"https://chatkeep.dev/problems/{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        **extra,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _from_problem(problem: Problem, path: str = "") -> JSONResponse:
    if isinstance(problem, IdempotencyConflict):
        metrics.WRITES.labels(resource=metrics.resource_of(path), outcome="conflict").inc()
    return JSONResponse(
        jsonable_encoder(problem.body()),
        status_code=problem.status,
        media_type=PROBLEM_JSON,
        headers=problem.headers or None,
    )


async def _on_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Problem)
    return _from_problem(exc, request.url.path)


async def _on_validation(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": list(err.get("loc", ())), "msg": str(err.get("msg", "")), "type": err.get("type")}
        for err in exc.errors()[:20]
    ]
    first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
    where = ".".join(str(p) for p in first["loc"] if p != "body") or "request"
    return problem_response(
        422, "validation_error", "Invalid request", f"{where}: {first['msg']}", errors=errors
    )


async def _on_http(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    detail = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    return problem_response(
        exc.status_code, code, detail, detail, headers=dict(exc.headers or {}) or None
    )


def storage_trouble(exc: DBAPIError) -> StorageUnavailable | None:
    """A database that cannot store anything now: its disk is full or it is read-only (a
    read-only file or mount, a PostgreSQL in read-only mode). The transaction was rolled back,
    so nothing of the request is stored; it can be sent again once an operator makes room."""
    state = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    text = str(exc.orig).lower()
    if state in ("53100", "53000") or "disk is full" in text or "no space left" in text:
        return StorageUnavailable("the database's disk is full: nothing was saved; retry later")
    if state == "25006" or "readonly database" in text or "read-only" in text:
        return StorageUnavailable("the database is read-only: nothing was saved; retry later")
    return None


def _deterministic(exc: DBAPIError) -> bool:
    """A data or integrity error (SQLSTATE classes 22, 23): the same request fails the same way
    again, so answering 503 "retry" would send clients into a loop."""
    state = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    in_class = isinstance(state, str) and state[:2] in ("22", "23")
    return in_class or isinstance(exc, DataError | IntegrityError)


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, PoolTimeout):
        log.warning("no database connection free for %s %s", request.method, request.url.path)
        return _from_problem(Unavailable("the server is busy; retry", retry_after=2))
    if isinstance(exc, DBAPIError) and not _deterministic(exc):
        # The driver's message only: str(exc) would add the statement's parameters (message
        # content) to the log.
        reason = f"{type(exc.orig).__name__}: {str(exc.orig)[:300]}"
        log.warning("database error on %s %s: %s", request.method, request.url.path, reason)
        if request.method not in ("GET", "HEAD"):
            metrics.SAVE_FAILURES.inc()
        storage = storage_trouble(exc)
        if storage is not None:
            return _from_problem(storage)
        return _from_problem(Unavailable("the database is busy or unreachable; retry"))
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    if request.method not in ("GET", "HEAD"):
        metrics.SAVE_FAILURES.inc()
    return problem_response(500, "internal_error", "Internal error", "an unexpected error")


def install(app: FastAPI) -> None:
    app.add_exception_handler(Problem, _on_problem)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(HTTPException, _on_http)
    app.add_exception_handler(Exception, _on_unexpected)
