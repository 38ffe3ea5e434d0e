"""Small factories: ids, users with API keys, clients."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

import uuid_utils

from chatkeep.store import migrate, users
from chatkeep.store.engine import Database


def new_id() -> str:
    """A client-chosen id, UUIDv7 as SPEC 1 prefers."""
    return str(uuid_utils.uuid7())


def uuid4() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True)
class Account:
    name: str
    password: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


async def make_accounts(db_url: str, *names: str) -> dict[str, Account]:
    """Migrate the database and create each named account with one API key."""
    db = Database(db_url)
    try:
        await migrate.upgrade(db)
        made: dict[str, Account] = {}
        for name in names:
            password = f"{name}-password"

            def work(conn: object, name: str = name, password: str = password) -> str:
                users.create_user(conn, name=name, password=password)  # type: ignore[arg-type]
                key = users.create_api_key(conn, user_name=name, name="test")  # type: ignore[arg-type]
                return str(key["key"])

            made[name] = Account(name, password, await db.write(work))
        return made
    finally:
        await db.dispose()


def make_accounts_sync(db_url: str, *names: str) -> dict[str, Account]:
    return asyncio.run(make_accounts(db_url, *names))
