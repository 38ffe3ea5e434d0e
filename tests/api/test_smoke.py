"""The server answers over real HTTP on both databases."""

from __future__ import annotations

import httpx

from support.factories import new_id


async def test_put_session_twice_is_created_then_replayed(api: httpx.AsyncClient) -> None:
    """TC-1.1: one session for the first message, and a retry does not make a second."""
    sid = new_id()
    first = await api.put(f"/api/sessions/{sid}", json={"title": "Hello"})
    again = await api.put(f"/api/sessions/{sid}", json={"title": "Hello"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json() == again.json()
    listed = (await api.get("/api/sessions")).json()["sessions"]
    assert [s["id"] for s in listed] == [sid]
