"""The SDK's exceptions: one tree rooted at ``ChatkeepError`` (SPEC 6.1, STYLE habit 7)::

ChatkeepError
├── APIConnectionError            the server could not be reached (connect, read, timeout)
│   └── APITimeoutError
├── APIError                      the server answered with a problem (.status, .code, .detail)
│   ├── BadRequest                400
│   ├── AuthenticationError       401
│   ├── PermissionDenied          403
│   ├── NotFound                  404
│   ├── Conflict                  409 (idempotency_conflict, generation_in_progress, ...)
│   ├── Gone                      410 (a deleted chat, G5)
│   ├── PayloadTooLarge           413
│   ├── UnsupportedMediaType      415
│   ├── UnprocessableEntity       422
│   ├── RateLimited               429 (.retry_after)
│   └── ServerError               5xx
└── TurnError                     a turn's stream ended with an ``error`` event (.code, .reply)
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from chatkeep.client._models import Message


class ChatkeepError(Exception):
    """Every exception the SDK raises."""


class APIConnectionError(ChatkeepError):
    """No answer from the server: it was unreachable, the connection broke, or it timed out."""


class APITimeoutError(APIConnectionError):
    pass


class APIError(ChatkeepError):
    """The server answered with an RFC 9457 problem: ``status``, a stable ``code``, ``detail``."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        problem: dict[str, Any] | None = None,
        headers: httpx.Headers | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.problem = problem or {}
        self.headers = headers if headers is not None else httpx.Headers()


class BadRequest(APIError):
    pass


class AuthenticationError(APIError):
    pass


class PermissionDenied(APIError):
    pass


class NotFound(APIError):
    pass


class Conflict(APIError):
    pass


class Gone(APIError):
    pass


class PayloadTooLarge(APIError):
    pass


class UnsupportedMediaType(APIError):
    pass


class UnprocessableEntity(APIError):
    pass


class RateLimited(APIError):
    @property
    def retry_after(self) -> float | None:
        """Seconds the server asked us to wait (``Retry-After``, delta-seconds form)."""
        value = self.headers.get("retry-after")
        try:
            return max(0.0, float(value)) if value is not None else None
        except ValueError:
            return None


class ServerError(APIError):
    @property
    def retry_after(self) -> float | None:
        value = self.headers.get("retry-after")
        try:
            return max(0.0, float(value)) if value is not None else None
        except ValueError:
            return None


class TurnError(ChatkeepError):
    """The reply ended in an ``error`` event (SPEC 4); ``reply`` is the reply as stored."""

    def __init__(self, code: str, message: str, reply: Message | None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.reply = reply


BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequest,
    401: AuthenticationError,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    410: Gone,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    422: UnprocessableEntity,
    429: RateLimited,
}


def error_from_response(response: httpx.Response, body: bytes) -> APIError:
    """The exception for a non-2xx answer, from its problem+json body when it has one."""
    problem: dict[str, Any] = {}
    try:
        parsed = json.loads(body) if body else {}
        if isinstance(parsed, dict):
            problem = parsed
    except ValueError:
        pass
    status = response.status_code
    code = str(problem.get("code") or ("server_error" if status >= 500 else f"http_{status}"))
    detail = str(problem.get("detail") or problem.get("title") or response.reason_phrase)
    kind = BY_STATUS.get(status, ServerError if status >= 500 else APIError)
    return kind(status, code, detail, problem, response.headers)
