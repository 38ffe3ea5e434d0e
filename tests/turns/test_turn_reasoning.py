"""Reasoning models (issue 8, item 4), on SQLite and PostgreSQL: the model's thinking
(``reasoning_content``, OpenRouter's ``reasoning``, a leading ``<think>`` block) streams as
``reasoning`` events and is stored as the reply's ``reasoning``, never mixed into its text;
it is checkpointed while it streams, and one ``Last-Event-ID`` resumes text and reasoning exactly
(G6), live and from the store."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
import pytest
from turnkit import (
    TurnStack,
    eventually,
    get_session,
    open_turn,
    reply_id_of,
    send_turn,
    stored,
    stream_url,
    turn_body,
)

from support.factories import new_id
from support.fake_upstream import FakeUpstream
from support.sse import Event, delta_text, names, open_stream

THOUGHT = "First, the user says hello. Greeting back is polite; keep it short. 🤔"
ANSWER = "Hello! How can I help?"


def reasoning_text(events: list[Event]) -> str:
    return "".join(e.json["text"] for e in events if e.event == "reasoning")


def check_ids(events: list[Event], rid: str, text: int = 0, reasoning: int = 0) -> None:
    """Each id carries the characters of reasoning and of text sent so far, text last."""
    for e in events:
        if e.event == "reasoning":
            reasoning += len(e.json["text"])
        elif e.event == "delta":
            text += len(e.json["text"])
        else:
            continue
        expected = f"{rid}:r{reasoning}:{text}" if reasoning else f"{rid}:{text}"
        assert e.id == expected, (e.id, expected)


@pytest.mark.parametrize("form", ["reasoning_content", "reasoning", "think"])
async def test_reasoning_streams_and_is_stored_apart_from_the_text(
    api: httpx.AsyncClient, fake: FakeUpstream, form: str
) -> None:
    fake.set(reply=ANSWER, reasoning=THOUGHT, reasoning_format=form, chunk_chars=5)
    sid, body = new_id(), turn_body("hi", session={})
    rid = reply_id_of(body)

    events = await send_turn(api, sid, body)

    kinds = names(events)
    assert kinds[:2] == ["message", "start"] and kinds[-1] == "done"
    assert kinds.index("delta") > kinds.index("reasoning")
    assert reasoning_text(events) == THOUGHT and delta_text(events) == ANSWER
    check_ids(events, rid)
    done = events[-1].json
    assert (done["content"], done["reasoning"]) == (ANSWER, THOUGHT)
    assert isinstance(done["reasoning_ms"], int) and done["reasoning_ms"] >= 0
    assert events[1].json["reasoning"] is None
    reply = await stored(api, sid, rid)
    assert (reply["content"], reply["reasoning"]) == (ANSWER, THOUGHT)
    assert reply["reasoning_ms"] == done["reasoning_ms"]
    # The next prompt carries the answer only: reasoning is not sent back to the model.
    await send_turn(api, sid, turn_body("again"))
    assert fake.requests[-1]["messages"][1] == {"role": "assistant", "content": ANSWER}


async def test_a_reply_without_reasoning_is_unchanged(api: httpx.AsyncClient) -> None:
    sid, body = new_id(), turn_body("plain", session={})
    events = await send_turn(api, sid, body)
    assert "reasoning" not in names(events)
    assert events[-1].json["reasoning"] is None and events[-1].json["reasoning_ms"] is None
    check_ids(events, reply_id_of(body))


async def test_reasoning_is_checkpointed_while_it_streams(
    api: httpx.AsyncClient, fake: FakeUpstream
) -> None:
    """G2 for reasoning: a reader of the stored chat sees the thinking grow before any text."""
    fake.set(reply=ANSWER, reasoning="thinking " * 40, chunk_chars=4, token_interval_s=0.02)
    sid, body = new_id(), turn_body("think slowly", session={})
    rid = reply_id_of(body)
    async with open_turn(api, sid, body) as stream:
        await stream.until("reasoning")

        async def checkpointed() -> dict[str, object] | None:
            reply = (await get_session(api, sid))["messages"][-1]
            return reply if reply["status"] == "streaming" and reply["reasoning"] else None

        reply = await eventually(checkpointed, what="a reasoning checkpoint")
        assert reply["content"] == "" and "thinking".startswith(str(reply["reasoning"])[:8])
        await stream.rest()
    assert (await stored(api, sid, rid))["reasoning"] == "thinking " * 40


async def test_one_last_event_id_resumes_text_and_reasoning_exactly(
    api: httpx.AsyncClient, other_api: httpx.AsyncClient, fake: FakeUpstream
) -> None:
    """G6: cut after some reasoning, or after some text; the live generation and then the
    stored reply each send exactly the rest of both."""
    fake.set(reply=ANSWER * 3, reasoning=THOUGHT * 2, chunk_chars=3, token_interval_s=0.01)
    sid, body = new_id(), turn_body("resume me", session={})
    rid = reply_id_of(body)

    async with open_turn(api, sid, body) as stream:
        seen = [await stream.next() for _ in range(5)]  # message, start, 3 reasoning
        async with open_stream(
            other_api, "GET", stream_url(sid, rid), last_event_id=seen[-1].id
        ) as live:
            rest = await live.rest()
        full = seen + await stream.rest()
    assert reasoning_text(seen) + reasoning_text(rest) == THOUGHT * 2
    assert delta_text(rest) == ANSWER * 3 and names(rest)[-1] == "done"
    check_ids(rest, rid, reasoning=len(reasoning_text(seen)))

    for cut in range(2, len(full) - 1, 7):  # from the store, at every kind of event
        last = full[cut]
        r, t = re.fullmatch(rf"{rid}:(?:r(\d+):)?(\d+)", last.id or "").groups()
        async with open_stream(api, "GET", stream_url(sid, rid), last_event_id=last.id) as again:
            after = await again.rest()
        assert reasoning_text(full[: cut + 1]) + reasoning_text(after) == THOUGHT * 2
        assert delta_text(full[: cut + 1]) + delta_text(after) == ANSWER * 3
        check_ids(after, rid, text=int(t), reasoning=int(r or 0))

    # An id without the reasoning part (a client that knows nothing of it): the text resumes
    # exactly; the reasoning comes again from its start.
    async with open_stream(api, "GET", stream_url(sid, rid), last_event_id=f"{rid}:5") as old:
        after = await old.rest()
    assert delta_text(after) == (ANSWER * 3)[5:] and reasoning_text(after) == THOUGHT * 2
    assert fake.stats().chat_requests == 1


async def test_an_anthropic_providers_thinking_is_the_replys_reasoning(
    fake: FakeUpstream, start_stack: Callable[..., TurnStack]
) -> None:
    """Issue 8, item 7 through a whole turn: Anthropic's thinking blocks become ``reasoning``
    events and the stored reasoning; the system-less prompt reaches its Messages API."""
    fake.set(reply=ANSWER, reasoning=THOUGHT, chunk_chars=4, require_key="sk-ant-x1234")
    stack = start_stack(
        openai_base_url="",
        default_model="",
        providers=[
            {"name": "claude", "kind": "anthropic", "base_url": fake.url, "api_key": "sk-ant-x1234"}
        ],
    )
    async with stack.client() as api:
        sid, body = new_id(), turn_body("hi", session={})
        events = await send_turn(api, sid, body)
        assert reasoning_text(events) == THOUGHT and delta_text(events) == ANSWER
        reply = await stored(api, sid, reply_id_of(body))
    assert (reply["reasoning"], reply["model"]) == (THOUGHT, "fake-model")
    assert fake.requests[-1]["messages"] == [{"role": "user", "content": "hi"}]
