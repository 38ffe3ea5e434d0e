"""/api/sessions: create-or-replay, list, read, patch, delete."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response, status
from sqlalchemy import Connection

from chatkeep import metrics
from chatkeep.api.deps import CurrentUser, DbDep, SessionId
from chatkeep.api.encoding import json_response
from chatkeep.api.schemas import (
    SessionCreate,
    SessionDetail,
    SessionPublic,
    SessionsPage,
    SessionUpdate,
)
from chatkeep.store import messages, sessions

router = APIRouter(prefix="/api/sessions", tags=["sessions"])


@router.put("/{session_id}", response_model=SessionPublic, status_code=201)
async def put_session(
    session_id: SessionId, body: SessionCreate, user: CurrentUser, db: DbDep
) -> Response:
    """Create the session if absent (201), else return it (200). Same id, other fields: 409."""
    fields = body.model_dump(exclude_unset=True)

    def work(conn: Any) -> tuple[dict[str, Any], bool]:
        return sessions.create_session_once(
            conn, user_pk=user.user_pk, session_id=str(session_id), fields=fields
        )

    public, created = await db.write(work)
    metrics.WRITES.labels(resource="session", outcome="created" if created else "replayed").inc()
    return json_response(public, status.HTTP_201_CREATED if created else status.HTTP_200_OK)


@router.get("", response_model=SessionsPage)
async def list_sessions(
    user: CurrentUser,
    db: DbDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    q: Annotated[str | None, Query(max_length=200, pattern=r"^[^\x00]*$")] = None,
    archived: bool = False,
    pinned: bool | None = None,
) -> Response:
    """Newest first by ``updated_at``. Pass ``next_cursor`` back as ``cursor`` for the next page."""
    page = await db.read(
        sessions.list_sessions,
        user_pk=user.user_pk,
        limit=limit,
        cursor=cursor,
        q=q,
        archived=archived,
        pinned=pinned,
    )
    return json_response(page)


@router.get("/{session_id}", response_model=SessionDetail)
async def get_session(
    session_id: SessionId,
    user: CurrentUser,
    db: DbDep,
    limit: Annotated[
        int | None, Query(ge=1, le=10_000, description="Only the last N messages of the path.")
    ] = None,
    leaf_id: Annotated[
        UUID | None,
        Query(
            description="End the path here instead of at the active leaf (earlier pages: "
            "the parent_id of the first message you have)."
        ),
    ] = None,
) -> Response:
    """The session with the messages of its active path, root to leaf; ``has_more`` says
    whether ``limit`` left earlier ones out."""

    def load(conn: Connection) -> dict[str, Any]:
        row = sessions.live_session(conn, user.user_pk, str(session_id))
        path, more = messages.path_page(
            conn, row, leaf_id=str(leaf_id) if leaf_id else None, limit=limit
        )
        return {**sessions.session_public(row), "messages": path, "has_more": more}

    return json_response(await db.read(load))


@router.patch("/{session_id}", response_model=SessionPublic)
async def patch_session(
    session_id: SessionId, body: SessionUpdate, user: CurrentUser, db: DbDep
) -> dict[str, Any]:
    changes = body.model_dump(exclude_unset=True)
    for name in ("title", "pinned", "archived"):
        if name in changes and changes[name] is None:
            del changes[name]
    if "active_leaf_id" in changes and changes["active_leaf_id"] is not None:
        changes["active_leaf_id"] = str(changes["active_leaf_id"])

    def work(conn: Any) -> dict[str, Any]:
        return sessions.patch_session(
            conn, user_pk=user.user_pk, session_id=str(session_id), changes=changes
        )

    return await db.write(work)


@router.delete("/{session_id}", status_code=204, response_class=Response)
async def delete_session(
    session_id: SessionId, user: CurrentUser, db: DbDep, request: Request
) -> Response:
    """Delete wins (G5): the messages go, a tombstone stays, a running generation is stopped."""

    def work(conn: Any) -> int | None:
        return sessions.tombstone(conn, user_pk=user.user_pk, session_id=str(session_id))

    session_pk = await db.write(work)
    on_delete = getattr(request.app.state, "on_session_deleted", None)
    if session_pk is not None and on_delete is not None:
        await on_delete(session_pk)
    return Response(status_code=204)
