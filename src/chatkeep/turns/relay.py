"""The live text of one reply inside this process, for any number of listeners.

Listeners follow from a character offset (the ``Last-Event-ID``), so a reconnecting client gets
exactly the text it missed (G6). Text is kept as chunks with their end offsets: appending is
O(1) and reading from an offset is a bisect, however long the reply grows.
"""

from __future__ import annotations

import asyncio
from bisect import bisect_right
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Delta:
    offset: int  # characters of the reply up to and including this text
    text: str


@dataclass(frozen=True)
class Final:
    event: str  # "done" or "error"
    data: dict[str, Any]


class Relay:
    def __init__(self, initial: str = "") -> None:
        self._chunks: list[str] = []
        self._ends: list[int] = []
        self.length = 0
        self.final: Final | None = None
        self._wake = asyncio.Event()
        if initial:
            self.append(initial)

    def append(self, text: str) -> None:
        if not text or self.final is not None:
            return
        self._chunks.append(text)
        self.length += len(text)
        self._ends.append(self.length)
        self._notify()

    def close(self, final: Final) -> None:
        if self.final is None:
            self.final = final
            self._notify()

    @property
    def text(self) -> str:
        return "".join(self._chunks)

    def text_from(self, offset: int) -> str:
        if offset >= self.length:
            return ""
        index = bisect_right(self._ends, offset)
        start = self._ends[index - 1] if index else 0
        return "".join(self._chunks[index:])[offset - start :]

    def _notify(self) -> None:
        self._wake.set()
        self._wake = asyncio.Event()

    async def follow(self, offset: int = 0) -> AsyncIterator[Delta | Final]:
        """Deltas from ``offset`` on, as they come, then the final event."""
        while True:
            wake = self._wake
            text = self.text_from(offset)
            if text:
                offset += len(text)
                yield Delta(offset, text)
                continue
            if self.final is not None:
                yield self.final
                return
            await wake.wait()
