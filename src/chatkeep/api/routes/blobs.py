"""/api/blobs/{sha256}: uploaded images, served only to the user who sent them (G7)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from chatkeep.api.deps import CurrentUser, DbDep
from chatkeep.problems import NotFound
from chatkeep.store import content

router = APIRouter(prefix="/api/blobs", tags=["blobs"])


@router.get("/{sha256}", response_class=Response)
async def get_blob(
    sha256: Annotated[str, Path(pattern=r"^[0-9a-f]{64}$")], user: CurrentUser, db: DbDep
) -> Response:
    found = await db.read(content.get_blob, user.user_pk, sha256)
    if found is None:
        raise NotFound("no such image")
    media_type, data = found
    # Content-addressed: the bytes behind this URL never change.
    headers = {
        "Cache-Control": "private, max-age=31536000, immutable",
        "X-Content-Type-Options": "nosniff",
    }
    return Response(data, media_type=media_type, headers=headers)
