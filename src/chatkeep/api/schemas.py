"""Request and response bodies: one family per resource (Create, Update, Public, Page)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    model_validator,
)

# How deep a client may nest JSON (in ``error`` and ``usage``): far below the depth at which
# pydantic can no longer serialize it back (about 250 levels), far above any real use.
MAX_JSON_DEPTH = 32


def _no_nul(text: str) -> str:
    # PostgreSQL cannot store NUL in text: refused on every database alike (G8).
    if "\x00" in text:
        raise ValueError("may not contain NUL characters")
    return text


def _check_json(value: Any, depth: int = 0) -> None:
    """Every string is valid Unicode (a JSON escape like \\ud800 makes a lone surrogate, which
    no database stores and ``request_hash`` cannot encode) and nesting is bounded (G8)."""
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("text must be valid Unicode (a lone surrogate is not)") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_json(key, depth + 1)
            _check_json(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_json(item, depth + 1)


# A client-given creation time (an import keeping the source's dates, SPEC 6.2): a little
# ahead of this server's clock is skew, far ahead is a mistake.
MAX_CLOCK_SKEW = timedelta(days=1)
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)


def _past_instant(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    # In UTC here, so an offset near year 1 or 9999 is a 422 and not an OverflowError (G8).
    try:
        when = value.astimezone(UTC)
    except (OverflowError, ValueError):
        raise ValueError("out of range") from None
    if when < EARLIEST:
        raise ValueError("may not be before 1970")
    if when > datetime.now(UTC) + MAX_CLOCK_SKEW:
        raise ValueError("may not be in the future")
    return when


Role = Literal["system", "user", "assistant"]
Status = Literal["complete", "streaming", "error", "cancelled", "interrupted"]
Title = Annotated[str, Field(max_length=500), AfterValidator(_no_nul)]
ModelName = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_no_nul)]
Name = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_no_nul)]
CreatedAt = Annotated[
    AwareDatetime | None,
    AfterValidator(_past_instant),
    Field(
        default=None,
        description="When it was created, with a time zone (an import keeping the source's "
        "dates); absent: now. Not after this server's clock plus a day.",
    ),
]


class Strict(BaseModel):
    """Part of a request body: no unknown fields."""

    model_config = ConfigDict(extra="forbid")


class Body(Strict):
    """A whole request body: also valid Unicode and bounded nesting, checked once here rather
    than again in every nested part (a large message would be walked several times)."""

    @model_validator(mode="before")
    @classmethod
    def _valid_json(cls, data: Any) -> Any:
        _check_json(data)
        return data


class TextPart(Strict):
    type: Literal["text"]
    text: str


class ImageUrl(Strict):
    url: str = Field(max_length=12_000_000)
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(Strict):
    type: Literal["image_url"]
    image_url: ImageUrl


Part = Annotated[TextPart | ImagePart, Field(discriminator="type")]
Content = str | Annotated[list[Part], Field(min_length=1)]


class SessionCreate(Body):
    title: Title | None = None
    model: ModelName | None = None
    pinned: bool = False
    archived: bool = False
    created_at: CreatedAt = None


class SessionUpdate(Body):
    title: Title | None = None
    model: ModelName | None = None
    pinned: bool | None = None
    archived: bool | None = None
    active_leaf_id: UUID | None = None


class SessionPublic(BaseModel):
    id: str
    title: str
    model: str | None
    created_at: datetime
    updated_at: datetime
    pinned: bool
    archived: bool
    active_leaf_id: str | None
    last_seq: int


class MessagePublic(BaseModel):
    id: str
    session_id: str
    seq: int
    parent_id: str | None
    role: Role
    content: str | list[dict[str, Any]]
    model: str | None
    status: Status
    error: dict[str, Any] | None
    usage: dict[str, Any] | None
    reasoning: str | None = Field(
        default=None, description="A reasoning model's thinking, apart from the content."
    )
    reasoning_ms: int | None = Field(default=None, description="How long the model thought.")
    created_at: datetime
    updated_at: datetime


class SessionDetail(SessionPublic):
    messages: list[MessagePublic] = Field(description="The active path, root to leaf.")
    has_more: bool = Field(default=False, description="With limit: earlier messages exist.")


class SessionsPage(BaseModel):
    sessions: list[SessionPublic]
    next_cursor: str | None


class MessageCreate(Body):
    role: Role
    content: Content
    parent_id: UUID | None = Field(
        default=None,
        description="Absent: continue the active path. null: a new root. An earlier message: "
        "a branch (an edit).",
    )
    model: ModelName | None = None
    status: Literal["complete", "error", "cancelled", "interrupted"] = "complete"
    error: dict[str, Any] | None = None
    usage: dict[str, Any] | None = None
    created_at: CreatedAt = None


class BatchItem(MessageCreate):
    id: UUID


class BatchCreate(Body):
    messages: list[BatchItem] = Field(min_length=1)


class BatchItemResult(BaseModel):
    id: str
    status: int
    message: MessagePublic | None = None
    code: str | None = None
    detail: str | None = None


class BatchResult(BaseModel):
    results: list[BatchItemResult]


class MessagesPage(BaseModel):
    messages: list[MessagePublic]
    next_after_seq: int | None
    last_seq: int


class Credentials(Body):
    name: Name
    password: str = Field(min_length=1, max_length=1024)


class UserPublic(BaseModel):
    name: str
    is_admin: bool


class AuthStatus(BaseModel):
    needs_setup: bool
    user: UserPublic | None
    csrf_token: str | None = None


class KeyCreate(Body):
    name: Name


class KeyCreated(BaseModel):
    name: str
    prefix: str
    key: str = Field(description="Shown once; only its hash is stored.")


class TurnMessage(Strict):
    id: UUID
    content: Content
    parent_id: UUID | None = Field(
        default=None,
        description="Absent: continue the active path. An earlier message: an edit (a branch).",
    )


class TurnSession(Strict):
    title: Title | None = None
    model: ModelName | None = None


class TurnCreate(Body):
    message: TurnMessage
    reply_id: UUID | None = Field(
        default=None,
        description="Absent: derived from message.id, so a retry finds the same reply. "
        "A new one for the same message: a regeneration.",
    )
    model: ModelName | None = None
    session: TurnSession | None = Field(
        default=None, description="Create the session in the same request if it is absent."
    )


class ModelPublic(BaseModel):
    id: str = Field(description="What to send as a turn's model: provider:model with several.")
    provider: str
    name: str
    is_demo: bool
    kind: Literal["chat", "embedding", "audio", "image", "moderation"] = "chat"
    upstream_id: str = Field(default="", description="The provider's own id of the model.")
    available: bool = Field(
        default=True, description="False while its provider fails (listed as last seen)."
    )


class ProviderPublic(BaseModel):
    """A configured provider's state as of its last check. Never its key or headers."""

    name: str
    state: Literal["unknown", "ok", "unauthorized", "unreachable", "error"]
    message: str = ""
    checked_at: datetime | None = None


class ModelsList(BaseModel):
    models: list[ModelPublic]
    default: str | None
    providers: list[ProviderPublic] = Field(default_factory=list)


class SearchHit(BaseModel):
    session_id: str
    session_title: str
    message_id: str | None = Field(description="None for a chat whose title matches.")
    role: Role | None
    seq: int | None
    snippet: str = Field(description="Plain text, never HTML.")
    highlights: list[tuple[int, int]] = Field(
        description="[start, end) character offsets into snippet of the matched words."
    )
    created_at: datetime
    score: float


class SearchPage(BaseModel):
    hits: list[SearchHit]
    next_cursor: str | None
