"""A turn (SPEC 4): send a user message and stream the reply; attach to a reply; cancel it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from sqlalchemy import Connection, Row
from sse_starlette import EventSourceResponse

from chatkeep import metrics
from chatkeep.api.deps import CurrentUser, DbDep, MessageId, SessionId, SettingsDep
from chatkeep.api.routes.messages import new_message
from chatkeep.api.schemas import MessageCreate, MessagePublic, ModelsList, TurnCreate
from chatkeep.problems import NotFound
from chatkeep.providers.registry import UnknownModel
from chatkeep.store.messages import find_message, message_public
from chatkeep.store.replies import in_flight
from chatkeep.store.sessions import live_session
from chatkeep.turns.manager import (
    TurnManager,
    derived_reply_id,
    event,
    final_event,
    parse_last_event_id,
)

router = APIRouter(prefix="/api", tags=["turns"])
STREAM_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"text/event-stream": {}},
        "description": "Events: message, start, delta (id <reply_id>:<offset>), done | error.",
    }
}
LastEventId = Annotated[str | None, Header(alias="Last-Event-ID")]


def manager(request: Request) -> TurnManager:
    turns: TurnManager = request.app.state.turns
    return turns


def sse(events: AsyncIterator[bytes]) -> EventSourceResponse:
    # A comment line every 15 s keeps proxies from closing an idle stream (SPEC 9).
    return EventSourceResponse(
        events, ping=15, headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )


def started_reply(reply: dict[str, Any]) -> dict[str, Any]:
    """The reply as it was when it started (SPEC 4: ``start`` carries status "streaming"),
    also when a replay or an attach finds it already finished; ``done``/``error`` follow."""
    return {**reply, "content": "", "status": "streaming", "error": None, "usage": None}


@router.post("/sessions/{session_id}/turns", responses=STREAM_DOC, response_model=None)
async def post_turn(
    session_id: SessionId,
    body: TurnCreate,
    request: Request,
    user: CurrentUser,
    settings: SettingsDep,
    last_event_id: LastEventId = None,
) -> EventSourceResponse:
    """Store the user message, then stream the reply. Errors known before the stream starts
    (404, 409 generation_in_progress, 409 idempotency_conflict, 422) are problem+json."""
    fields: dict[str, Any] = {"role": "user", "content": body.message.content}
    if "parent_id" in body.message.model_fields_set:
        fields["parent_id"] = body.message.parent_id
    msg, blobs = new_message(str(body.message.id), MessageCreate(**fields), settings)
    reply_id = str(body.reply_id) if body.reply_id else derived_reply_id(msg.id)
    session_fields = (
        body.session.model_dump(exclude_unset=True) if body.session is not None else None
    )
    started = await manager(request).start_turn(
        user_pk=user.user_pk,
        session_id=str(session_id),
        user_msg=msg,
        reply_id=reply_id,
        model=body.model,
        session_fields=session_fields,
        blobs=blobs,
    )
    turn = started.turn
    metrics.WRITES.labels(resource="turn", outcome="created" if turn.created else "replayed").inc()
    offset = parse_last_event_id(last_event_id, reply_id)

    async def events() -> AsyncIterator[bytes]:
        if offset is None:
            yield event("message", turn.user_message)
            yield event("start", started_reply(turn.reply))
        async for item in manager(request).follow(
            reply_pk=turn.reply_pk,
            reply_id=reply_id,
            session_id=str(session_id),
            offset=offset or 0,
        ):
            yield item

    return sse(events())


@router.get(
    "/sessions/{session_id}/messages/{message_id}/stream",
    responses=STREAM_DOC,
    response_model=None,
)
async def attach(
    session_id: SessionId,
    message_id: MessageId,
    request: Request,
    user: CurrentUser,
    db: DbDep,
    last_event_id: LastEventId = None,
    offset: Annotated[
        int | None,
        Query(
            ge=0,
            description="Resume after this many characters"
            " (for clients that cannot set Last-Event-ID).",
        ),
    ] = None,
) -> EventSourceResponse:
    """Attach to a reply: live while it streams, or its stored text once finished (G6)."""

    def load(conn: Connection) -> tuple[Row[Any], Row[Any] | None]:
        session = live_session(conn, user.user_pk, str(session_id))
        return session, find_message(conn, user.user_pk, str(message_id))

    session, row = await db.read(load)
    if row is None or row.session_pk != session.pk:
        raise NotFound(f"no message {message_id} in this session")
    reply = message_public(row, str(session_id))
    resume = parse_last_event_id(last_event_id, str(message_id))
    start = resume if resume is not None else (offset or 0)

    async def events() -> AsyncIterator[bytes]:
        if resume is None and offset is None:
            yield event("start", started_reply(reply))
        if not in_flight(row):
            text = reply["content"] if isinstance(reply["content"], str) else ""
            if len(text) > start:
                yield event("delta", {"text": text[start:]}, f"{message_id}:{len(text)}")
            yield final_event(reply)
            return
        async for item in manager(request).follow(
            reply_pk=row.pk, reply_id=str(message_id), session_id=str(session_id), offset=start
        ):
            yield item

    return sse(events())


@router.post("/sessions/{session_id}/messages/{message_id}/cancel", response_model=MessagePublic)
async def cancel(
    session_id: SessionId, message_id: MessageId, request: Request, user: CurrentUser
) -> dict[str, Any]:
    """Stop a generation and keep the text it has. A finished reply is returned as it is."""
    return await manager(request).cancel(
        user_pk=user.user_pk, session_id=str(session_id), reply_id=str(message_id)
    )


@router.get("/models", response_model=ModelsList)
async def list_models(request: Request, user: CurrentUser) -> dict[str, Any]:
    providers = manager(request).providers
    models = await providers.list_models()
    try:
        default: str | None = providers.resolve(None)[1]
    except UnknownModel:
        default = None
    return {
        "models": [
            {"id": m.id, "provider": m.provider, "name": m.name, "is_demo": m.is_demo}
            for m in models
        ],
        "default": default,
    }
