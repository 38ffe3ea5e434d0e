"""Sessions over real HTTP: created once (G1), deleted for good (G5), private (G7), and a sidebar
that pages without losing or repeating a chat."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import datetime

import httpx
from sqlalchemy import text

from chatkeep.store.engine import Database
from support.factories import new_id
from support.stack import Stack


async def put_session(api: httpx.AsyncClient, sid: str, **fields: object) -> httpx.Response:
    return await api.put(f"/api/sessions/{sid}", json=fields)


async def put_message(api: httpx.AsyncClient, sid: str, content: str) -> httpx.Response:
    body = {"role": "user", "content": content}
    return await api.put(f"/api/sessions/{sid}/messages/{new_id()}", json=body)


async def db_scalar(db_url: str, sql: str, **params: object) -> object:
    """Ask the database itself, not the API, what is stored."""
    db = Database(db_url)
    try:
        return await db.read(lambda conn: conn.scalar(text(sql), params))
    finally:
        await db.dispose()


async def listed(api: httpx.AsyncClient, **params: object) -> list[dict[str, object]]:
    response = await api.get("/api/sessions", params=params)
    assert response.status_code == 200, response.text
    return list(response.json()["sessions"])


async def test_new_chat_is_empty_then_holds_its_first_message(api: httpx.AsyncClient) -> None:
    """TC-7.1, TC-1.1: a new chat reads as no messages and last_seq 0; its first message gets
    seq 1, and there is still exactly one session."""
    sid = new_id()
    assert (await put_session(api, sid, title="Hello")).status_code == 201
    empty = (await api.get(f"/api/sessions/{sid}")).json()
    assert (empty["messages"], empty["last_seq"], empty["active_leaf_id"]) == ([], 0, None)
    synced = (await api.get(f"/api/sessions/{sid}/messages")).json()
    assert (synced["messages"], synced["last_seq"], synced["next_after_seq"]) == ([], 0, None)

    first = await put_message(api, sid, "Hello")
    assert (first.status_code, first.json()["seq"]) == (201, 1)
    session = (await api.get(f"/api/sessions/{sid}")).json()
    assert [m["content"] for m in session["messages"]] == ["Hello"]
    assert [(s["id"], s["last_seq"]) for s in await listed(api)] == [(sid, 1)]


async def test_double_put_creates_one_session(api: httpx.AsyncClient, db_url: str) -> None:
    """TC-1.2: a rapid double (here: twelvefold) send of one new chat makes one row, answered
    once with 201 and otherwise with 200 and the very same body, on every database."""
    sid = new_id()
    # Open the connections first, so that the twelve PUTs really reach the server together.
    await asyncio.gather(*(api.get("/api/sessions") for _ in range(12)))
    responses = await asyncio.gather(*(put_session(api, sid, title="Race") for _ in range(12)))
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] * 11 + [201], [r.text for r in responses]
    assert len({r.content for r in responses}) == 1
    assert [s["id"] for s in await listed(api)] == [sid]
    assert await db_scalar(db_url, "SELECT count(*) FROM sessions WHERE id = :id", id=sid) == 1


async def test_session_id_is_an_idempotency_key(api: httpx.AsyncClient) -> None:
    """G1, TC-2.3: the create retried late, after a rename, is a replay (200) that undoes
    nothing; the same id with other fields is refused (409), not merged."""
    sid = new_id()
    await put_session(api, sid, title="Draft")
    await api.patch(f"/api/sessions/{sid}", json={"title": "Renamed"})
    retry = await put_session(api, sid, title="Draft")
    assert (retry.status_code, retry.json()["title"]) == (200, "Renamed")

    other = await put_session(api, sid, title="Something else")
    assert other.status_code == 409
    assert other.headers["content-type"].startswith("application/problem+json")
    assert other.json()["code"] == "idempotency_conflict"
    assert (await api.get(f"/api/sessions/{sid}")).json()["title"] == "Renamed"


async def test_deleted_session_stays_deleted(api: httpx.AsyncClient, db_url: str) -> None:
    """G5: after DELETE every read and write of the session answers 410, a late retry of
    its creation cannot bring it back, a second DELETE is 204, and its messages are gone."""
    sid = new_id()
    await put_session(api, sid, title="Doomed")
    for text_ in ("one", "two"):
        await put_message(api, sid, text_)
    assert (await api.delete(f"/api/sessions/{sid}")).status_code == 204

    message = {"role": "user", "content": "late"}
    after = [
        await api.get(f"/api/sessions/{sid}"),
        await api.get(f"/api/sessions/{sid}/messages"),
        await put_session(api, sid, title="Doomed"),
        await api.put(f"/api/sessions/{sid}/messages/{new_id()}", json=message),
        await api.patch(f"/api/sessions/{sid}", json={"title": "Back?"}),
    ]
    assert [(r.status_code, r.json()["code"]) for r in after] == [(410, "gone")] * len(after)
    assert (await api.delete(f"/api/sessions/{sid}")).status_code == 204
    assert await listed(api) == []

    left = await db_scalar(
        db_url,
        "SELECT count(*) FROM messages m JOIN sessions s ON s.pk = m.session_pk WHERE s.id = :id",
        id=sid,
    )
    assert left == 0
    # The tombstone keeps only the id: no title or other content of the deleted chat survives.
    assert await db_scalar(db_url, "SELECT title FROM sessions WHERE id = :id", id=sid) == ""


async def test_other_users_session_answers_404(stack: Stack, api: httpx.AsyncClient) -> None:
    """G7: bob cannot read, change, delete or append to alice's chat: 404, as for an id that
    does not exist; and her ids collide with nothing of his."""
    sid, mid, hello = new_id(), new_id(), {"role": "user", "content": "hello"}
    await put_session(api, sid, title="alice's")
    await api.put(f"/api/sessions/{sid}/messages/{mid}", json=hello)
    async with stack.client(stack.bob) as bob:
        tries = [
            await bob.get(f"/api/sessions/{sid}"),
            await bob.get(f"/api/sessions/{sid}/messages"),
            await bob.patch(f"/api/sessions/{sid}", json={"title": "mine"}),
            await bob.delete(f"/api/sessions/{sid}"),
            await bob.put(
                f"/api/sessions/{sid}/messages/{new_id()}", json={"role": "user", "content": "x"}
            ),
        ]
        assert [r.status_code for r in tries] == [404] * len(tries)
        # Ids are unique per user: alice's session and message ids are free for bob to use.
        assert (await put_session(bob, sid, title="bob's")).status_code == 201
        reused = await bob.put(f"/api/sessions/{sid}/messages/{mid}", json=hello)
        assert reused.status_code == 201
    assert (await api.get(f"/api/sessions/{sid}")).json()["title"] == "alice's"
    assert (await api.get(f"/api/sessions/{sid}/messages")).json()["last_seq"] == 1


async def test_sidebar_pages_newest_first_without_gaps_or_repeats(api: httpx.AsyncClient) -> None:
    """TC-4.1 for the sidebar: 25 chats in pages of 10 are 3 pages, each chat exactly once,
    strictly newest first by updated_at; a chat that gets a message moves to the top."""
    made = [(await put_session(api, new_id(), title=f"chat {i}")).json() for i in range(25)]
    pages, cursor = [], None
    while True:
        params = {"limit": 10, **({"cursor": cursor} if cursor else {})}
        page = (await api.get("/api/sessions", params=params)).json()
        pages.append(page["sessions"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [len(p) for p in pages] == [10, 10, 5]
    seen = [s["id"] for p in pages for s in p]
    assert seen == [s["id"] for s in reversed(made)]
    stamps = [datetime.fromisoformat(s["updated_at"]) for p in pages for s in p]
    assert all(a > b for a, b in zip(stamps, stamps[1:], strict=False))

    oldest = made[0]["id"]
    await put_message(api, oldest, "bump")
    assert (await listed(api, limit=1))[0]["id"] == oldest


async def test_sidebar_search_and_filters(api: httpx.AsyncClient) -> None:
    """q matches titles case-insensitively with % and _ taken literally; archived chats are
    listed only with archived=true; pinned=true/false filters on the pin."""
    titles = ["Hello World", "100% done", "1000 done", "snake_case", "snakeXcase"]
    for title in titles:
        await put_session(api, new_id(), title=title)
    pinned, archived = new_id(), new_id()
    await put_session(api, pinned, title="pinned", pinned=True)
    await put_session(api, archived, title="archived")
    await api.patch(f"/api/sessions/{archived}", json={"archived": True})

    async def found(**params: object) -> set[object]:
        return {s["title"] for s in await listed(api, **params)}

    assert await found(q="hello WORLD") == {"Hello World"}
    assert await found(q="0%") == {"100% done"}
    assert await found(q="e_c") == {"snake_case"}
    assert await found(q="nothing like it") == set()
    assert await found() == {*titles, "pinned"}
    assert await found(archived="true") == {"archived"}
    assert await found(pinned="true") == {"pinned"}
    assert await found(pinned="false") == set(titles)


async def test_search_ignores_case_beyond_ascii(api: httpx.AsyncClient) -> None:
    """Case-insensitive search holds for every language, not only for A-Z: "über" finds
    "Über Café", on SQLite and whatever the PostgreSQL locale."""
    sid = new_id()
    await put_session(api, sid, title="Über Café")
    for q in ("über", "CAFÉ", "ÜBER café"):
        assert [s["id"] for s in await listed(api, q=q)] == [sid], q


def _cursor(payload: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


async def test_garbage_cursor_is_a_422(api: httpx.AsyncClient) -> None:
    """G8: a cursor this server never gave out is a clear 422, never a 500 or 503."""
    garbage = {
        "not base64": "garbage!",
        "not a pair": _cursor("not a pair"),
        "null stamp": _cursor([None, 1]),
        "bad stamp": _cursor(["yesterday", 1]),
        "stamp before year 1 in UTC": _cursor(["0001-01-01T00:00:00+14:00", 1]),
        "bad pk": _cursor(["2025-01-01T00:00:00+00:00", "x"]),
        "pk past BIGINT": _cursor(["2025-01-01T00:00:00+00:00", 2**70]),
    }
    answers = {}
    for name, cursor in garbage.items():
        # A fresh connection each: after a 500 the server drops the connection it answered on.
        response = await api.get(
            "/api/sessions", params={"cursor": cursor}, headers={"Connection": "close"}
        )
        answers[name] = (response.status_code, response.json()["code"])
    assert answers == dict.fromkeys(garbage, (422, "validation_error"))


async def test_patch_changes_fields_and_refuses_unknown_ones(api: httpx.AsyncClient) -> None:
    """PATCH sets title, model, pinned and archived; a misspelt field (extra=forbid) is a 422
    that changes nothing, on PATCH as on PUT."""
    sid, typo = new_id(), {"titel": "typo"}
    refused_put = await api.put(f"/api/sessions/{sid}", json=typo)
    assert (await api.get(f"/api/sessions/{sid}")).status_code == 404
    await put_session(api, sid, title="Before", model="demo")
    refused_patch = await api.patch(f"/api/sessions/{sid}", json=typo)
    for response in (refused_put, refused_patch):
        assert (response.status_code, response.json()["code"]) == (422, "validation_error")
    assert (await api.get(f"/api/sessions/{sid}")).json()["title"] == "Before"

    changes = {"title": "After", "model": "other", "pinned": True, "archived": True}
    patched = await api.patch(f"/api/sessions/{sid}", json=changes)
    assert patched.status_code == 200, patched.text
    stored = (await api.get(f"/api/sessions/{sid}")).json()
    for body in (patched.json(), stored):
        assert {k: body[k] for k in changes} == changes
