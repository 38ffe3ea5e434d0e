"""Appending messages over real HTTP: each stored exactly once (G1) under the client's own id,
numbered 1, 2, 3 ... without gaps, visible at once, and never lost by a refused write."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from support.factories import new_id


async def new_session(api: httpx.AsyncClient) -> str:
    sid = new_id()
    assert (await api.put(f"/api/sessions/{sid}", json={"title": "t"})).status_code == 201
    return sid


async def put(
    api: httpx.AsyncClient,
    sid: str,
    mid: str,
    content: Any = "hi",
    role: str = "user",
    **extra: Any,
) -> httpx.Response:
    body = {"role": role, "content": content, **extra}
    return await api.put(f"/api/sessions/{sid}/messages/{mid}", json=body)


async def synced(api: httpx.AsyncClient, sid: str) -> list[dict[str, Any]]:
    page = (await api.get(f"/api/sessions/{sid}/messages", params={"limit": 1000})).json()
    return list(page["messages"])


async def test_sequential_messages_share_one_session_with_seq_1_2_3(
    api: httpx.AsyncClient,
) -> None:
    """TC-1.3, TC-3.2: messages sent one after another land in the same session, in order,
    numbered 1, 2, 3, each the child of the one before."""
    sid = await new_session(api)
    turns = [("user", "Message 1"), ("assistant", "Reply 1"), ("user", "Message 2")]
    ids = [new_id() for _ in turns]
    stored = []
    for mid, (role, text) in zip(ids, turns, strict=True):
        stored.append((await put(api, sid, mid, text, role)).json())
    assert [m["seq"] for m in stored] == [1, 2, 3]
    assert [m["parent_id"] for m in stored] == [None, ids[0], ids[1]]
    session = (await api.get(f"/api/sessions/{sid}")).json()
    assert [(m["role"], m["content"]) for m in session["messages"]] == turns
    assert (session["last_seq"], session["active_leaf_id"]) == (3, ids[2])
    assert [s["id"] for s in (await api.get("/api/sessions")).json()["sessions"]] == [sid]


async def test_message_retried_after_timeout_is_stored_once(api: httpx.AsyncClient) -> None:
    """TC-2.3, TC-1.2: a save the client gave up on and sent again, several times at once, then
    again later, even after the next message, is one row: one 201, the rest 200 with the same
    body, and no retry moves it to the end of the chat."""
    sid, mid = await new_session(api), new_id()
    racing = await asyncio.gather(*(put(api, sid, mid, "only once") for _ in range(6)))
    late = await put(api, sid, mid, "only once")
    assert sorted(r.status_code for r in racing) == [200] * 5 + [201]
    assert late.status_code == 200
    assert {r.content for r in [*racing, late]} == {late.content}
    assert [m["id"] for m in await synced(api, sid)] == [mid]
    # The replays took no seq: the next message is number 2.
    second = new_id()
    assert (await put(api, sid, second, "next")).json()["seq"] == 2
    # A retry arriving after a later message is still message 1, and the chat does not move.
    later = await put(api, sid, mid, "only once")
    assert (later.status_code, later.content) == (200, late.content)
    session = (await api.get(f"/api/sessions/{sid}")).json()
    assert (session["last_seq"], session["active_leaf_id"]) == (2, second)


async def test_concurrent_distinct_messages_get_contiguous_seq(api: httpx.AsyncClient) -> None:
    """TC-3.2: ten different messages sent at once are all stored, numbered 1..10 exactly."""
    sid = await new_session(api)
    ids = [new_id() for _ in range(10)]
    responses = await asyncio.gather(*(put(api, sid, mid, f"m{i}") for i, mid in enumerate(ids)))
    assert [r.status_code for r in responses] == [201] * 10
    stored = await synced(api, sid)
    assert sorted(m["id"] for m in stored) == sorted(ids)
    assert [m["seq"] for m in stored] == list(range(1, 11))
    assert (await api.get(f"/api/sessions/{sid}")).json()["last_seq"] == 10


async def test_refused_write_loses_nothing(api: httpx.AsyncClient) -> None:
    """TC-2.3: a save the server refuses (409, 422) leaves the chat exactly as it was (a message
    id cannot be reused for other content nor moved to another chat), and the refused id can
    then be saved properly, taking the next seq with no gap."""
    sid, elsewhere = await new_session(api), await new_session(api)
    first, second, third = new_id(), new_id(), new_id()
    await put(api, sid, first, "kept 1")
    await put(api, sid, second, "kept 2", "assistant")
    before = (await api.get(f"/api/sessions/{sid}")).json()

    refused = {
        "same id, other content": await put(api, sid, second, "changed", "assistant"),
        "same id, other session": await put(api, elsewhere, second, "kept 2", "assistant"),
        "NUL in text": await put(api, sid, third, "bad\x00text"),
        "unknown role": await put(api, sid, third, "x", "tool"),
        "unknown field": await put(api, sid, third, "x", colour="red"),
        "parent not here": await put(api, sid, third, "x", parent_id=new_id()),
    }
    assert {k: r.status_code for k, r in refused.items()} == {
        "same id, other content": 409,
        "same id, other session": 409,
        "NUL in text": 422,
        "unknown role": 422,
        "unknown field": 422,
        "parent not here": 422,
    }
    for name in ("same id, other content", "same id, other session"):
        assert refused[name].json()["code"] == "idempotency_conflict"
    assert (await api.get(f"/api/sessions/{sid}")).json() == before
    assert (await api.get(f"/api/sessions/{elsewhere}")).json()["last_seq"] == 0

    saved = await put(api, sid, third, "now valid")
    assert (saved.status_code, saved.json()["seq"], saved.json()["parent_id"]) == (201, 3, second)


async def test_sync_by_after_seq_returns_each_message_once(api: httpx.AsyncClient) -> None:
    """TC-4.1: paging by after_seq while messages keep arriving yields every message exactly
    once, in seq order: nothing repeated at page edges, nothing skipped."""
    sid = await new_session(api)
    ids = [new_id() for _ in range(8)]
    for mid in ids[:5]:
        await put(api, sid, mid)
    seen: list[dict[str, Any]] = []
    after: int | None = 0
    while after is not None:
        page = (
            await api.get(f"/api/sessions/{sid}/messages", params={"after_seq": after, "limit": 2})
        ).json()
        seen += page["messages"]
        if len(seen) == 2:  # appended between two page fetches
            for mid in ids[5:]:
                await put(api, sid, mid)
        after = page["next_after_seq"]
    tail = await api.get(f"/api/sessions/{sid}/messages", params={"after_seq": seen[-1]["seq"]})
    assert tail.json()["messages"] == []
    assert tail.json()["last_seq"] == 8
    assert [m["id"] for m in seen] == ids
    assert [m["seq"] for m in seen] == list(range(1, 9))


async def test_replay_is_the_stored_body_under_the_clients_id(api: httpx.AsyncClient) -> None:
    """TC-4.2, TC-4.3: there are no temporary ids to reconcile: the server stores the id the
    client chose, and a replay answers with exactly the bytes of the first answer (the same
    UUID spelled in capitals included), so a client merges by id with nothing flickering."""
    sid, mid = await new_session(api), new_id()
    content = [{"type": "text", "text": 'ünïcödé ✓ and "quotes"\n'}]
    extra = {"usage": {"prompt_tokens": 3}, "model": "demo"}
    first = await put(api, sid, mid, content, **extra)
    replay = await put(api, sid, mid, content, **extra)
    shouted = await put(api, sid.upper(), mid.upper(), content, **extra)
    assert (first.status_code, replay.status_code, shouted.status_code) == (201, 200, 200)
    assert (first.json()["id"], first.json()["session_id"]) == (mid, sid)
    assert replay.content == first.content == shouted.content
    assert await synced(api, sid) == [first.json()]


async def test_user_message_is_visible_in_the_very_next_read(api: httpx.AsyncClient) -> None:
    """TC-5.3, TC-2.1: a user message is committed before its 201; no batching delays it."""
    sid, mid = await new_session(api), new_id()
    saved = await put(api, sid, mid, "right away")
    assert saved.status_code == 201
    session = (await api.get(f"/api/sessions/{sid}")).json()
    assert [m["id"] for m in session["messages"]] == [mid]
    assert [m["id"] for m in await synced(api, sid)] == [mid]


async def test_a_50_message_chat_loads_whole_in_one_request(api: httpx.AsyncClient) -> None:
    """Benchmark 3 counterpart ("loads 50 messages in under 500 ms"): one GET returns all 50 in
    order, with no follow-up requests. Its speed is measured by `make bench` (store_reads), not
    by a timed test."""
    sid = new_id()
    assert (await api.put(f"/api/sessions/{sid}", json={})).status_code == 201
    items = [
        {"id": new_id(), "role": "user" if i % 2 == 0 else "assistant", "content": f"m{i}"}
        for i in range(50)
    ]
    saved = await api.post(f"/api/sessions/{sid}/messages:batch", json={"messages": items})
    assert saved.status_code == 201, saved.text
    loaded = (await api.get(f"/api/sessions/{sid}")).json()
    assert [m["id"] for m in loaded["messages"]] == [i["id"] for i in items]
    assert loaded["has_more"] is False
    tail = (await api.get(f"/api/sessions/{sid}", params={"limit": 20})).json()
    assert [m["id"] for m in tail["messages"]] == [i["id"] for i in items[-20:]]
    assert tail["has_more"] is True
    earlier = await api.get(
        f"/api/sessions/{sid}", params={"limit": 40, "leaf_id": tail["messages"][0]["parent_id"]}
    )
    assert [m["id"] for m in earlier.json()["messages"]] == [i["id"] for i in items[:30]]


async def test_a_given_creation_time_is_kept_and_part_of_the_request(
    api: httpx.AsyncClient,
) -> None:
    """SPEC 6.2: an import keeps the source's dates. The time is part of the request (G1): the
    same instant again, in another offset, is a replay; another time for the id is a 409. A time
    without a zone, far in the future, or out of range is a 422 problem, never a 500 (G8)."""
    sid, mid = await new_session(api), new_id()
    first = await put(api, sid, mid, created_at="2023-11-14T22:13:20.125+00:00")
    same = await put(api, sid, mid, created_at="2023-11-15T00:13:20.125+02:00")
    other = await put(api, sid, mid, created_at="2023-11-14T22:13:21+00:00")
    without = await put(api, sid, mid)
    assert (first.status_code, same.status_code) == (201, 200)
    assert (other.status_code, without.status_code) == (409, 409)
    assert first.json()["created_at"].startswith("2023-11-14T22:13:20.125")
    assert same.content == first.content
    assert (await synced(api, sid))[0]["created_at"] == first.json()["created_at"]
    # The session moves on to the imported time at most, never back from its own "now".
    session = (await api.get(f"/api/sessions/{sid}")).json()
    assert session["updated_at"] > first.json()["created_at"]

    refused = {
        stamp: await put(api, sid, new_id(), created_at=stamp)
        for stamp in (
            "2023-11-14T22:13:20",  # naive
            "2999-01-01T00:00:00Z",  # far future
            "0001-01-01T00:00:00+05:00",  # before year 1 in UTC
            "1969-12-31T23:59:59Z",
            "yesterday",
        )
    }
    assert {s: r.status_code for s, r in refused.items()} == dict.fromkeys(refused, 422)
    for response in refused.values():
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["code"] == "validation_error"
    assert len(await synced(api, sid)) == 1


async def test_a_session_created_with_a_time_keeps_it(api: httpx.AsyncClient) -> None:
    """SPEC 6.2: an imported chat keeps its date, and its updated_at follows its imported
    messages (its original place in the sidebar), not the moment of the import."""
    sid = new_id()
    body = {"title": "old", "created_at": "2023-11-14T22:13:20Z"}
    created = await api.put(f"/api/sessions/{sid}", json=body)
    replay = await api.put(f"/api/sessions/{sid}", json=body)
    other = await api.put(f"/api/sessions/{sid}", json={**body, "created_at": "2024-01-01T00:00Z"})
    naive = await api.put(f"/api/sessions/{new_id()}", json={**body, "created_at": "2023-11-14"})
    assert (created.status_code, replay.status_code, other.status_code) == (201, 200, 409)
    assert naive.status_code == 422
    assert created.json()["created_at"] == created.json()["updated_at"]
    assert created.json()["created_at"].startswith("2023-11-14T22:13:20")
    later = await put(api, sid, new_id(), created_at="2023-11-14T23:00:00Z")
    assert later.status_code == 201
    session = (await api.get(f"/api/sessions/{sid}")).json()
    assert session["created_at"] == created.json()["created_at"]
    assert session["updated_at"] == later.json()["created_at"]
