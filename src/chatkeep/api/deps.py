"""Typed dependency aliases, so that each route reads in a few lines."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import Depends, Path, Request

from chatkeep.api.auth import current_user
from chatkeep.settings import Settings
from chatkeep.store.engine import Database
from chatkeep.store.users import Principal


def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


DbDep = Annotated[Database, Depends(get_db)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
CurrentUser = Annotated[Principal, Depends(current_user)]
# Ids are client-chosen UUIDs; stored in canonical lower-case form.
SessionId = Annotated[UUID, Path(description="The session's UUID, chosen by the client.")]
MessageId = Annotated[UUID, Path(description="The message's UUID, chosen by the client.")]
