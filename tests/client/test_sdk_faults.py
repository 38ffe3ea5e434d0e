"""The SDK through a broken network (tests/support/fault_proxy.py): retries never double a
write (G1) and a resumed stream never doubles a character or a generation (G6)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sdkkit import SdkStack, db_rows, message_rows

from support.fault_proxy import FaultProxy

REPLY = " ".join(f"word{n:03d}" for n in range(150))


def write_through_faults(
    ck: Any, proxy: FaultProxy, stack: SdkStack, *, chats: int, appends: int, rate: float
) -> None:
    """``chats`` session creates, then ``appends`` appends spread over them, with ``rate`` of
    the connections dropped or cut (before, during or after the server's answer); then every
    write must be stored once, in order, with contiguous seqs."""
    proxy.set(drop_rate=rate / 2, cut_rate=rate / 2, cut_after=(0, 400))
    sessions = [ck.sessions.create(title=f"chaos {n}") for n in range(chats)]
    written: dict[str, list[str]] = {s.id: [] for s in sessions}
    for n in range(appends):
        sid = sessions[n % chats].id
        written[sid].append(ck.messages.append(sid, role="user", content=f"m{n}").id)
    stats = proxy.stats()
    assert stats.dropped + stats.cut >= (chats + appends) * rate / 2, stats  # faults happened
    ids = ",".join(f"'{sid}'" for sid in written)
    assert len(db_rows(stack.db_url, f"SELECT pk FROM sessions WHERE id IN ({ids})")) == chats
    for sid, mids in written.items():
        rows = message_rows(stack.db_url, sid)
        assert [r[0] for r in rows] == mids
        assert [r[1] for r in rows] == list(range(1, len(mids) + 1))


def test_thirty_percent_faults_leave_exactly_the_rows_written(
    make_client: Callable[..., Any], proxy: FaultProxy, sdk_stack: SdkStack
) -> None:
    """50 session creates and 200 appends at 30% faults: exactly those rows (G1)."""
    ck = make_client(base_url=proxy.url, max_retries=12, fresh=True)
    write_through_faults(ck, proxy, sdk_stack, chats=50, appends=200, rate=0.3)


@pytest.mark.chaos
def test_chaos_half_the_connections_fail(
    make_client: Callable[..., Any], proxy: FaultProxy, sdk_stack: SdkStack
) -> None:
    """The long run for ``make chaos``: 500 creates and 3,000 appends at 50% faults."""
    ck = make_client(base_url=proxy.url, max_retries=30, deadline=300, fresh=True)
    write_through_faults(ck, proxy, sdk_stack, chats=500, appends=3000, rate=0.5)


def test_a_stream_cut_twice_yields_the_upstream_text_once_with_one_model_call(
    make_client: Callable[..., Any], proxy: FaultProxy, sdk_stack: SdkStack
) -> None:
    """G6: the turn's connection and then the resumed one are cut mid-reply; the client
    resumes with Last-Event-ID and reads the upstream's exact text, which was generated once."""
    sdk_stack.fake.set(reply=REPLY, chunk_chars=3, token_interval_s=0.002)
    ck = make_client(base_url=proxy.url, fresh=True)
    s = ck.sessions.create(title="Cut")
    proxy.cut_next(2500)  # the turn: after message, start and a few deltas
    proxy.cut_next(1200)  # the first resume, mid-way too
    kinds: list[str] = []
    with ck.turns.stream(s.id, "Tell me a long story") as stream:
        texts = []
        for event in stream:
            kinds.append(event.type)
            if event.type == "delta":
                texts.append(event.text)
        reply = stream.final_reply()
    assert "".join(texts) == REPLY
    assert reply.content == REPLY and reply.status == "complete"
    assert proxy.stats().cut == 2
    assert kinds.count("message") == kinds.count("start") == kinds.count("done") == 1
    assert sdk_stack.fake.stats().chat_requests == 1


def test_text_deltas_and_send(ck: Any, sdk_stack: SdkStack) -> None:
    """``text_deltas`` yields the text, ``final_reply`` the stored reply; ``send`` returns it."""
    s = ck.sessions.create(title="Plain")
    with ck.turns.stream(s.id, "Hello") as stream:
        text = "".join(stream.text_deltas)
        reply = stream.final_reply()
    assert text == "Echo: Hello" == reply.content
    again = ck.turns.send(s.id, "Again")
    assert again.content == "Echo: Again" and again.parent_id is not None
    path = ck.sessions.get(s.id).messages
    assert [m.role for m in path] == ["user", "assistant", "user", "assistant"]
    assert [m.seq for m in ck.messages.list(s.id)] == [1, 2, 3, 4]
    assert any(m.id == "fake-model" for m in ck.models.list())
