"""When to try a request again, and how long to wait: tenacity with exponential backoff and full
jitter, honouring ``Retry-After``, bounded by ``max_retries`` and a total deadline (SPEC 6.1).

Retrying a write is safe because every write carries its client-chosen id: a retry that reaches
the server after the first attempt did is a replay (``200`` with the stored body), never a second
row (G1). What is never retried: an answer that would be the same the next time (400, 403, 404,
409, 410, 413, 415, 422). A 401 is not retried here; the client refreshes credentials once.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import tenacity

from chatkeep.client._errors import APIConnectionError, RateLimited, ServerError


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 5  # retries after the first attempt
    deadline: float = 60.0  # seconds for all attempts of one call, waits included
    backoff_base: float = 0.25
    backoff_max: float = 8.0

    def backoff(self, retry_number: int, retry_after: float | None = None) -> float:
        """Seconds before retry ``retry_number`` (1-based): the server's ``Retry-After`` when it
        gave one, else full jitter, uniform in [0, min(max, base * 2**(n-1))] (AWS's
        "Exponential Backoff And Jitter"), so a crowd of clients does not retry in step."""
        if retry_after is not None:
            return min(retry_after, self.deadline)
        ceiling = min(self.backoff_max, self.backoff_base * 2 ** (retry_number - 1))
        return random.uniform(0, ceiling)


def is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, APIConnectionError | RateLimited | ServerError)


class _Wait(tenacity.wait.wait_base):
    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        return self.policy.backoff(retry_state.attempt_number, retry_after)


def _arguments(policy: RetryPolicy) -> dict[str, object]:
    return {
        "retry": tenacity.retry_if_exception(is_retryable),
        "wait": _Wait(policy),
        # stop_before_delay: never start a wait that would end past the deadline.
        "stop": tenacity.stop_after_attempt(policy.max_retries + 1)
        | tenacity.stop_before_delay(policy.deadline),
        "reraise": True,
    }


def retrying(policy: RetryPolicy) -> tenacity.Retrying:
    return tenacity.Retrying(**_arguments(policy))  # type: ignore[arg-type]


def async_retrying(policy: RetryPolicy) -> tenacity.AsyncRetrying:
    return tenacity.AsyncRetrying(**_arguments(policy))  # type: ignore[arg-type]
