"""``Health``: what a provider's upstream said the last time it was asked, and when to ask again.

A provider that fails keeps the models it listed last, so a turn on one of them ends with a
precise error event instead of a 422 "unknown model" (issue 8, item 1). It is asked again on
demand (the next model listing or turn) once its backoff has passed, so a provider that comes
back is picked up without a restart, and one that stays down is not hammered.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

State = Literal["unknown", "ok", "unauthorized", "unreachable", "error"]


@dataclass(frozen=True, slots=True)
class Status:
    state: State
    message: str = ""
    checked_at: datetime | None = None


class Health:
    def __init__(
        self, *, ok_ttl_s: float = 60.0, backoff_min_s: float = 2.0, backoff_max_s: float = 60.0
    ) -> None:
        self.ok_ttl_s = ok_ttl_s
        self.backoff_min_s = backoff_min_s
        self.backoff_max_s = backoff_max_s
        self.status = Status("unknown")
        self._failures = 0
        self._next_check = 0.0  # monotonic; 0: check at the first chance
        # Held while the upstream is asked, so that concurrent page loads ask it once.
        self.lock = asyncio.Lock()

    @property
    def due(self) -> bool:
        return time.monotonic() >= self._next_check

    def ok(self) -> None:
        """A listing succeeded: fine until the next check, a minute from now."""
        self._failures = 0
        self._next_check = time.monotonic() + self.ok_ttl_s
        self.status = Status("ok", "", datetime.now(UTC))

    def answered(self) -> None:
        """A chat request succeeded. It does not postpone the next listing (new models must
        still show up while turns flow); after a failure it makes that listing due now, since
        the models it saw last may be out of date."""
        if self.status.state != "ok":
            self._failures = 0
            self._next_check = 0.0
            self.status = Status("ok", "", datetime.now(UTC))

    def failed(self, state: State, message: str) -> None:
        """Exponential backoff between re-checks: min, 2 min, 4 min ... up to max."""
        delay = min(self.backoff_max_s, self.backoff_min_s * 2**self._failures)
        self._failures += 1
        self._next_check = time.monotonic() + delay
        self.status = Status(state, message, datetime.now(UTC))
