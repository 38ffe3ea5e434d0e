"""The live text and reasoning of one reply inside this process, for any number of listeners.

Listeners follow from a pair of character offsets (the ``Last-Event-ID``), so a reconnecting
client gets exactly the text and the reasoning it missed (G6). Each is kept as chunks with their
end offsets: appending is O(1) and reading from an offset is a bisect, however long it grows.
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
    reasoning_offset: int = 0  # characters of reasoning sent before this text


@dataclass(frozen=True)
class ReasoningDelta:
    offset: int  # characters of reasoning up to and including this piece
    text: str
    text_offset: int  # characters of the reply's text sent before it


@dataclass(frozen=True)
class Final:
    event: str  # "done" or "error"
    data: dict[str, Any]


class _Track:
    def __init__(self) -> None:
        self._chunks: list[str] = []
        self._ends: list[int] = []
        self.length = 0

    def append(self, text: str) -> None:
        self._chunks.append(text)
        self.length += len(text)
        self._ends.append(self.length)

    @property
    def text(self) -> str:
        return "".join(self._chunks)

    def text_from(self, offset: int) -> str:
        if offset >= self.length:
            return ""
        index = bisect_right(self._ends, offset)
        start = self._ends[index - 1] if index else 0
        return "".join(self._chunks[index:])[offset - start :]


class Relay:
    def __init__(self, initial: str = "", reasoning: str = "") -> None:
        self._text = _Track()
        self._reasoning = _Track()
        self.final: Final | None = None
        self._wake = asyncio.Event()
        if initial:
            self.append(initial)
        if reasoning:
            self.append_reasoning(reasoning)

    def append(self, text: str) -> None:
        if not text or self.final is not None:
            return
        self._text.append(text)
        self._notify()

    def append_reasoning(self, text: str) -> None:
        if not text or self.final is not None:
            return
        self._reasoning.append(text)
        self._notify()

    def close(self, final: Final) -> None:
        if self.final is None:
            self.final = final
            self._notify()

    @property
    def length(self) -> int:
        return self._text.length

    @property
    def text(self) -> str:
        return self._text.text

    @property
    def reasoning(self) -> str:
        return self._reasoning.text

    def text_from(self, offset: int) -> str:
        return self._text.text_from(offset)

    def _notify(self) -> None:
        self._wake.set()
        self._wake = asyncio.Event()

    async def follow(
        self, offset: int = 0, reasoning_offset: int = 0
    ) -> AsyncIterator[Delta | ReasoningDelta | Final]:
        """Deltas from the offsets on, as they come (reasoning before text, as a model thinks
        before it answers), then the final event."""
        while True:
            wake = self._wake
            thought = self._reasoning.text_from(reasoning_offset)
            if thought:
                reasoning_offset += len(thought)
                yield ReasoningDelta(reasoning_offset, thought, offset)
                continue
            text = self._text.text_from(offset)
            if text:
                offset += len(text)
                yield Delta(offset, text, reasoning_offset)
                continue
            if self.final is not None:
                yield self.final
                return
            await wake.wait()
