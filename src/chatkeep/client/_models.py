"""Typed views of what the server returns (SPEC 1, SPEC 4, CONTRACTS.md search): pydantic models
that ignore fields they do not know, so a newer server never breaks an older client."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["system", "user", "assistant"]
# "queued": kept in the client's outbox, not yet confirmed by the server (SPEC 6.1).
MessageStatus = Literal["complete", "streaming", "error", "cancelled", "interrupted", "queued"]
Content = str | list[dict[str, Any]]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Message(_Model):
    id: str
    session_id: str
    seq: int | None = Field(default=None, description="None while the message is queued.")
    parent_id: str | None = None
    role: Role
    content: Content
    model: str | None = None
    status: MessageStatus = "complete"
    error: dict[str, Any] | None = None
    usage: dict[str, Any] | None = None
    reasoning: str | None = Field(
        default=None, description="A reasoning model's thinking, kept apart from the answer."
    )
    reasoning_ms: int | None = Field(default=None, description="How long it thought.")
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def text(self) -> str:
        """The content's text, whether it is a string or a list of parts."""
        if isinstance(self.content, str):
            return self.content
        return "".join(str(p.get("text", "")) for p in self.content if p.get("type") == "text")


class Session(_Model):
    id: str
    title: str = ""
    model: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    pinned: bool = False
    archived: bool = False
    active_leaf_id: str | None = None
    last_seq: int = 0
    status: Literal["saved", "queued"] = "saved"
    messages: list[Message] = Field(
        default_factory=list, description="From sessions.get: the active path, then queued ones."
    )
    has_more: bool = False


class Model(_Model):
    """A model from ``GET /api/models``."""

    id: str
    provider: str
    name: str
    is_demo: bool = False


class SearchHit(_Model):
    session_id: str
    session_title: str
    message_id: str | None = None
    role: Role | None = None
    seq: int | None = None
    snippet: str
    highlights: list[tuple[int, int]] = Field(default_factory=list)
    created_at: datetime | None = None
    score: float = 0.0


class BatchItemResult(_Model):
    id: str
    status: int
    message: Message | None = None
    code: str | None = None
    detail: str | None = None


class OutboxEntry(_Model):
    """A write kept on disk until the server confirms it (SPEC 6.1 outbox)."""

    id: str
    kind: Literal["session", "message", "batch"]
    session_id: str
    position: int
    created_at: datetime
    body: dict[str, Any]
    problem: dict[str, Any] | None = None


class MessageEvent(_Model):
    type: Literal["message"] = "message"
    message: Message


class StartEvent(_Model):
    type: Literal["start"] = "start"
    reply: Message


class DeltaEvent(_Model):
    type: Literal["delta"] = "delta"
    text: str
    offset: int = Field(description="Characters of the reply so far, this delta included.")


class DoneEvent(_Model):
    type: Literal["done"] = "done"
    reply: Message


class ErrorEvent(_Model):
    type: Literal["error"] = "error"
    code: str
    message: str = ""
    reply: Message | None = None


TurnEvent = MessageEvent | StartEvent | DeltaEvent | DoneEvent | ErrorEvent
