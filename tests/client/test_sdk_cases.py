"""The source report's cases at the SDK level, each test body run for ``Client`` and
``AsyncClient`` alike (``ck`` / ``make_client``), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sdkkit import SdkStack, message_rows, session_count

import chatkeep
from support.factories import new_id
from support.fault_proxy import FaultProxy


def test_double_send_creates_one_session(ck: Any, sdk_stack: SdkStack) -> None:
    """TC-1.2: the same create sent twice (a double click, a retry) is one session; the second
    answer is the first one replayed."""
    sid = new_id()
    first = ck.sessions.create(id=sid, title="Trip", model="demo")
    second = ck.sessions.create(id=sid, title="Trip", model="demo")
    assert first.id == second.id == sid and second.status == "saved"
    assert session_count(sdk_stack.db_url, sid) == 1
    assert [s.id for s in ck.sessions.list()].count(sid) == 1


def test_rapid_concurrent_double_send_of_a_turn_is_one_session_and_one_generation(
    sdk_stack: SdkStack,
) -> None:
    """TC-1.2 with real concurrency: ten threads send the same first turn of a new chat (the
    session created in the same request): one session, one user message, one model call."""
    sid, mid, rid = new_id(), new_id(), new_id()
    replies: list[str] = []
    errors: list[BaseException] = []

    def send() -> None:
        with chatkeep.Client(base_url=sdk_stack.url, api_key=sdk_stack.alice.key) as ck:
            try:
                reply = ck.turns.send(
                    sid, "Message 1", id=mid, reply_id=rid, session={"title": "New chat"}
                )
                replies.append(reply.content)  # type: ignore[arg-type]
            except chatkeep.Conflict as exc:  # a replay racing the live generation
                errors.append(exc)

    threads = [threading.Thread(target=send) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert set(replies) == {"Echo: Message 1"}
    assert session_count(sdk_stack.db_url, sid) == 1
    assert [r[0] for r in message_rows(sdk_stack.db_url, sid)] == [mid, rid]
    assert sdk_stack.fake.stats().chat_requests == 1


async def test_async_double_send_is_one_session(sdk_stack: SdkStack) -> None:
    """TC-1.2 for AsyncClient: twenty concurrent creates of one id leave one row."""
    sid = new_id()
    async with chatkeep.AsyncClient(base_url=sdk_stack.url, api_key=sdk_stack.alice.key) as ck:
        made = await asyncio.gather(*(ck.sessions.create(id=sid, title="x") for _ in range(20)))
    assert {s.id for s in made} == {sid}
    assert session_count(sdk_stack.db_url, sid) == 1


def test_failed_save_is_kept_and_shown_queued(
    make_client: Callable[..., Any], proxy: FaultProxy, tmp_path: Path, sdk_stack: SdkStack
) -> None:
    """TC-2.3: a save that cannot reach the server does not raise or vanish: it comes back
    ``queued`` (the SDK's "Failed to save" indicator), sessions.get shows it, a flush sends it."""
    ck = make_client(base_url=proxy.url, outbox=tmp_path / "outbox.sqlite", max_retries=1)
    s = ck.sessions.create(title="Saved")
    proxy.down()
    m = ck.messages.append(s.id, role="user", content="Test message")
    assert m.status == "queued" and m.seq is None
    assert [e.id for e in ck.outbox.pending()] == [m.id]
    proxy.up()
    shown = ck.sessions.get(s.id)
    assert [(x.id, x.status) for x in shown.messages] == [(m.id, "queued")]
    assert ck.outbox.flush() == 1
    assert [r[0] for r in message_rows(sdk_stack.db_url, s.id)] == [m.id]
    assert ck.sessions.get(s.id).messages[0].status == "complete"


def test_optimistic_message_survives_a_refetch(
    make_client: Callable[..., Any], proxy: FaultProxy, tmp_path: Path
) -> None:
    """TC-4.1: a refetch of the session does not overwrite the client's own queued message;
    it stays, after the server's messages, until the server confirms it."""
    ck = make_client(base_url=proxy.url, outbox=tmp_path / "outbox.sqlite", max_retries=0)
    s = ck.sessions.create(title="Cache")
    saved = ck.messages.append(s.id, role="user", content="Existing")
    proxy.down()
    optimistic = ck.messages.append(s.id, role="user", content="Optimistic")
    proxy.up()
    for _ in range(3):  # refetches
        got = ck.sessions.get(s.id)
        assert [(m.id, m.text, m.status) for m in got.messages] == [
            (saved.id, "Existing", "complete"),
            (optimistic.id, "Optimistic", "queued"),
        ]


def test_refetch_after_an_unconfirmed_save_shows_each_message_once(
    make_client: Callable[..., Any], proxy: FaultProxy, tmp_path: Path, sdk_stack: SdkStack
) -> None:
    """TC-4.3: the server stored the message but its answer was lost, so the client still holds
    it queued: the merge by id shows it once (the server's copy), and the flush that follows is
    a replay that adds no row."""
    ck = make_client(base_url=proxy.url, outbox=tmp_path / "o.sqlite", max_retries=0, fresh=True)
    s = ck.sessions.create(title="Merge")
    existing = ck.messages.append(s.id, role="user", content="Existing")
    proxy.cut_next(0)  # the request reaches the server; its answer never comes back
    lost = ck.messages.append(s.id, role="assistant", content="Optimistic")
    assert lost.status == "queued"
    got = ck.sessions.get(s.id)
    assert [(m.id, m.status) for m in got.messages] == [
        (existing.id, "complete"),
        (lost.id, "complete"),
    ]
    assert ck.outbox.flush() == 1
    assert [r[0] for r in message_rows(sdk_stack.db_url, s.id)] == [existing.id, lost.id]


def test_batch_saves_every_message_in_one_request(ck: Any, sdk_stack: SdkStack) -> None:
    """TC-5.1: three assistant messages in one atomic batch, in order."""
    s = ck.sessions.create(title="Batch")
    saved = ck.messages.append_many(
        s.id, [{"role": "assistant", "content": f"Response {n}"} for n in (1, 2, 3)]
    )
    assert [m.text for m in saved] == ["Response 1", "Response 2", "Response 3"]
    assert [m.seq for m in saved] == [1, 2, 3]
    assert [r[0] for r in message_rows(sdk_stack.db_url, s.id)] == [m.id for m in saved]


def test_partial_batch_failure_saves_nothing_and_says_which_item(
    ck: Any, sdk_stack: SdkStack
) -> None:
    """TC-5.2: a batch whose second item is refused saves none of it (G9) and says which item
    failed; sending the others again saves exactly them, once."""
    s = ck.sessions.create(title="Partial")
    taken = ck.messages.append(s.id, role="user", content="already here")
    items = [
        {"id": new_id(), "role": "assistant", "content": "one"},
        {"id": taken.id, "role": "assistant", "content": "a different payload"},
        {"id": new_id(), "role": "assistant", "content": "three"},
    ]
    with pytest.raises(chatkeep.Conflict) as caught:
        ck.messages.append_many(s.id, items)
    results = caught.value.problem["results"]
    assert [r["status"] for r in results][1] == 409
    assert [r[0] for r in message_rows(sdk_stack.db_url, s.id)] == [taken.id]
    retried = ck.messages.append_many(s.id, [items[0], items[2]])
    assert [m.id for m in retried] == [items[0]["id"], items[2]["id"]]
    assert len(message_rows(sdk_stack.db_url, s.id)) == 3


def test_user_message_is_saved_immediately(
    make_client: Callable[..., Any], tmp_path: Path, sdk_stack: SdkStack
) -> None:
    """TC-5.3: with an outbox configured, a user message that can reach the server is saved
    before append returns, never parked in a batch or a queue."""
    ck = make_client(outbox=tmp_path / "outbox.sqlite")
    s = ck.sessions.create(title="Now")
    m = ck.messages.append(s.id, role="user", content="User message")
    assert m.status == "complete" and m.seq == 1
    assert ck.outbox.pending() == []
    assert message_rows(sdk_stack.db_url, s.id) == [(m.id, 1, "user")]


def test_401_refreshes_credentials_once(
    make_client: Callable[..., Any], sdk_stack: SdkStack
) -> None:
    """TC-6.1: a 401 calls on_unauthorized once and retries with the new key; a refresh that
    does not help raises AuthenticationError without calling it again."""
    calls: list[int] = []

    def refresh() -> str:
        calls.append(1)
        return sdk_stack.alice.key

    ck = make_client(api_key="ck_expired", on_unauthorized=refresh)
    assert ck.sessions.create(title="Refreshed").status == "saved"
    assert len(calls) == 1
    ck.sessions.create(title="Again")  # the new key is kept
    assert len(calls) == 1
    streaming = make_client(api_key="ck_expired", on_unauthorized=refresh)
    reply = streaming.turns.send(new_id(), "hi", session={})  # the stream's own request
    assert reply.content == "Echo: hi" and len(calls) == 2

    stale: list[int] = []

    def still_wrong() -> str:
        stale.append(1)
        return "ck_still_wrong"

    bad = make_client(api_key="ck_expired", on_unauthorized=still_wrong)
    with pytest.raises(chatkeep.AuthenticationError) as caught:
        bad.sessions.create(title="Nope")
    assert caught.value.status == 401 and len(stale) == 1


def test_timeouts_are_retried_with_backoff_and_leave_one_session(
    make_client: Callable[..., Any], proxy: FaultProxy, sdk_stack: SdkStack
) -> None:
    """TC-6.2: the first two attempts time out (the server did the work; its answers are held
    back past the client's timeout); the third succeeds, and there is one session."""
    # Generous: a healthy answer on a loaded machine never takes 2 s; the held ones take 6.
    ck = make_client(base_url=proxy.url, timeout=2.0, fresh=True)
    proxy.delay_next(6.0, count=2)
    sid = new_id()
    session = ck.sessions.create(id=sid, title="New Chat")
    assert session.id == sid
    assert proxy.stats().connections == 3
    assert session_count(sdk_stack.db_url, sid) == 1


def test_offline_writes_are_queued_and_sent_in_order_when_back(
    make_client: Callable[..., Any], proxy: FaultProxy, tmp_path: Path, sdk_stack: SdkStack
) -> None:
    """TC-6.3: offline, a new chat and its messages are queued on disk (they survive the
    process); back online, the next write sends them first, in order, then itself."""
    outbox = tmp_path / "outbox.sqlite"
    ck = make_client(base_url=proxy.url, outbox=outbox, max_retries=1)
    proxy.down()
    s = ck.sessions.create(title="Offline")
    assert s.status == "queued"
    queued = [ck.messages.append(s.id, role="user", content=f"Offline {n}") for n in range(3)]
    assert {m.status for m in queued} == {"queued"}
    offline_view = ck.sessions.get(s.id)  # from the outbox alone
    assert offline_view.status == "queued"
    assert [m.id for m in offline_view.messages] == [m.id for m in queued]
    ck.close()

    again = make_client(base_url=proxy.url, outbox=outbox)  # a new process, the same outbox
    assert [e.kind for e in again.outbox.pending()] == ["session", "message", "message", "message"]
    proxy.up()
    last = again.messages.append(s.id, role="user", content="Online")
    assert last.status == "complete" and last.seq == 4
    assert [r[0] for r in message_rows(sdk_stack.db_url, s.id)] == [m.id for m in queued] + [
        last.id
    ]
    assert again.outbox.pending() == [] and again.outbox.failed() == []


def test_queued_write_refused_with_4xx_moves_to_failed(
    make_client: Callable[..., Any], proxy: FaultProxy, tmp_path: Path
) -> None:
    """A queued write the server refuses is never dropped silently nor retried forever."""
    ck = make_client(base_url=proxy.url, outbox=tmp_path / "outbox.sqlite", max_retries=0)
    s = ck.sessions.create(title="Refused")
    taken = ck.messages.append(s.id, role="user", content="first")
    proxy.down()
    clash = ck.messages.append(s.id, role="user", content="other payload", id=taken.id)
    assert clash.status == "queued"
    proxy.up()
    assert ck.outbox.flush() == 0
    failed = ck.outbox.failed()
    assert [(e.id, e.problem["code"]) for e in failed] == [(taken.id, "idempotency_conflict")]
    assert ck.outbox.flush() == 0 and ck.outbox.pending() == []


@pytest.mark.parametrize("status_code", [404, 409, 410, 422])
def test_answers_that_would_not_change_are_not_retried(
    make_client: Callable[..., Any], proxy: FaultProxy, status_code: int
) -> None:
    """SPEC 6.1: 404, 409, 410 and 422 raise at once: one request reaches the server (a new
    connection per request, so the proxy counts them)."""
    ck = make_client(base_url=proxy.url, max_retries=5, fresh=True)
    s = ck.sessions.create(title="x")
    if status_code == 410:
        ck.sessions.delete(s.id)
    actions: dict[int, tuple[type[Exception], Callable[[], Any]]] = {
        404: (chatkeep.NotFound, lambda: ck.sessions.get(new_id())),
        409: (chatkeep.Conflict, lambda: ck.sessions.create(id=s.id, title="another title")),
        410: (chatkeep.Gone, lambda: ck.messages.append(s.id, role="user", content="late")),
        422: (
            chatkeep.UnprocessableEntity,
            lambda: ck.messages.append(s.id, role="user", content=[]),
        ),
    }
    kind, action = actions[status_code]
    before = proxy.stats().connections
    with pytest.raises(kind) as caught:
        action()
    assert caught.value.status == status_code and caught.value.code
    assert proxy.stats().connections == before + 1
