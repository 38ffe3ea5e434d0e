"""What a turn stores, and when (G2, G3): the user message is committed before the model is
asked, the reply is a row from the start and its text is checkpointed while it streams, the
prompt is the stored path, and quick turns in a row lose nothing."""

from __future__ import annotations

from typing import Any

import httpx
from turnkit import (
    eventually,
    get_session,
    open_turn,
    prompt_of,
    reply_id_of,
    send_turn,
    stored,
    turn_body,
    wait_upstream_open,
)

from support.factories import new_id
from support.fake_upstream import FakeUpstream
from support.sse import delta_text, names


async def cancel(api: httpx.AsyncClient, sid: str, rid: str) -> None:
    response = await api.post(f"/api/sessions/{sid}/messages/{rid}/cancel")
    assert response.status_code == 200, response.text


async def test_user_message_is_committed_before_the_model_is_called(
    api: httpx.AsyncClient, other_api: httpx.AsyncClient, fake: FakeUpstream
) -> None:
    """TC-2.1, G2: while the model holds its first token, another client already reads the
    user message (complete) and the reply's row (streaming, empty); the model got exactly
    the stored path as its prompt (G3)."""
    fake.set(hang=True)
    sid, body = new_id(), turn_body("Remember: the code word is heron.", session={})
    rid = reply_id_of(body)

    async with open_turn(api, sid, body) as stream:
        await wait_upstream_open(fake)  # the model is called and answers nothing yet
        user, reply = (await get_session(other_api, sid))["messages"]
        assert (user["id"], user["role"], user["status"]) == (
            body["message"]["id"],
            "user",
            "complete",
        )
        assert user["content"] == "Remember: the code word is heron."
        assert (reply["id"], reply["status"], reply["content"]) == (rid, "streaming", "")
        assert fake.requests[0]["messages"] == prompt_of([user])
        await cancel(other_api, sid, rid)
        await stream.rest()

    # The user's message outlives the reply that never came.
    assert (await stored(api, sid, body["message"]["id"]))["status"] == "complete"


async def test_prompt_is_the_stored_path_including_imported_messages(
    api: httpx.AsyncClient, fake: FakeUpstream
) -> None:
    """G3: each prompt is root -> the new user message as stored, a system message and
    multi-part content included, and nothing else."""
    sid = new_id()
    assert (await api.put(f"/api/sessions/{sid}", json={})).status_code == 201
    system = {"role": "system", "content": "You are terse."}
    assert (await api.put(f"/api/sessions/{sid}/messages/{new_id()}", json=system)).is_success
    parts = [{"type": "text", "text": "Two"}, {"type": "text", "text": "parts"}]
    for content in ("One", parts, "Three"):
        assert names(await send_turn(api, sid, turn_body(content)))[-1] == "done"

    path = (await get_session(api, sid))["messages"]
    assert [m["role"] for m in path] == ["system"] + ["user", "assistant"] * 3
    prompts = [request["messages"] for request in fake.requests]
    assert prompts == [prompt_of(path[:2]), prompt_of(path[:4]), prompt_of(path[:6])]
    assert prompts[0][0] == system and prompts[1][-1]["content"] == parts


async def test_stale_client_still_sends_the_whole_history(
    api: httpx.AsyncClient, other_api: httpx.AsyncClient, fake: FakeUpstream
) -> None:
    """G3 (source report ISSUE 5): a tab that has not reloaded since its first turn sends the
    third; the prompt still holds the turn the other tab sent in between."""
    sid = new_id()
    await send_turn(api, sid, turn_body("from tab A", session={}))
    await send_turn(other_api, sid, turn_body("from tab B"))

    third = turn_body("tab A again, stale")
    await send_turn(api, sid, third)

    path = (await get_session(api, sid))["messages"]
    assert [m["content"] for m in path[::2]] == ["from tab A", "from tab B", "tab A again, stale"]
    assert fake.requests[-1]["messages"] == prompt_of(path[:5])
    assert path[4]["id"] == third["message"]["id"]


async def test_reply_text_is_checkpointed_while_it_streams(
    api: httpx.AsyncClient, other_api: httpx.AsyncClient, fake: FakeUpstream
) -> None:
    """TC-2.2, G2: while the reply streams, its stored text grows (another client sees a
    partial checkpoint); once done it is stored complete with the full text."""
    reply = "".join(f"{n:03d} " for n in range(80))
    fake.set(reply=reply, chunk_chars=4, token_interval_s=0.01)
    sid, body = new_id(), turn_body("count slowly", session={})
    rid = reply_id_of(body)
    seen: list[str] = []

    async def partial() -> dict[str, Any] | None:
        row = await stored(other_api, sid, rid)
        seen.append(row["content"])
        done = row["status"] != "streaming"
        return row if done or 0 < len(row["content"]) < len(reply) else None

    async with open_turn(api, sid, body) as stream:
        await stream.until("delta")
        checkpoint = await eventually(partial, what="a partial checkpoint")
        await stream.rest()
        events = stream.seen

    assert checkpoint["status"] == "streaming", "the reply finished before any checkpoint"
    assert 0 < len(checkpoint["content"]) < len(reply)
    assert all(reply.startswith(text) for text in seen)
    assert delta_text(events) == reply
    final = await stored(api, sid, rid)
    assert (final["status"], final["content"]) == ("complete", reply)
    assert events[-1].json == final


async def test_rapid_sequential_turns_lose_nothing(
    api: httpx.AsyncClient, fake: FakeUpstream
) -> None:
    """TC-3.2: five turns, each sent the moment the previous ``done`` arrives: no 409, every
    message and reply stored once, in order, seq 1..10 without gaps, one chain of parents."""
    fake.set(chunk_chars=3)
    sid = new_id()
    texts = [f"Msg {n}" for n in range(1, 6)]
    for n, text_ in enumerate(texts):
        events = await send_turn(api, sid, turn_body(text_, session={} if n == 0 else None))
        assert names(events)[-1] == "done", events[-1]

    path = (await get_session(api, sid))["messages"]
    assert [m["role"] for m in path] == ["user", "assistant"] * 5
    assert [m["content"] for m in path[::2]] == texts
    assert [m["content"] for m in path[1::2]] == [f"Echo: {t}" for t in texts]
    assert [m["seq"] for m in path] == list(range(1, 11))
    assert [m["parent_id"] for m in path] == [None] + [m["id"] for m in path[:-1]]
    assert {m["status"] for m in path} == {"complete"}
    synced = (await api.get(f"/api/sessions/{sid}/messages")).json()["messages"]
    assert synced == path
    assert [len(r["messages"]) for r in fake.requests] == [1, 3, 5, 7, 9]
