"""When the model fails (TC-6.2 at the turn level): each upstream failure ends the reply as an
``error`` event with its stable code, the stored reply keeps its partial text and the user's
message stays; a regeneration then succeeds. A client that retries the same turn after its own
read timeout attaches to the one generation instead of starting a second."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from turnkit import (
    FAKE_MODEL,
    TurnStack,
    all_messages,
    get_session,
    open_turn,
    reply_id_of,
    send_turn,
    stored,
    turn_body,
)

from support.factories import new_id
from support.fake_upstream import FakeUpstream
from support.server import free_port
from support.sse import Event, EventStream, check_delta_ids, delta_text, names

REPLY = "abcdefghijklmnopqrstuvwxyz"


async def assert_failed_turn(
    api: httpx.AsyncClient, sid: str, body: dict[str, Any], events: list[Event], code: str
) -> dict[str, Any]:
    """The stream ends with ``error`` of ``code``; the stored reply is that error with the text
    the client was sent; the user's message is stored complete."""
    rid = reply_id_of(body)
    assert names(events)[:2] == ["message", "start"] and names(events)[-1] == "error"
    assert set(names(events)[2:-1]) <= {"delta"}
    error = events[-1].json
    assert error["code"] == code and error["message"]
    reply = await stored(api, sid, rid)
    assert error["reply"] == reply
    assert (reply["status"], reply["error"]["code"]) == ("error", code)
    assert reply["content"] == delta_text(events)
    user = await stored(api, sid, body["message"]["id"])
    assert (user["status"], user["content"]) == ("complete", body["message"]["content"])
    return reply


async def regenerate(api: httpx.AsyncClient, sid: str, body: dict[str, Any]) -> list[Event]:
    """The user's retry: the same message, a new reply."""
    message = body["message"]
    return await send_turn(
        api, sid, turn_body(message["content"], mid=message["id"], reply_id=new_id())
    )


@pytest.mark.parametrize(
    ("knobs", "code", "partial"),
    [
        ({"fail_status": 429, "fail_times": 1}, "upstream_rate_limited", ""),
        ({"fail_status": 500, "fail_times": 1}, "upstream_error", ""),
        ({"cut_after_chunks": 3, "chunk_chars": 4}, "upstream_stream_broken", REPLY[:12]),
    ],
    ids=["429", "500", "cut"],
)
async def test_upstream_failure_ends_the_reply_as_error_and_a_regeneration_recovers(
    api: httpx.AsyncClient, fake: FakeUpstream, knobs: dict[str, Any], code: str, partial: str
) -> None:
    """TC-6.2: rate limited, failing or cut off mid-reply, the reply is stored as ``error`` with
    its code and the text that arrived, after exactly one upstream request (chatkeep does not
    retry behind the user's back, SPEC 9); the user's regeneration then completes."""
    fake.set(reply=REPLY, **knobs)
    sid, body = new_id(), turn_body("please answer", session={})

    events = await send_turn(api, sid, body)

    failed = await assert_failed_turn(api, sid, body, events, code)
    assert failed["content"] == partial
    check_delta_ids(events, reply_id_of(body))
    assert fake.stats().chat_requests == 1

    fake.set(cut_after_chunks=None)
    again = await regenerate(api, sid, body)

    assert names(again)[-1] == "done" and delta_text(again) == REPLY
    assert fake.stats().chat_requests == 2
    session = await get_session(api, sid)
    assert [m["content"] for m in session["messages"]] == ["please answer", REPLY]
    assert [m["status"] for m in await all_messages(api, sid)] == ["complete", "error", "complete"]


@pytest.mark.parametrize("knob", ["hang", "ttft_s"])
async def test_a_silent_upstream_ends_the_reply_as_upstream_timeout(
    fake: FakeUpstream, start_stack: Callable[..., TurnStack], knob: str
) -> None:
    """TC-6.2: a model that sends nothing (no headers, or headers then silence) for longer than
    upstream_first_token_timeout_s is hung up on, and the reply ends as upstream_timeout."""
    impatient = start_stack(upstream_timeout_s=0.5, upstream_first_token_timeout_s=0.5)
    fake.set(reply=REPLY, **({"hang": True} if knob == "hang" else {"ttft_s": 30.0}))
    sid, body = new_id(), turn_body("anyone there?", session={})

    async with impatient.client() as api:
        events = await send_turn(api, sid, body)
        await assert_failed_turn(api, sid, body, events, "upstream_timeout")
        stats = await fake.wait_for(lambda s: s.abandoned == 1)
        assert (stats.chat_requests, stats.completed) == (1, 0)

        fake.set(hang=False, ttft_s=0.0)
        again = await regenerate(api, sid, body)
    assert names(again)[-1] == "done" and delta_text(again) == REPLY


async def test_an_unreachable_upstream_ends_the_reply_as_upstream_unavailable(
    start_stack: Callable[..., TurnStack],
) -> None:
    """A model server that is down (its models configured, so chatkeep need not list them):
    the reply ends as upstream_unavailable and the user's message is kept."""
    stack = start_stack(
        openai_base_url=f"http://127.0.0.1:{free_port()}/v1", openai_models=[FAKE_MODEL]
    )
    sid, body = new_id(), turn_body("hello?", session={})

    async with stack.client() as api:
        events = await send_turn(api, sid, body)
        await assert_failed_turn(api, sid, body, events, "upstream_unavailable")


async def read_until_timeout(stream: EventStream) -> None:
    with pytest.raises(httpx.ReadTimeout):
        await stream.rest()


async def test_client_retries_after_read_timeouts_attach_to_the_same_generation(
    api: httpx.AsyncClient, fake: FakeUpstream
) -> None:
    """TC-6.2 (retry with backoff; the third attempt succeeds): a client that gives up waiting
    for the first token and sends the same turn again, twice, ends up with the one reply, and
    the model was asked once (G1, G6)."""
    fake.set(reply=REPLY, ttft_s=1.0, chunk_chars=4, token_interval_s=0.005)
    sid, body = new_id(), turn_body("slow model", session={})
    impatient = httpx.Timeout(30, read=0.3)
    attempts = 0

    for _ in range(2):
        attempts += 1
        async with open_turn(api, sid, body, timeout=impatient) as stream:
            await read_until_timeout(stream)
        assert names(stream.seen) == ["message", "start"]
    attempts += 1
    events = await send_turn(api, sid, body)

    assert attempts == 3
    assert names(events)[:2] == ["message", "start"] and names(events)[-1] == "done"
    assert delta_text(events) == REPLY
    assert fake.stats().chat_requests == 1
    assert len(await all_messages(api, sid)) == 2


async def test_unknown_session_and_bad_bodies_are_problems_not_streams(
    api: httpx.AsyncClient, fake: FakeUpstream
) -> None:
    """SPEC 4, G8: errors known before streaming are problem+json, never a 500 or a stream."""
    sid = new_id()
    await send_turn(api, sid, turn_body("exists", session={}))
    cases: list[tuple[str, Any, int]] = [
        (new_id(), turn_body("no such chat"), 404),
        (sid, {"message": {"id": "not-a-uuid", "content": "x"}}, 422),
        (sid, {"message": {"id": new_id()}}, 422),
        (sid, {"message": {"id": new_id(), "content": []}}, 422),
        (sid, {**turn_body("x"), "surprise": True}, 422),
    ]
    for session_id, body, status in cases:
        async with open_turn(api, session_id, body) as stream:
            assert stream.status_code == status, body
            assert (await stream.problem())["status"] == status
    assert fake.stats().chat_requests == 1
