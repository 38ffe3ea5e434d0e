"""Stopping a reply: deleting its chat wins over it (G5, TC-7.3), and Stop cancels it keeping
the text it has, in the process that generates it or from another one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from turnkit import (
    TurnStack,
    all_messages,
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
from support.sse import delta_text, names, open_stream

LONG = "".join(f"token{n} " for n in range(200))
# How soon the model must be hung up on once its reply is deleted or cancelled, also when the
# request reached another server process (its checkpoint writer ticks every 0.05 s here): far
# below the reply's own length (about 2 s at the knobs below) and the upstream timeout (10 s).
PROMPT_S = 2.0


def cancel_url(sid: str, rid: str) -> str:
    return f"/api/sessions/{sid}/messages/{rid}/cancel"


async def hold(fake: FakeUpstream, before_first_token: bool) -> None:
    """The model either holds its first token or is mid-reply when the test strikes."""
    if before_first_token:
        fake.set(hang=True)
    else:
        fake.set(reply=LONG, chunk_chars=8, token_interval_s=0.01)


async def reached(stream: Any, fake: FakeUpstream, before_first_token: bool) -> None:
    if before_first_token:
        await stream.until("start")
        await wait_upstream_open(fake)
    else:
        await stream.until("delta")


async def assert_deleted_for_good(
    stack: TurnStack, api: httpx.AsyncClient, sid: str, body: dict[str, Any]
) -> None:
    """No row of the chat is left, and every later read or write of it answers 410 gone."""
    ids = [body["message"]["id"], reply_id_of(body)]
    left = await stack.db_rows(
        "SELECT m.id FROM messages m JOIN sessions s ON s.pk = m.session_pk WHERE s.id = :sid",
        sid=sid,
    )
    assert left == []
    assert await stack.db_rows(
        "SELECT count(*) FROM messages WHERE id IN (:a, :b)", a=ids[0], b=ids[1]
    ) == [(0,)]
    later = [
        await api.get(f"/api/sessions/{sid}"),
        await api.post(cancel_url(sid, ids[1])),
        await api.get(stream_url(sid, ids[1])),
        await api.put(
            f"/api/sessions/{sid}/messages/{new_id()}", json={"role": "user", "content": "x"}
        ),
    ]
    for again in (body, turn_body("a late turn"), turn_body("recreate it", session={})):
        async with open_turn(api, sid, again) as stream:
            later.append(stream.response)
            await stream.response.aread()
    assert [(r.status_code, r.json()["code"]) for r in later] == [(410, "gone")] * len(later)


@pytest.mark.parametrize(
    "before_first_token", [False, True], ids=["mid-reply", "before-first-token"]
)
async def test_deleting_the_chat_mid_stream_ends_the_stream_and_leaves_nothing(
    turn_stack: TurnStack,
    api: httpx.AsyncClient,
    other_api: httpx.AsyncClient,
    fake: FakeUpstream,
    before_first_token: bool,
) -> None:
    """TC-7.3, G5: deleting the chat while its reply streams ends the stream with an error of
    code session_deleted, hangs up on the model at once, and leaves no row of the chat; the
    chat stays gone for every later request, a retry of the very turn included."""
    await hold(fake, before_first_token)
    sid, body = new_id(), turn_body("doomed", session={})

    async with open_turn(api, sid, body) as stream:
        await reached(stream, fake, before_first_token)
        assert (await other_api.delete(f"/api/sessions/{sid}")).status_code == 204
        rest = await stream.rest()

    assert names(rest)[-1] == "error" and set(names(rest)[:-1]) <= {"delta"}
    assert rest[-1].json["code"] == "session_deleted"
    stats = await fake.wait_for(lambda s: s.abandoned == 1, timeout=PROMPT_S)
    assert stats.completed == 0
    await assert_deleted_for_good(turn_stack, api, sid, body)


@pytest.mark.parametrize(
    "before_first_token",
    [
        False,
        True,
    ],
    ids=["mid-reply", "before-first-token"],
)
async def test_deleting_the_chat_on_another_server_stops_its_generation(
    turn_stack: TurnStack,
    fake: FakeUpstream,
    start_stack: Callable[..., TurnStack],
    before_first_token: bool,
) -> None:
    """G5 with several server processes: the delete reaches a process that does not run the
    generation; the one that does stops at once, ending its stream with session_deleted and
    hanging up on the model, whether or not the model has sent a token yet. A tab attached
    through the deleting process is told too."""
    generating, deleting = turn_stack, start_stack()
    await hold(fake, before_first_token)
    sid, body = new_id(), turn_body("doomed elsewhere", session={})
    rid = reply_id_of(body)

    async with generating.client() as api, deleting.client() as elsewhere:
        try:
            async with (
                open_turn(api, sid, body) as stream,
                open_stream(elsewhere, "GET", stream_url(sid, rid)) as attached,
            ):
                await reached(stream, fake, before_first_token)
                await attached.until("start")
                assert (await elsewhere.delete(f"/api/sessions/{sid}")).status_code == 204
                watched = await attached.rest(timeout=PROMPT_S)
                rest = await stream.rest(timeout=PROMPT_S)
            await fake.wait_for(lambda s: s.abandoned == 1, timeout=PROMPT_S)
        finally:
            generating.stop_generations()

        assert names(watched)[-1] == "error"
        assert watched[-1].json["code"] == "session_deleted"
        assert names(rest)[-1] == "error"
        assert rest[-1].json["code"] == "session_deleted"
        assert fake.stats().completed == 0
        await assert_deleted_for_good(generating, elsewhere, sid, body)


async def test_cancel_mid_stream_keeps_the_partial_text(
    api: httpx.AsyncClient, other_api: httpx.AsyncClient, fake: FakeUpstream
) -> None:
    """Stop: the reply ends ``cancelled`` with exactly the text the client was sent, the stream
    ends with an error of code cancelled, the model is hung up on, and the next send is
    accepted at once (no 409 generation_in_progress)."""
    await hold(fake, before_first_token=False)
    sid, body = new_id(), turn_body("stop me", session={})
    rid = reply_id_of(body)

    async with open_turn(api, sid, body) as stream:
        await stream.until("delta")
        response = await other_api.post(cancel_url(sid, rid))
        await stream.rest()
    events = stream.seen

    assert response.status_code == 200, response.text
    cancelled = response.json()
    assert cancelled["status"] == "cancelled"
    assert 0 < len(cancelled["content"]) < len(LONG) and LONG.startswith(cancelled["content"])
    assert names(events)[-1] == "error"
    assert events[-1].json["code"] == "cancelled"
    assert events[-1].json["reply"] == cancelled == await stored(api, sid, rid)
    assert delta_text(events) == cancelled["content"]
    stats = await fake.wait_for(lambda s: s.abandoned == 1, timeout=PROMPT_S)
    assert stats.completed == 0

    fake.set(reply="Next answer", token_interval_s=0)
    after = await send_turn(api, sid, turn_body("and now?"))
    assert names(after)[-1] == "done" and delta_text(after) == "Next answer"

    async with open_stream(api, "GET", stream_url(sid, rid)) as attached:
        replay = await attached.rest()
    assert names(replay) == ["start", "delta", "error"]
    assert delta_text(replay) == cancelled["content"]
    assert replay[-1].json["code"] == "cancelled"


async def test_cancel_before_the_first_token_keeps_an_empty_reply(
    api: httpx.AsyncClient, fake: FakeUpstream
) -> None:
    await hold(fake, before_first_token=True)
    sid, body = new_id(), turn_body("never mind", session={})
    rid = reply_id_of(body)

    async with open_turn(api, sid, body) as stream:
        await reached(stream, fake, before_first_token=True)
        response = await api.post(cancel_url(sid, rid))
        rest = await stream.rest()

    assert (response.json()["status"], response.json()["content"]) == ("cancelled", "")
    assert names(rest) == ["error"] and rest[0].json["code"] == "cancelled"
    await fake.wait_for(lambda s: s.abandoned == 1, timeout=PROMPT_S)
    user = await stored(api, sid, body["message"]["id"])
    assert user["status"] == "complete"


async def test_cancel_of_a_finished_reply_returns_it_unchanged(
    turn_stack: TurnStack, api: httpx.AsyncClient, fake: FakeUpstream
) -> None:
    """Stop that arrives after the end changes nothing; another user's or an unknown id is a
    404, as if it did not exist (G7)."""
    sid, body = new_id(), turn_body("done already", session={})
    rid = reply_id_of(body)
    events = await send_turn(api, sid, body)
    user, done = events[0].json, events[-1].json

    for _ in range(2):
        response = await api.post(cancel_url(sid, rid))
        assert (response.status_code, response.json()) == (200, done)
    assert await stored(api, sid, rid) == done

    async with turn_stack.client(turn_stack.bob) as bob:
        assert (await bob.post(cancel_url(sid, rid))).status_code == 404
    assert (await api.post(cancel_url(sid, new_id()))).status_code == 404
    assert await all_messages(api, sid) == [user, done]


@pytest.mark.parametrize(
    "before_first_token",
    [
        False,
        True,
    ],
    ids=["mid-reply", "before-first-token"],
)
async def test_cancel_on_another_server_stops_its_generation(
    turn_stack: TurnStack,
    fake: FakeUpstream,
    start_stack: Callable[..., TurnStack],
    before_first_token: bool,
) -> None:
    """Stop pressed in a tab served by another process: the generating process stops at once,
    keeps the text, ends its stream with cancelled, and hangs up on the model."""
    generating, cancelling = turn_stack, start_stack()
    await hold(fake, before_first_token)
    sid, body = new_id(), turn_body("stop me elsewhere", session={})
    rid = reply_id_of(body)

    async with generating.client() as api, cancelling.client() as elsewhere:
        try:
            async with open_turn(api, sid, body) as stream:
                await reached(stream, fake, before_first_token)
                response = await elsewhere.post(cancel_url(sid, rid))
                await stream.rest(timeout=PROMPT_S)
            await fake.wait_for(lambda s: s.abandoned == 1, timeout=PROMPT_S)
        finally:
            generating.stop_generations()

        assert response.json()["status"] == "cancelled"
        events = stream.seen
        assert names(events)[-1] == "error" and events[-1].json["code"] == "cancelled"
        final = await stored(api, sid, rid)
        assert final["status"] == "cancelled"
        assert final["content"] == delta_text(events) == events[-1].json["reply"]["content"]
