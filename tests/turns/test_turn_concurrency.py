"""One generation per turn and per session (G1, G4): replays of a turn, concurrent or late,
attach to the one generation or its stored reply; a different send while a reply streams is
refused before any stream starts, by the database, whichever server process it reaches."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
from turnkit import (
    TurnStack,
    all_messages,
    get_session,
    new_session,
    open_turn,
    reply_id_of,
    send_turn,
    turn_body,
)

from support.factories import new_id
from support.fake_upstream import FakeUpstream
from support.sse import Event, check_delta_ids, delta_text, names

REPLY = "One reply, generated once, whoever asks and however often."


async def refused(api: httpx.AsyncClient, sid: str, body: dict[str, Any]) -> tuple[int, Any]:
    """Send a turn that must be refused: its status and problem+json, never a stream."""
    async with open_turn(api, sid, body) as stream:
        return stream.status_code, await stream.problem()


async def test_second_send_while_a_reply_streams_is_refused_before_any_stream(
    api: httpx.AsyncClient, other_api: httpx.AsyncClient, fake: FakeUpstream
) -> None:
    """TC-3.3, G4: "Message 2" sent while "Message 1" is answered gets 409
    generation_in_progress as problem+json; the model saw one request and nothing of the
    refused send was stored. After the first reply is done, the same send goes through."""
    fake.set(ttft_s=0.6, reply=REPLY)
    sid, first = new_id(), turn_body("Message 1", session={})
    second = turn_body("Message 2")

    async with open_turn(api, sid, first) as stream:
        await stream.until("start")
        status, problem = await refused(other_api, sid, second)
        regenerate = turn_body("Message 1", mid=first["message"]["id"], reply_id=new_id())
        regenerate_status, _ = await refused(other_api, sid, regenerate)
        rest = await stream.rest()

    assert (status, problem["code"]) == (409, "generation_in_progress")
    assert problem["reply_id"] == reply_id_of(first)
    assert regenerate_status == 409
    assert delta_text(rest) == REPLY and names(rest)[-1] == "done"
    assert fake.stats().chat_requests == 1
    assert second["message"]["id"] not in [m["id"] for m in await all_messages(api, sid)]

    events = await send_turn(other_api, sid, second)

    assert names(events)[-1] == "done"
    assert fake.stats().chat_requests == 2
    assert [m["content"] for m in (await get_session(api, sid))["messages"]] == [
        "Message 1",
        REPLY,
        "Message 2",
        REPLY,
    ]


async def test_one_generation_per_session_is_enforced_across_server_processes(
    turn_stack: TurnStack,
    api: httpx.AsyncClient,
    fake: FakeUpstream,
    start_stack: Callable[..., TurnStack],
) -> None:
    """G4 is the database's, not one process's memory: a send to a second server while the
    first generates is refused, and the model is asked once."""
    other = start_stack()
    fake.set(ttft_s=0.6, reply=REPLY)
    sid, first = new_id(), turn_body("to server one", session={})

    async with other.client() as elsewhere, open_turn(api, sid, first) as stream:
        await stream.until("start")
        status, problem = await refused(elsewhere, sid, turn_body("to server two"))
        rest = await stream.rest()

    assert (status, problem["code"]) == (409, "generation_in_progress")
    assert delta_text(rest) == REPLY
    assert fake.stats().chat_requests == 1


async def fifty_at_once(stack: TurnStack, sid: str, body: dict[str, Any]) -> list[list[Event]]:
    limits = httpx.Limits(max_connections=50, max_keepalive_connections=50)
    async with stack.client(limits=limits, timeout=60) as client:
        return await asyncio.gather(*(send_turn(client, sid, body) for _ in range(50)))


async def assert_one_generation(
    stack: TurnStack, sid: str, body: dict[str, Any], results: list[list[Event]]
) -> None:
    """Every stream ends with the same complete reply; one model call, one pair of rows."""
    rid, mid = reply_id_of(body), body["message"]["id"]
    for events in results:
        assert names(events)[:2] == ["message", "start"] and names(events)[-1] == "done"
        assert events[0].json["id"] == mid
        check_delta_ids(events, rid)
        assert delta_text(events) == REPLY
        assert events[-1].json["status"] == "complete"
    assert len({events[-1].data for events in results}) == 1
    assert stack.fake.stats().chat_requests == 1
    rows = await stack.db_rows(
        "SELECT m.id, m.role FROM messages m JOIN sessions s ON s.pk = m.session_pk"
        " WHERE s.id = :sid ORDER BY m.seq",
        sid=sid,
    )
    assert rows == [(mid, "user"), (rid, "assistant")]
    sessions = await stack.db_rows("SELECT count(*) FROM sessions WHERE id = :sid", sid=sid)
    assert sessions == [(1,)]


async def test_fifty_concurrent_replays_of_a_turn_make_one_generation(
    turn_stack: TurnStack, api: httpx.AsyncClient, fake: FakeUpstream
) -> None:
    """G1 for turns (TC-1.x double clicks, TC-6.2 retries): 50 identical sends at once (the
    client chose the reply id) leave one user message, one reply and one upstream request;
    every stream ends with the same complete text, each delta id consistent with its offset."""
    fake.set(reply=REPLY, ttft_s=0.2, chunk_chars=4, token_interval_s=0.005)
    sid = await new_session(api)
    body = turn_body("exactly once", reply_id=new_id())

    results = await fifty_at_once(turn_stack, sid, body)

    await assert_one_generation(turn_stack, sid, body, results)


async def test_fifty_concurrent_first_turns_of_a_new_chat_make_one_chat(
    turn_stack: TurnStack, fake: FakeUpstream
) -> None:
    """G1, TC-1.2 (double click on Send in a new chat): the turn that creates its chat
    (``session``), sent 50 times at once with the reply id left to the server, makes one
    chat, one turn, one generation."""
    fake.set(reply=REPLY, ttft_s=0.2, chunk_chars=4, token_interval_s=0.005)
    sid, body = new_id(), turn_body("new chat, double click", session={"title": "Race"})

    results = await fifty_at_once(turn_stack, sid, body)

    await assert_one_generation(turn_stack, sid, body, results)


async def test_replay_after_completion_returns_the_stored_reply_without_the_model(
    api: httpx.AsyncClient, other_api: httpx.AsyncClient, fake: FakeUpstream
) -> None:
    """G1: a late retry of a finished turn (the first response was lost) gets the stored
    message and reply, and neither calls the model again nor moves the chat."""
    fake.set(reply=REPLY)
    sid, first = new_id(), turn_body("first", session={})
    original = await send_turn(api, sid, first)
    await send_turn(api, sid, turn_body("second"))
    before = await get_session(api, sid)

    again = await send_turn(other_api, sid, first)

    assert names(again) == ["message", "start", "delta", "done"]
    assert again[0].json == original[0].json
    assert again[-1].json == original[-1].json
    assert delta_text(again) == REPLY
    assert fake.stats().chat_requests == 2
    assert await get_session(api, sid) == before


async def test_same_ids_with_other_content_are_an_idempotency_conflict(
    api: httpx.AsyncClient, fake: FakeUpstream
) -> None:
    """G1: a message id reused with other content, or a reply id reused for another message,
    is 409 idempotency_conflict before any stream; nothing is stored, the model is not asked."""
    sid, first = new_id(), turn_body("the original", session={})
    await send_turn(api, sid, first)
    before = await all_messages(api, sid)

    attempts = [
        turn_body("edited behind our back", mid=first["message"]["id"]),
        turn_body("edited, regenerated", mid=first["message"]["id"], reply_id=new_id()),
        turn_body("a new message", reply_id=reply_id_of(first)),
    ]
    answers = [await refused(api, sid, body) for body in attempts]

    assert [(status, problem["code"]) for status, problem in answers] == [
        (409, "idempotency_conflict")
    ] * 3
    assert fake.stats().chat_requests == 1
    assert await all_messages(api, sid) == before
