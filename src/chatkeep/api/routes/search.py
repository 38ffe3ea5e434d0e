"""/api/search: the caller's messages and chat titles, best match first (docs/search.md)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from chatkeep.api.deps import CurrentUser, DbDep
from chatkeep.api.schemas import SearchPage
from chatkeep.store import search as store_search

router = APIRouter(prefix="/api/search", tags=["search"])


@router.get("", response_model=SearchPage)
async def search(
    user: CurrentUser,
    db: DbDep,
    q: Annotated[str, Query(max_length=500, description='Words, "phrases", -exclusions, OR.')] = "",
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=300)] = None,
) -> dict[str, Any]:
    """One hit per matching message, and one per chat whose title matches; an empty query, or
    one of operators only, is 422 ``invalid_query``. Pass ``next_cursor`` back as ``cursor``."""
    return await db.read(store_search.search, user_pk=user.user_pk, q=q, limit=limit, cursor=cursor)
