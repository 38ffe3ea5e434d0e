"""The one small interface between a turn and a model: list the models, stream a reply.

Errors a turn can act on are ``ProviderError`` values with a stable ``code``::

    ProviderError
      upstream_timeout        no first token within the first-token timeout, or silence
                              longer than the idle timeout after it
      upstream_rate_limited   429
      upstream_unauthorized   401 or 403: the key is wrong, expired or lacks the model
      upstream_error          any other bad status, or an error reported inside the stream
      upstream_stream_broken  the stream ended (or the connection dropped) before a finish
      upstream_unavailable    the connection could not be made at all
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from chatkeep.providers.health import Health

ErrorCode = Literal[
    "upstream_timeout",
    "upstream_rate_limited",
    "upstream_unauthorized",
    "upstream_error",
    "upstream_stream_broken",
    "upstream_unavailable",
]
# What a model is for; only "chat" models can be a default (issue 8, item 3).
ModelKind = Literal["chat", "embedding", "audio", "image", "moderation"]


@dataclass(frozen=True, slots=True)
class ModelInfo:
    id: str  # the upstream's own model id, as sent in the request
    provider: str  # the name of the provider that serves it
    name: str  # what a person sees in the model picker
    is_demo: bool = False
    kind: ModelKind = "chat"


@dataclass(frozen=True, slots=True)
class Chunk:
    """A piece of a reply. Text chunks carry no finish_reason; the last chunk of a complete
    reply has empty text, the finish_reason, and the usage when the upstream reported it.
    ``reasoning`` is the model's thinking (``reasoning_content``, ``<think>``), never mixed
    into ``text``."""

    text: str
    usage: dict[str, Any] | None = None
    finish_reason: str | None = None
    reasoning: str = ""


class ProviderError(Exception):
    def __init__(self, code: ErrorCode, message: str, *, status: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code: ErrorCode = code
        self.message = message
        self.status = status


class Provider(Protocol):
    name: str
    # Whether the upstream answered last time it was asked, and what it said (issue 8, item 1).
    health: Health

    async def list_models(self) -> list[ModelInfo]:
        """The models on offer; an upstream that cannot answer yields the models it listed
        last (its ``health`` says why), never raises."""
        ...

    def stream_chat(
        self, *, model: str, messages: list[dict[str, Any]]
    ) -> AsyncGenerator[Chunk, None]:
        """Stream a reply to OpenAI chat-format ``messages``; raises ``ProviderError``.

        A generator rather than any iterator, so that a caller can ``aclose()`` it (or cancel
        its task) and the upstream request is closed at once, not when it is garbage collected.
        """
        ...

    async def aclose(self) -> None: ...
