"""/api/sessions/{sid}/messages: append one or a batch without generating, and sync by seq."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status
from sqlalchemy import Connection

from chatkeep import metrics
from chatkeep.api.deps import CurrentUser, DbDep, MessageId, SessionId, SettingsDep
from chatkeep.api.encoding import json_response
from chatkeep.api.schemas import (
    BatchCreate,
    BatchResult,
    MessageCreate,
    MessagePublic,
    MessagesPage,
)
from chatkeep.problems import Invalid
from chatkeep.settings import Settings
from chatkeep.store import content, messages, sessions
from chatkeep.store.hashing import request_hash

router = APIRouter(prefix="/api/sessions/{session_id}/messages", tags=["messages"])


def content_limits(settings: Settings) -> content.ContentLimits:
    return content.ContentLimits(
        max_parts=settings.max_content_parts,
        max_image_bytes=settings.max_image_bytes,
        max_text_chars=settings.max_text_chars,
    )


def new_message(
    message_id: str, body: MessageCreate, settings: Settings
) -> tuple[messages.NewMessage, list[content.NewBlob]]:
    raw = body.model_dump(mode="json", exclude_unset=True)
    normalized, blobs = content.normalize_content(raw["content"], content_limits(settings))
    parent_given = "parent_id" in body.model_fields_set
    parent_id = str(body.parent_id) if body.parent_id is not None else None
    request = {
        "role": body.role,
        "content": normalized,
        "parent_id": parent_id if parent_given else "<active leaf>",
        "model": body.model,
        "status": body.status,
        "error": body.error,
        "usage": body.usage,
    }
    extra: dict[str, Any] = {}
    if body.created_at is not None:
        # Only when given, so the fingerprints of requests without it stay as they were (G1);
        # in UTC, so the same instant with another offset is the same request.
        request["created_at"] = body.created_at.isoformat()
        extra["created_at"] = body.created_at
    fingerprint = request_hash(request)
    msg = messages.NewMessage(
        id=message_id,
        role=body.role,
        content=normalized,
        fingerprint=fingerprint,
        parent_id=parent_id,
        parent_given=parent_given,
        model=body.model,
        status=body.status,
        error=body.error,
        usage=body.usage,
        extra=extra,
    )
    return msg, blobs


@router.put("/{message_id}", response_model=MessagePublic, status_code=201)
async def put_message(
    session_id: SessionId,
    message_id: MessageId,
    body: MessageCreate,
    user: CurrentUser,
    db: DbDep,
    settings: SettingsDep,
) -> Response:
    """Append one message (an import, or a reply generated elsewhere): 201, then 200 on replay."""
    msg, blobs = new_message(str(message_id), body, settings)

    def work(conn: Any) -> tuple[dict[str, Any], bool]:
        content.put_blobs(conn, user.user_pk, blobs)
        content.check_blob_refs(conn, user.user_pk, msg.content)
        return messages.append_message(
            conn, user_pk=user.user_pk, session_id=str(session_id), msg=msg
        )

    public, created = await db.write(work)
    metrics.WRITES.labels(resource="message", outcome="created" if created else "replayed").inc()
    return json_response(public, status.HTTP_201_CREATED if created else status.HTTP_200_OK)


@router.get("", response_model=MessagesPage)
async def sync_messages(
    session_id: SessionId,
    user: CurrentUser,
    db: DbDep,
    after_seq: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,  # seq is a BIGINT
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    """Every branch's messages after ``after_seq``, in order: incremental sync."""

    def load(conn: Connection) -> dict[str, Any]:
        row = sessions.live_session(conn, user.user_pk, str(session_id))
        return messages.messages_after(conn, row, after_seq=after_seq, limit=limit)

    return json_response(await db.read(load))


batch_router = APIRouter(prefix="/api/sessions", tags=["messages"])


@batch_router.post("/{session_id}/messages:batch", response_model=BatchResult)
async def append_batch(
    session_id: SessionId,
    body: BatchCreate,
    user: CurrentUser,
    db: DbDep,
    settings: SettingsDep,
    response: Response,
) -> dict[str, Any]:
    """Append many messages in one transaction: all or none, a result per item (G9)."""
    if len(body.messages) > settings.max_batch_items:
        raise Invalid(f"at most {settings.max_batch_items} messages a batch", field="messages")
    prepared = [new_message(str(item.id), item, settings) for item in body.messages]
    # Without a parent_id, each item continues from the one before it, as one conversation.

    def work(conn: Any) -> list[dict[str, Any]]:
        for msg, blobs in prepared:
            content.put_blobs(conn, user.user_pk, blobs)
            content.check_blob_refs(conn, user.user_pk, msg.content)
        return messages.append_batch(
            conn, user_pk=user.user_pk, session_id=str(session_id), msgs=[m for m, _ in prepared]
        )

    results = await db.write(work)
    created = sum(1 for r in results if r["status"] == 201)
    metrics.WRITES.labels(resource="message", outcome="created").inc(created)
    metrics.WRITES.labels(resource="message", outcome="replayed").inc(len(results) - created)
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return {"results": results}
