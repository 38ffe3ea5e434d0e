"""What each SDK method sends and how its answer reads, shared by ``Client`` and
``AsyncClient`` so the two differ only in ``await`` (STYLE: the clients mirror each other)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import uuid_utils

from chatkeep.client._models import Content, Message, Session

DEFAULT_URL = "http://127.0.0.1:8321"


class _NotGiven:
    """An argument left out, as opposed to an explicit ``None`` (e.g. ``parent_id=None``: a
    new root; left out: continue the active path)."""

    def __repr__(self) -> str:
        return "NOT_GIVEN"


NOT_GIVEN: Any = _NotGiven()


def new_id() -> str:
    """A client-chosen id (SPEC 1: UUIDv7, time-ordered, so ids sort like their creation)."""
    return str(uuid_utils.uuid7())


def resolve_config(base_url: str | None, api_key: str | None) -> tuple[str, str | None]:
    """Arguments first, then ``CHATKEEP_URL`` / ``CHATKEEP_API_KEY`` (SPEC 6.1)."""
    url = base_url or os.environ.get("CHATKEEP_URL") or DEFAULT_URL
    key = api_key if api_key is not None else os.environ.get("CHATKEEP_API_KEY")
    return url.rstrip("/"), key


def auth_headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    json: Any = None
    params: Mapping[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "path": self.path, "json": self.json}


@dataclass(frozen=True)
class Write:
    """A write the outbox may keep: its call, and what to answer while it is queued."""

    call: Call
    kind: Literal["session", "message", "batch"]
    id: str
    session_id: str
    queued: Any = field(compare=False)


def _now() -> datetime:
    return datetime.now(UTC)


def _given(**values: Any) -> dict[str, Any]:
    return {name: value for name, value in values.items() if value is not NOT_GIVEN}


def stamp(value: datetime | str) -> str:
    """A creation time as JSON (the outbox stores calls as JSON); naive is refused here, as
    the server would (it cannot know the zone)."""
    if isinstance(value, str):
        return value
    if value.tzinfo is None:
        raise ValueError("created_at needs a time zone (e.g. datetime.now(UTC))")
    return value.isoformat()


def create_session(
    *,
    id: str | None,
    title: str | None,
    model: str | None,
    pinned: bool,
    archived: bool,
    created_at: datetime | None = None,
) -> Write:
    sid = id or new_id()
    body = _given(title=title if title is not None else NOT_GIVEN, model=model or NOT_GIVEN)
    if pinned:
        body["pinned"] = True
    if archived:
        body["archived"] = True
    if created_at is not None:
        body["created_at"] = stamp(created_at)
    queued = Session(
        id=sid, title=title or "", model=model, pinned=pinned, archived=archived, status="queued"
    )
    return Write(Call("PUT", f"/api/sessions/{sid}", body), "session", sid, sid, queued)


def update_session(session_id: str, **changes: Any) -> Call:
    return Call("PATCH", f"/api/sessions/{session_id}", _given(**changes))


def message_body(
    *,
    role: str,
    content: Content,
    parent_id: Any = NOT_GIVEN,
    model: str | None = None,
    status: str | None = None,
    error: dict[str, Any] | None = None,
    usage: dict[str, Any] | None = None,
    created_at: datetime | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"role": role, "content": content}
    if parent_id is not NOT_GIVEN:
        body["parent_id"] = parent_id
    for name, value in (("model", model), ("status", status), ("error", error), ("usage", usage)):
        if value is not None:
            body[name] = value
    if created_at is not None:
        body["created_at"] = stamp(created_at)
    return body


def queued_message(session_id: str, message_id: str, body: Mapping[str, Any]) -> Message:
    return Message(
        id=message_id,
        session_id=session_id,
        parent_id=body.get("parent_id"),
        role=body["role"],
        content=body["content"],
        model=body.get("model"),
        status="queued",
        created_at=body.get("created_at") or _now(),
    )


def append_message(session_id: str, message_id: str | None, body: dict[str, Any]) -> Write:
    mid = message_id or new_id()
    call = Call("PUT", f"/api/sessions/{session_id}/messages/{mid}", body)
    return Write(call, "message", mid, session_id, queued_message(session_id, mid, body))


BATCH_FIELDS = {
    "id", "role", "content", "parent_id", "model", "status", "error", "usage", "created_at",
}  # fmt: skip


def append_batch(session_id: str, items: Sequence[Mapping[str, Any]]) -> Write:
    """One atomic batch (G9); every item gets its id here, so a retried batch is a replay."""
    prepared = []
    for item in items:
        unknown = set(item) - BATCH_FIELDS
        if unknown:
            raise TypeError(f"unknown message fields: {sorted(unknown)}")
        ready = {**item, "id": str(item.get("id") or new_id())}
        if ready.get("created_at") is not None:
            ready["created_at"] = stamp(ready["created_at"])
        prepared.append(ready)
    if not prepared:
        raise ValueError("append_many needs at least one message")
    queued = [queued_message(session_id, m["id"], m) for m in prepared]
    call = Call("POST", f"/api/sessions/{session_id}/messages:batch", {"messages": prepared})
    return Write(call, "batch", prepared[0]["id"], session_id, queued)


def batch_messages(body: Mapping[str, Any]) -> list[Message]:
    return [Message.model_validate(r["message"]) for r in body["results"] if r.get("message")]


def turn_body(
    *,
    content: Content,
    message_id: str | None,
    reply_id: str | None,
    parent_id: str | None,
    model: str | None,
    session: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """A turn (SPEC 4) with both ids chosen here: every retry or resume names the same user
    message and the same reply, so the server replays it instead of generating again (G1, G6)."""
    message: dict[str, Any] = {"id": message_id or new_id(), "content": content}
    if parent_id is not None:
        message["parent_id"] = parent_id
    body: dict[str, Any] = {"message": message, "reply_id": reply_id or new_id()}
    if model is not None:
        body["model"] = model
    if session is not None:
        body["session"] = dict(session)
    return body


def sessions_page(
    *, q: str | None, archived: bool, pinned: bool | None, cursor: str | None
) -> Call:
    params: dict[str, Any] = {"limit": 100, "archived": str(archived).lower()}
    if q:
        params["q"] = q
    if pinned is not None:
        params["pinned"] = str(pinned).lower()
    if cursor:
        params["cursor"] = cursor
    return Call("GET", "/api/sessions", params=params)


def messages_page(session_id: str, after_seq: int) -> Call:
    params = {"after_seq": after_seq, "limit": 1000}
    return Call("GET", f"/api/sessions/{session_id}/messages", params=params)


def search_page(q: str, page_size: int, cursor: str | None) -> Call:
    params: dict[str, Any] = {"q": q, "limit": page_size}
    if cursor:
        params["cursor"] = cursor
    return Call("GET", "/api/search", params=params)
