"""Batch appends over real HTTP (G9): one transaction, all of it or none of it, a result per
item, and a replayed batch stores nothing twice."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from support.factories import new_id


async def new_session(api: httpx.AsyncClient) -> str:
    sid = new_id()
    assert (await api.put(f"/api/sessions/{sid}", json={})).status_code == 201
    return sid


def item(text: str, role: str = "assistant", **extra: Any) -> dict[str, Any]:
    return {"id": new_id(), "role": role, "content": text, **extra}


async def batch(api: httpx.AsyncClient, sid: str, items: list[dict[str, Any]]) -> httpx.Response:
    return await api.post(f"/api/sessions/{sid}/messages:batch", json={"messages": items})


async def stored(api: httpx.AsyncClient, sid: str) -> tuple[int, list[str]]:
    """``(last_seq, ids in seq order)`` as a syncing client sees them."""
    page = (await api.get(f"/api/sessions/{sid}/messages", params={"limit": 1000})).json()
    return page["last_seq"], [m["id"] for m in page["messages"]]


async def test_batch_of_three_is_saved_in_one_request(api: httpx.AsyncClient) -> None:
    """TC-5.1: three replies in one batch: each 201, contiguous seq after what was there,
    chained parent to child; the same batch again, three times at once, is all 200 and adds
    no row."""
    sid, first = await new_session(api), new_id()
    await api.put(f"/api/sessions/{sid}/messages/{first}", json={"role": "user", "content": "Q"})
    items = [item(f"Response {n}") for n in (1, 2, 3)]

    saved = await batch(api, sid, items)
    assert saved.status_code == 201, saved.text
    results = saved.json()["results"]
    assert [(r["id"], r["status"]) for r in results] == [(i["id"], 201) for i in items]
    assert [r["message"]["seq"] for r in results] == [2, 3, 4]
    parents = [r["message"]["parent_id"] for r in results]
    assert parents == [first, items[0]["id"], items[1]["id"]]

    replays = await asyncio.gather(*(batch(api, sid, items) for _ in range(3)))
    for replay in replays:
        assert replay.status_code == 200
        assert [r["status"] for r in replay.json()["results"]] == [200, 200, 200]
        assert [r["message"] for r in replay.json()["results"]] == [r["message"] for r in results]
    assert await stored(api, sid) == (4, [first, *(i["id"] for i in items)])


async def test_batch_with_one_bad_item_saves_nothing(api: httpx.AsyncClient) -> None:
    """TC-5.2: one item that conflicts (its id already holds other content) or names a parent
    outside the session fails the whole batch: 409 batch_failed, a result per item naming the
    culprit and claiming no success for the others, and nothing of the batch stored. Fixed,
    the same ids then save normally."""
    sid, taken = await new_session(api), new_id()
    await api.put(f"/api/sessions/{sid}/messages/{taken}", json={"role": "user", "content": "A"})
    culprits = {
        "idempotency_conflict": {"id": taken, "role": "user", "content": "not A"},
        "invalid_parent": item("orphan", parent_id=new_id()),
    }
    for code, bad in culprits.items():
        items = [item("before"), bad, item("after")]
        refused = await batch(api, sid, items)
        assert refused.status_code == 409, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        problem = refused.json()
        assert problem["code"] == "batch_failed"
        assert [r["id"] for r in problem["results"]] == [i["id"] for i in items]
        failing = [r for r in problem["results"] if r.get("code") == code]
        assert [r["id"] for r in failing] == [bad["id"]]
        assert all(r["status"] >= 400 for r in problem["results"]), problem["results"]
        assert await stored(api, sid) == (1, [taken])

    fixed = [items[0], item("instead"), items[2]]
    saved = await batch(api, sid, fixed)
    assert [r["message"]["seq"] for r in saved.json()["results"]] == [2, 3, 4]


async def test_batch_resent_with_more_items_saves_only_the_new_ones(
    api: httpx.AsyncClient,
) -> None:
    """TC-5.2, TC-6.2: a batch retried after a network hiccup, grown meanwhile, replays what was
    saved (200) and appends the rest after it (201): nothing lost, nothing doubled."""
    sid, older = await new_session(api), [item("one"), item("two")]
    await batch(api, sid, older)
    newer = item("three")
    again = await batch(api, sid, [*older, newer])
    assert again.status_code == 201
    results = again.json()["results"]
    assert [r["status"] for r in results] == [200, 200, 201]
    assert (results[2]["message"]["seq"], results[2]["message"]["parent_id"]) == (3, older[1]["id"])
    assert await stored(api, sid) == (3, [*(i["id"] for i in older), newer["id"]])


async def test_batch_refused_before_any_write(api: httpx.AsyncClient) -> None:
    """G8: invalid content anywhere in a batch, an empty batch, or a session that is missing or
    deleted, are refused with a clear problem and write nothing."""
    sid = await new_session(api)
    bad_content = await batch(api, sid, [item("fine"), item("nul\x00")])
    empty = await batch(api, sid, [])
    assert (bad_content.status_code, bad_content.json()["code"]) == (422, "invalid_content")
    assert (empty.status_code, empty.json()["code"]) == (422, "validation_error")
    assert await stored(api, sid) == (0, [])

    missing = await batch(api, new_id(), [item("x")])
    await api.delete(f"/api/sessions/{sid}")
    deleted = await batch(api, sid, [item("x")])
    assert (missing.status_code, deleted.status_code) == (404, 410)


async def test_batch_items_keep_their_given_creation_times(api: httpx.AsyncClient) -> None:
    """SPEC 6.2 (an import in batches): each item keeps its time; the same batch again is a
    replay (200), the same id with another time a 409 that saves nothing, a naive time a 422."""
    sid = await new_session(api)
    items = [
        item("old question", "user", created_at="2023-11-14T22:13:20.5Z"),
        item("old answer", created_at="2023-11-14T22:13:25Z"),
        item("no time given"),
    ]
    first = await batch(api, sid, items)
    assert first.status_code == 201
    times = [r["message"]["created_at"] for r in first.json()["results"]]
    assert times[0].startswith("2023-11-14T22:13:20.5")
    assert times[1].startswith("2023-11-14T22:13:25") and times[2] > times[1]
    again = await batch(api, sid, items)
    assert again.status_code == 200
    assert [r["message"] for r in again.json()["results"]] == [
        r["message"] for r in first.json()["results"]
    ]
    moved = [items[0], {**items[1], "created_at": "2023-11-14T22:13:26Z"}]
    conflict = await batch(api, sid, moved)
    assert conflict.status_code == 409
    assert [r["status"] for r in conflict.json()["results"]] == [424, 409]
    naive = await batch(api, sid, [item("x", created_at="2023-11-14T22:13:20")])
    assert naive.status_code == 422
    assert await stored(api, sid) == (3, [i["id"] for i in items])
