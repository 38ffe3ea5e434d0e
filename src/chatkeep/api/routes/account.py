"""/api/account: what a user may do with their own account: take all their data with them."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse

from chatkeep.api.deps import CurrentUser, DbDep
from chatkeep.store.export import export_user

router = APIRouter(prefix="/api/account", tags=["account"])


@router.get("/export", response_class=JSONResponse)
async def export(user: CurrentUser, db: DbDep) -> JSONResponse:
    """Every chat (all branches), image and key name of the caller, as one JSON archive."""
    archive = await db.read(export_user, user.user_pk)
    headers = {"Content-Disposition": f'attachment; filename="chatkeep-{user.name}.json"'}
    return JSONResponse(jsonable_encoder(archive), headers=headers)
