"""The retry policy itself (SPEC 6.1): which answers are retried, how long it waits (full
jitter, ``Retry-After``), and its two bounds, attempts and a total deadline."""

from __future__ import annotations

import time

import httpx
import pytest

import chatkeep
from chatkeep.client._errors import error_from_response
from chatkeep.client._retry import RetryPolicy, is_retryable, retrying

NEVER = [400, 403, 404, 409, 410, 413, 415, 422]


def problem(status: int, **headers: str) -> chatkeep.APIError:
    response = httpx.Response(status, headers=headers)
    body = b'{"code": "x", "detail": "d", "status": %d}' % status
    return error_from_response(response, body)


@pytest.mark.parametrize("status", NEVER + [401])
def test_answers_that_would_not_change_are_never_retried(status: int) -> None:
    assert not is_retryable(problem(status))


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_rate_limits_and_server_errors_are_retried(status: int) -> None:
    assert is_retryable(problem(status))
    assert is_retryable(chatkeep.APIConnectionError("refused"))
    assert is_retryable(chatkeep.APITimeoutError("slow"))


def test_full_jitter_stays_under_its_exponential_ceiling() -> None:
    policy = RetryPolicy(backoff_base=0.1, backoff_max=1.0)
    for n, ceiling in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.0), (9, 1.0)]:
        waits = [policy.backoff(n) for _ in range(300)]
        assert all(0 <= w <= ceiling for w in waits)
        assert max(waits) > ceiling * 0.5  # spread over the range, not a fixed step


def test_retry_after_is_honoured() -> None:
    calls: list[float] = []

    def flaky() -> str:
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise problem(429, **{"Retry-After": "0.2"})
        return "ok"

    assert retrying(RetryPolicy(backoff_base=5.0))(flaky) == "ok"
    gaps = [b - a for a, b in zip(calls, calls[1:], strict=False)]
    assert len(calls) == 3 and all(0.18 <= g < 2.0 for g in gaps)


def test_max_retries_counts_retries_after_the_first_attempt() -> None:
    calls: list[int] = []

    def down() -> None:
        calls.append(1)
        raise chatkeep.APIConnectionError("refused")

    with pytest.raises(chatkeep.APIConnectionError):
        retrying(RetryPolicy(max_retries=3, backoff_base=0.001))(down)
    assert len(calls) == 4


def test_the_deadline_bounds_the_whole_call() -> None:
    def slow_server() -> None:
        raise problem(503, **{"Retry-After": "0.3"})

    began = time.monotonic()
    with pytest.raises(chatkeep.ServerError):
        retrying(RetryPolicy(max_retries=100, deadline=1.0))(slow_server)
    assert time.monotonic() - began < 3.0  # unbounded, 100 retries would take 30 s


def test_a_404_is_raised_at_once() -> None:
    calls: list[int] = []

    def missing() -> None:
        calls.append(1)
        raise problem(404)

    with pytest.raises(chatkeep.NotFound):
        retrying(RetryPolicy())(missing)
    assert calls == [1]
