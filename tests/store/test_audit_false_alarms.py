"""``chatkeep audit`` without false alarms (G10; source report, "Monitoring", metric 1).

The duplicate check looks for what the source report meant: one intent stored twice, a message
saved again right after itself. Branches made on purpose are not duplicates: a regenerated reply
whose text equals its sibling's (the same prompt at temperature 0), several regenerations, and an
edit that keeps the text. Both cases, on both databases, through the API.
"""

from __future__ import annotations

import httpx

from chatkeep.store.audit import run_audit
from chatkeep.store.engine import Database
from support.factories import new_id
from support.stack import Stack


async def duplicates(db_url: str) -> list[dict[str, object]]:
    db = Database(db_url)
    try:
        found = {f.check: f.rows for f in await db.read(run_audit)}
    finally:
        await db.dispose()
    return found["duplicate_messages"]


async def put(api: httpx.AsyncClient, sid: str, body: dict[str, object]) -> str:
    mid = new_id()
    response = await api.put(f"/api/sessions/{sid}/messages/{mid}", json=body)
    assert response.status_code == 201, response.text
    return mid


async def turn(api: httpx.AsyncClient, sid: str, message_id: str, reply_id: str) -> str:
    body = {"message": {"id": message_id, "content": "same prompt"}, "reply_id": reply_id}
    async with api.stream("POST", f"/api/sessions/{sid}/turns", json=body) as response:
        assert response.status_code in (200, 201)
        async for _ in response.aiter_lines():
            pass
    messages = (await api.get(f"/api/sessions/{sid}/messages")).json()["messages"]
    (reply,) = [m for m in messages if m["id"] == reply_id]
    assert reply["status"] == "complete", reply
    return str(reply["content"])


async def test_regenerations_and_edits_are_not_duplicates(
    stack: Stack, api: httpx.AsyncClient
) -> None:
    sid = new_id()
    assert (await api.put(f"/api/sessions/{sid}", json={"model": "demo"})).status_code == 201
    # The same user message answered three times (regenerate = a new reply id): the demo model,
    # like any model at temperature 0, gives the same text each time.
    question = new_id()
    texts = [await turn(api, sid, question, new_id()) for _ in range(3)]
    assert texts[0] == texts[1] == texts[2]
    # Imported regenerations (PUT), equal text, within the same second.
    user = await put(api, sid, {"role": "user", "content": "again", "parent_id": question})
    for _ in range(2):
        await put(api, sid, {"role": "assistant", "content": "same answer", "parent_id": user})
    # An edit that keeps the text: a second user message beside the first.
    await put(api, sid, {"role": "user", "content": "again", "parent_id": question})
    assert await duplicates(stack.settings.resolved_database_url) == []


async def test_one_intent_stored_twice_is_found(stack: Stack, api: httpx.AsyncClient) -> None:
    """A client that mints a new id for a retry (the source report's fire-and-forget save)
    stores its message again after itself: that is the duplicate, for users and replies."""
    sid = new_id()
    assert (await api.put(f"/api/sessions/{sid}", json={})).status_code == 201
    first = await put(api, sid, {"role": "user", "content": "hello"})
    second = await put(api, sid, {"role": "user", "content": "hello"})  # at the active leaf
    reply = await put(api, sid, {"role": "assistant", "content": "hi!", "parent_id": second})
    again = await put(api, sid, {"role": "assistant", "content": "hi!", "parent_id": reply})
    found = await duplicates(stack.settings.resolved_database_url)
    pairs = {(row["first"], row["second"]) for row in found}
    assert pairs == {(first, second), (reply, again)}, found
