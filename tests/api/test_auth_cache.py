"""The short credential cache (issue 6) keeps its documented bound: a key revoked in another
process (``chatkeep keys revoke``, another worker) stops working here within
``auth_cache_ttl_s``; one revoked through this process stops at once (test_accounts.py)."""

from __future__ import annotations

import asyncio
import time

from chatkeep.store import users
from chatkeep.store.engine import Database
from support.stack import Stack


async def test_a_key_revoked_elsewhere_stops_working_within_the_ttl(stack: Stack, api) -> None:
    assert (await api.get("/api/sessions")).status_code == 200  # now cached
    prefix = stack.alice.key[:10]
    db = Database(stack.settings.resolved_database_url)  # as another process would
    try:
        revoked = await db.write(users.revoke_api_key, user_name="alice", prefix=prefix)
    finally:
        await db.dispose()
    assert revoked == 1
    ttl = stack.settings.auth_cache_ttl_s
    revoked_at = time.monotonic()
    # Generous margin for a loaded machine; the bound itself is the TTL.
    deadline = revoked_at + ttl + 10
    while (status := (await api.get("/api/sessions")).status_code) == 200:
        assert time.monotonic() < deadline, "a revoked key still works past the cache's TTL"
        await asyncio.sleep(0.05)
    assert status == 401
    assert (await api.get("/api/sessions")).status_code == 401
