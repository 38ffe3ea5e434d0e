"""Errors as values with a stable ``code`` (G8).

Raised anywhere on the server side; the API turns each into an RFC 9457 problem+json response.
"""

from __future__ import annotations

from typing import Any


class Problem(Exception):
    status: int = 400
    code: str = "bad_request"
    title: str = "Bad request"

    def __init__(self, detail: str = "", **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extra = extra
        self.headers: dict[str, str] = {}

    def body(self) -> dict[str, Any]:
        return {
            "type": f"https://chatkeep.dev/problems/{self.code}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
            **self.extra,
        }


class Unauthorized(Problem):
    status, code, title = 401, "unauthorized", "Sign in required"


class Forbidden(Problem):
    status, code, title = 403, "forbidden", "Forbidden"


class CsrfFailed(Problem):
    status, code, title = 403, "csrf_failed", "Missing or wrong CSRF token"


class NotFound(Problem):
    status, code, title = 404, "not_found", "Not found"


class IdempotencyConflict(Problem):
    status, code, title = 409, "idempotency_conflict", "This id was already used for other data"


class GenerationInProgress(Problem):
    status, code, title = 409, "generation_in_progress", "A reply is still being generated"


class AlreadyExists(Problem):
    status, code, title = 409, "already_exists", "Already exists"


class Gone(Problem):
    status, code, title = 410, "gone", "This session was deleted"


class PayloadTooLarge(Problem):
    status, code, title = 413, "payload_too_large", "Request body too large"


class UnsupportedMediaType(Problem):
    status, code, title = 415, "unsupported_media_type", "Send application/json"


class Invalid(Problem):
    status, code, title = 422, "validation_error", "Invalid request"


class InvalidQuery(Invalid):
    code, title = "invalid_query", "The search query has nothing to search for"


class InvalidParent(Invalid):
    code, title = "invalid_parent", "parent_id is not a message of this session"


class InvalidContent(Invalid):
    code, title = "invalid_content", "Invalid message content"


class InvalidImage(Invalid):
    code, title = "invalid_image", "Invalid image"


class BatchFailed(Problem):
    """A batch is all or nothing (G9): one bad item rolls back the rest; ``results`` says which."""

    status, code, title = 409, "batch_failed", "The batch was not saved"


class RateLimited(Problem):
    status, code, title = 429, "rate_limited", "Too many requests"

    def __init__(self, retry_after: int, detail: str = "") -> None:
        super().__init__(detail or f"Try again in {retry_after} s")
        self.headers["Retry-After"] = str(retry_after)


class Unavailable(Problem):
    status, code, title = 503, "unavailable", "Temporarily unavailable"

    def __init__(self, detail: str = "", retry_after: int = 1) -> None:
        super().__init__(detail)
        self.headers["Retry-After"] = str(retry_after)
