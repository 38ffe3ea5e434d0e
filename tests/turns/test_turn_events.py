"""A turn's event stream over real HTTP (SPEC 4): message, start, delta*, done, in that order;
the text arrives byte for byte with resumable ids (G6); a new chat is one round trip; the stream
starts before the model's first token (Benchmark 2); a dropped client does not lose the reply."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from turnkit import (
    FAKE_MODEL,
    TurnStack,
    eventually,
    get_session,
    new_session,
    open_turn,
    reply_id_of,
    send_turn,
    stored,
    stream_url,
    turn_body,
    wait_upstream_open,
)

from support.factories import new_id
from support.fake_upstream import FakeUpstream
from support.sse import check_delta_ids, delta_text, names, open_stream

# Multi-byte characters, an emoji, newlines and markdown: what must survive byte for byte.
REPLY = "Olá! Here is a plan 🌍:\n\n1. Belém\n2. Alfama — fado at night\n\n```sh\necho 'ok'\n```"


def is_stream(events: list[str]) -> bool:
    """message, start, one or more deltas, done: nothing else, nothing out of order."""
    return (
        len(events) >= 4
        and events[:2] == ["message", "start"]
        and events[-1] == "done"
        and set(events[2:-1]) == {"delta"}
    )


async def cancel(api: httpx.AsyncClient, sid: str, rid: str) -> dict[str, Any]:
    response = await api.post(f"/api/sessions/{sid}/messages/{rid}/cancel")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_turn_streams_message_start_deltas_done_and_stores_what_it_sent(
    api: httpx.AsyncClient, fake: FakeUpstream
) -> None:
    """SPEC 4, TC-2.2: the deltas are the upstream's reply byte for byte, each delta's id is
    ``<reply_id>:<characters so far>``, and ``done`` is the stored reply, as GET returns it."""
    fake.set(reply=REPLY, chunk_chars=3, token_interval_s=0.001)
    sid, body = new_id(), turn_body("Plan a day in Lisbon", session={"title": "Lisbon"})
    rid = reply_id_of(body)

    events = await send_turn(api, sid, body)

    assert is_stream(names(events)), names(events)
    message, start, done = events[0].json, events[1].json, events[-1].json
    assert (message["id"], message["role"], message["status"], message["seq"]) == (
        body["message"]["id"],
        "user",
        "complete",
        1,
    )
    assert message["content"] == "Plan a day in Lisbon"
    assert (start["id"], start["role"], start["status"], start["content"]) == (
        rid,
        "assistant",
        "streaming",
        "",
    )
    assert (start["parent_id"], start["seq"], start["model"]) == (message["id"], 2, FAKE_MODEL)
    check_delta_ids(events, rid)
    assert delta_text(events) == REPLY
    assert (done["id"], done["status"], done["content"]) == (rid, "complete", REPLY)
    assert done["usage"]["completion_tokens"] > 0

    session = await get_session(api, sid)
    assert session["messages"] == [message, done]
    assert (session["title"], session["active_leaf_id"], session["last_seq"]) == ("Lisbon", rid, 2)
    assert fake.stats().chat_requests == 1


async def test_session_field_creates_the_chat_in_the_same_request(
    api: httpx.AsyncClient, fake: FakeUpstream
) -> None:
    """SPEC 4: a new chat is one round trip, so create-then-send cannot race (TC-1.x). Without
    ``session`` the same turn on an unknown chat is a 404 problem, not a stream."""
    sid = new_id()
    assert (await api.get(f"/api/sessions/{sid}")).status_code == 404

    async with open_turn(api, sid, turn_body("hello")) as refused:
        assert refused.status_code == 404
        assert (await refused.problem())["code"] == "not_found"
    assert fake.stats().chat_requests == 0

    events = await send_turn(api, sid, turn_body("hello", session={"model": FAKE_MODEL}))

    assert names(events)[-1] == "done"
    session = await get_session(api, sid)
    assert session["model"] == FAKE_MODEL
    assert [m["role"] for m in session["messages"]] == ["user", "assistant"]
    listed = (await api.get("/api/sessions", params={"limit": 200})).json()["sessions"]
    assert [s["id"] for s in listed].count(sid) == 1


async def test_stream_starts_before_the_first_token_exists(
    api: httpx.AsyncClient, other_api: httpx.AsyncClient, fake: FakeUpstream
) -> None:
    """Benchmark 2 (stream start time): ``message`` and ``start`` arrive while the model still
    holds its first token (here for 2 s), so "Generating..." shows at once whatever the model's
    latency. Checked by order and state, not by a clock. (Stop ends the wait for the token.)"""
    fake.set(ttft_s=2.0, reply="worth the wait")
    sid, body = new_id(), turn_body("hello", session={})
    rid = reply_id_of(body)

    async with open_turn(api, sid, body) as stream:
        first = [await stream.next(), await stream.next()]
        assert names(first) == ["message", "start"]
        await wait_upstream_open(fake)
        # The model has been asked and has not sent a single token yet.
        stats = fake.stats()
        assert (stats.active, stats.completed) == (1, 0)
        row = await stored(other_api, sid, rid)
        assert (row["status"], row["content"]) == ("streaming", "")
        await cancel(other_api, sid, rid)
        assert names(await stream.rest()) == ["error"]


async def test_untitled_chat_is_titled_from_its_first_message_at_once(
    turn_stack: TurnStack, api: httpx.AsyncClient, other_api: httpx.AsyncClient, fake: FakeUpstream
) -> None:
    """SPEC 1: a chat with no title is titled from its first message in the same transaction,
    visible before the reply has a single token; a long message is cut to a short title."""
    fake.set(hang=True)
    sid, body = new_id(), turn_body("  Plan a   trip\nto Lisbon in May  ", session={})

    async with open_turn(api, sid, body) as stream:
        await stream.until("start")
        assert (await get_session(other_api, sid))["title"] == "Plan a trip to Lisbon in May"
        await cancel(other_api, sid, reply_id_of(body))
        assert names(await stream.rest()) == ["error"]

    fake.set(hang=False)
    long_text = "word " * 40
    untitled = await new_session(api)
    assert names(await send_turn(api, untitled, turn_body(long_text)))[-1] == "done"
    title = (await get_session(api, untitled))["title"]
    assert len(title) <= 60 and title.endswith("…") and long_text.startswith(title[:-1])


async def test_a_titled_chat_keeps_its_title(api: httpx.AsyncClient) -> None:
    sid = await new_session(api, title="My own title")
    await send_turn(api, sid, turn_body("first"))
    await send_turn(api, sid, turn_body("second"))
    assert (await get_session(api, sid))["title"] == "My own title"


async def test_client_that_drops_the_stream_still_gets_its_reply_stored(
    api: httpx.AsyncClient, other_api: httpx.AsyncClient, fake: FakeUpstream
) -> None:
    """The generation is detached from the request: closing the tab after the first delta
    neither stops the model nor loses the reply (G2)."""
    fake.set(reply=REPLY, chunk_chars=2, token_interval_s=0.005)
    sid, body = new_id(), turn_body("go on without me", session={})
    rid = reply_id_of(body)

    async with open_turn(api, sid, body) as stream:
        await stream.until("delta")
    # The response is closed: the client is gone.

    async def complete() -> dict[str, Any] | None:
        row = await stored(other_api, sid, rid)
        return row if row["status"] != "streaming" else None

    row = await eventually(complete, what="the dropped reply to finish")
    assert (row["status"], row["content"]) == ("complete", REPLY)
    stats = fake.stats()
    assert (stats.chat_requests, stats.completed, stats.abandoned) == (1, 1, 0)


async def test_attach_follows_a_live_reply_from_its_start(
    api: httpx.AsyncClient, other_api: httpx.AsyncClient, fake: FakeUpstream
) -> None:
    """G6, SPEC 3: another tab attaches while the model holds its first token and receives
    the whole reply live, then the same ``done`` as the tab that sent it."""
    fake.set(reply=REPLY, ttft_s=0.5, chunk_chars=5, token_interval_s=0.01)
    sid, body = new_id(), turn_body("attach to me", session={})
    rid = reply_id_of(body)

    async with open_turn(api, sid, body) as sender:
        await sender.until("start")
        async with open_stream(other_api, "GET", stream_url(sid, rid)) as attached:
            assert attached.status_code == 200
            start = await attached.next()
            # Attached while the reply was streaming: what follows is live, not the stored text.
            assert (start.event, start.json["status"], start.json["content"]) == (
                "start",
                "streaming",
                "",
            )
            watched = await attached.rest()
        sent = await sender.rest()

    assert names(watched)[-1] == "done"
    check_delta_ids(watched, rid)
    assert delta_text(watched) == delta_text(sent) == REPLY
    assert watched[-1].json == sent[-1].json == await stored(api, sid, rid)


async def test_attach_to_a_finished_reply_sends_its_stored_text(
    api: httpx.AsyncClient, fake: FakeUpstream
) -> None:
    """G6: once finished, attaching replays the stored text and ``done`` without the model."""
    fake.set(reply=REPLY, chunk_chars=7)
    sid, body = new_id(), turn_body("finished", session={})
    rid = reply_id_of(body)
    await send_turn(api, sid, body)
    reply = await stored(api, sid, rid)

    async with open_stream(api, "GET", stream_url(sid, rid)) as stream:
        events = await stream.rest()

    assert names(events) == ["start", "delta", "done"]
    assert events[1].id == f"{rid}:{len(REPLY)}"
    assert delta_text(events) == REPLY
    assert events[-1].json == reply
    assert fake.stats().chat_requests == 1


async def test_last_event_id_resumes_a_finished_reply_exactly_after_its_offset(
    api: httpx.AsyncClient, fake: FakeUpstream
) -> None:
    """G6: ``Last-Event-ID: <id>:<n>`` (or ``?offset=n``) sends exactly the text after n: no
    ``start``, nothing twice, nothing missing. An id of another reply is not an offset."""
    fake.set(reply=REPLY)
    sid, body = new_id(), turn_body("resume", session={})
    rid = reply_id_of(body)
    await send_turn(api, sid, body)

    for n in (0, 1, 7, len(REPLY) - 1, len(REPLY)):
        async with open_stream(
            api, "GET", stream_url(sid, rid), last_event_id=f"{rid}:{n}"
        ) as stream:
            events = await stream.rest()
        assert names(events) == (["delta", "done"] if n < len(REPLY) else ["done"]), n
        assert delta_text(events) == REPLY[n:]
        check_delta_ids(events, rid, start=n)

        async with open_stream(api, "GET", stream_url(sid, rid), params={"offset": n}) as stream:
            assert delta_text(await stream.rest()) == REPLY[n:]

    async with open_stream(
        api, "GET", stream_url(sid, rid), last_event_id=f"{new_id()}:5"
    ) as stream:
        events = await stream.rest()
    assert names(events) == ["start", "delta", "done"] and delta_text(events) == REPLY


async def test_reconnecting_mid_reply_with_last_event_id_gets_exactly_the_missed_text(
    api: httpx.AsyncClient, other_api: httpx.AsyncClient, fake: FakeUpstream
) -> None:
    """G6: a client whose connection drops mid-reply resends its turn (or attaches) with the
    last id it saw; what it had plus what it gets is the reply, exactly."""
    fake.set(reply=REPLY * 3, chunk_chars=2, token_interval_s=0.005)
    sid, body = new_id(), turn_body("resume me", session={})
    rid = reply_id_of(body)

    async with open_turn(api, sid, body) as stream:
        before = [await stream.until("delta"), await stream.until("delta")]
    last_id = before[-1].id
    assert last_id is not None

    async with open_turn(other_api, sid, body, last_event_id=last_id) as resumed:
        events = await resumed.rest()
    async with open_stream(api, "GET", stream_url(sid, rid), last_event_id=last_id) as attached:
        attached_events = await attached.rest()

    offset = int(last_id.rsplit(":", 1)[1])
    assert names(events)[0] == "delta" and names(events)[-1] == "done"
    check_delta_ids(events, rid, start=offset)
    assert delta_text(before) + delta_text(events) == REPLY * 3
    assert delta_text(before) + delta_text(attached_events) == REPLY * 3
    assert fake.stats().chat_requests == 1


async def test_attach_through_another_server_process_follows_the_checkpoints(
    api: httpx.AsyncClient, fake: FakeUpstream, start_stack: Callable[..., TurnStack]
) -> None:
    """G6 with several server processes: a tab whose attach (or resume) reaches a process that
    does not generate the reply follows its stored checkpoints to the same text and ``done``."""
    elsewhere = start_stack()
    fake.set(reply=REPLY * 2, chunk_chars=3, token_interval_s=0.01)
    sid, body = new_id(), turn_body("watch from afar", session={})
    rid = reply_id_of(body)

    async with elsewhere.client() as far, open_turn(api, sid, body) as sender:
        await sender.until("delta")
        async with open_stream(far, "GET", stream_url(sid, rid)) as attached:
            start = await attached.next()
            watched = await attached.rest()
        async with open_stream(far, "GET", stream_url(sid, rid), last_event_id=f"{rid}:5") as tail:
            resumed = await tail.rest()
        await sender.rest()

    assert (start.event, start.json["status"]) == ("start", "streaming")
    assert names(watched)[-1] == "done"
    check_delta_ids(watched, rid)
    assert delta_text(watched) == delta_text(sender.seen) == REPLY * 2
    assert watched[-1].json == sender.seen[-1].json
    assert delta_text(resumed) == (REPLY * 2)[5:]


async def test_another_users_chat_cannot_be_sent_to_attached_or_stopped(
    turn_stack: TurnStack, api: httpx.AsyncClient, fake: FakeUpstream
) -> None:
    """G7: bob gets 404 for alice's chat and reply, as for ids that do not exist, and his
    attempts never reach the model. Ids are per user: bob's own new chat under the same id is
    his alone, and its prompt holds nothing of alice's."""
    sid, body = new_id(), turn_body("alice's secret", session={})
    rid = reply_id_of(body)
    await send_turn(api, sid, body)
    alices = await get_session(api, sid)

    async with turn_stack.client(turn_stack.bob) as bob:
        answers = [
            await bob.get(stream_url(sid, rid)),
            await bob.post(f"/api/sessions/{sid}/messages/{rid}/cancel"),
        ]
        replay = {"message": body["message"]}
        for attempt in (replay, turn_body("bob was here")):
            async with open_turn(bob, sid, attempt) as stream:
                answers.append(stream.response)
                await stream.response.aread()
        assert [(r.status_code, r.json()["code"]) for r in answers] == [(404, "not_found")] * 4
        assert fake.stats().chat_requests == 1

        own = await send_turn(bob, sid, turn_body("bob's own chat", session={}))
    assert own[0].json["seq"] == 1 and names(own)[-1] == "done"
    assert fake.requests[-1]["messages"] == [{"role": "user", "content": "bob's own chat"}]
    assert await get_session(api, sid) == alices


async def test_session_field_on_an_existing_chat_creates_nothing_and_changes_nothing(
    api: httpx.AsyncClient,
) -> None:
    """``session`` creates a chat when it is absent; on an existing chat it is ignored, so a
    client that always sends it gets its turn (not a 409) and the chat keeps its title."""
    sid = new_id()
    assert (await api.put(f"/api/sessions/{sid}", json={"title": "Kept"})).status_code == 201
    body = {"message": {"id": new_id(), "content": "hi"}, "session": {"title": "Other"}}
    async with api.stream("POST", f"/api/sessions/{sid}/turns", json=body) as response:
        assert response.status_code == 200
        async for _ in response.aiter_lines():
            pass
    session = (await api.get(f"/api/sessions/{sid}")).json()
    assert session["title"] == "Kept"
    assert [m["role"] for m in session["messages"]] == ["user", "assistant"]
