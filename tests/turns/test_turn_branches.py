"""Branches (G3): a regeneration is a sibling reply, an edit is a new user message under an
earlier one; the model only ever sees the branch's own path, and the active leaf says which
branch a chat shows."""

from __future__ import annotations

from typing import Any

import httpx
from turnkit import (
    all_messages,
    get_session,
    open_turn,
    prompt_of,
    reply_id_of,
    send_turn,
    turn_body,
)

from support.factories import new_id
from support.fake_upstream import FakeUpstream
from support.sse import names


async def path_of(api: httpx.AsyncClient, sid: str) -> list[dict[str, Any]]:
    return list((await get_session(api, sid))["messages"])


async def switch_to(api: httpx.AsyncClient, sid: str, leaf: str) -> None:
    response = await api.patch(f"/api/sessions/{sid}", json={"active_leaf_id": leaf})
    assert response.status_code == 200, response.text
    assert response.json()["active_leaf_id"] == leaf


async def test_regenerate_makes_a_sibling_reply_and_moves_the_active_leaf(
    api: httpx.AsyncClient, fake: FakeUpstream
) -> None:
    """Regenerate = the same user message with a new reply_id: a second reply under the same
    message, shown at once; the model sees the user message without the first reply; the
    first reply stays one PATCH away."""
    fake.set(reply="Joke one")
    sid, first = new_id(), turn_body("Tell me a joke", session={})
    original = await send_turn(api, sid, first)
    user, reply_one = original[0].json, original[-1].json

    fake.set(reply="Joke two")
    again = turn_body("Tell me a joke", mid=user["id"], reply_id=new_id())
    events = await send_turn(api, sid, again)

    assert names(events)[-1] == "done"
    assert events[0].json == user  # the same stored message, not a second one
    reply_two = events[-1].json
    assert (reply_two["id"], reply_two["parent_id"], reply_two["content"], reply_two["seq"]) == (
        reply_id_of(again),
        user["id"],
        "Joke two",
        3,
    )
    assert fake.requests[-1]["messages"] == prompt_of([user])
    session = await get_session(api, sid)
    assert session["active_leaf_id"] == reply_two["id"]
    assert session["messages"] == [user, reply_two]
    assert await all_messages(api, sid) == [user, reply_one, reply_two]

    await switch_to(api, sid, reply_one["id"])
    assert await path_of(api, sid) == [user, reply_one]


async def test_edit_starts_a_branch_and_the_prompt_holds_only_that_branch(
    api: httpx.AsyncClient, fake: FakeUpstream
) -> None:
    """Edit = a new user message whose parent is an earlier message: the model is asked with
    that branch's path only (the replaced question and its answer are left out); switching the
    active leaf back shows, and continues, the other branch."""
    sid = new_id()
    opening = await send_turn(api, sid, turn_body("I am Ana.", session={}))
    u1, r1 = opening[0].json, opening[-1].json
    original = await send_turn(api, sid, turn_body("What is my name?"))
    u2, r2 = original[0].json, original[-1].json

    edit = turn_body("Call me Bea. What is my name?", parent_id=r1["id"])
    events = await send_turn(api, sid, edit)

    u2b, r2b = events[0].json, events[-1].json
    assert (u2b["parent_id"], r2b["parent_id"]) == (r1["id"], u2b["id"])
    assert fake.requests[-1]["messages"] == prompt_of([u1, r1, u2b])
    assert await path_of(api, sid) == [u1, r1, u2b, r2b]

    await switch_to(api, sid, r2["id"])
    assert await path_of(api, sid) == [u1, r1, u2, r2]

    follow_up = await send_turn(api, sid, turn_body("And my age?"))
    u3 = follow_up[0].json
    assert u3["parent_id"] == r2["id"]
    assert fake.requests[-1]["messages"] == prompt_of([u1, r1, u2, r2, u3])


async def test_editing_the_first_message_starts_a_new_root(
    api: httpx.AsyncClient, fake: FakeUpstream
) -> None:
    """``parent_id: null`` is an edit of the first message: a root of its own, asked alone."""
    sid = new_id()
    await send_turn(api, sid, turn_body("first try", session={}))
    await send_turn(api, sid, turn_body("more"))

    events = await send_turn(api, sid, turn_body("second try", parent_id=None))

    root = events[0].json
    assert root["parent_id"] is None
    assert fake.requests[-1]["messages"] == [{"role": "user", "content": "second try"}]
    assert [m["content"] for m in await path_of(api, sid)] == ["second try", "Echo: second try"]
    assert len(await all_messages(api, sid)) == 6


async def test_a_parent_from_elsewhere_is_refused_before_any_stream(
    api: httpx.AsyncClient, fake: FakeUpstream
) -> None:
    """G3, G8: a parent_id that is not a message of this chat (unknown, or another chat's) is
    422 invalid_parent as problem+json; nothing is stored and the model is not asked."""
    other = new_id()
    foreign = (await send_turn(api, other, turn_body("elsewhere", session={})))[0].json["id"]
    sid = new_id()
    await send_turn(api, sid, turn_body("here", session={}))
    before = await all_messages(api, sid)

    for parent in (foreign, new_id()):
        async with open_turn(api, sid, turn_body("misplaced", parent_id=parent)) as stream:
            assert stream.status_code == 422
            assert (await stream.problem())["code"] == "invalid_parent"

    assert await all_messages(api, sid) == before
    assert fake.stats().chat_requests == 2
