"""Every resource of SPEC 6.1 against a real server, one test body for both clients: paging
iterators, update, delete, branches, cancel, and a turn that fails."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sdkkit import SdkStack

import chatkeep


def test_sessions_list_pages_through_everything(ck: Any) -> None:
    tag = uuid.uuid4().hex[:12]
    made = {ck.sessions.create(title=f"page {tag} {n}").id for n in range(130)}
    listed = [s.id for s in ck.sessions.list(q=tag)]
    assert len(listed) == 130 and set(listed) == made  # two pages of 100, each once


def test_update_delete_and_gone(ck: Any) -> None:
    s = ck.sessions.create(title="Before", model="demo")
    updated = ck.sessions.update(s.id, title="After", pinned=True)
    assert (updated.title, updated.pinned, updated.model) == ("After", True, "demo")
    assert s.id in [x.id for x in ck.sessions.list(pinned=True)]
    archived = ck.sessions.update(s.id, archived=True)
    assert archived.archived and s.id in [x.id for x in ck.sessions.list(archived=True)]
    ck.sessions.delete(s.id)
    with pytest.raises(chatkeep.Gone):
        ck.messages.append(s.id, role="user", content="too late")
    with pytest.raises(chatkeep.Gone):
        ck.sessions.get(s.id)


def test_created_at_keeps_an_imported_date(ck: Any) -> None:
    """SPEC 6.2 through the SDK: create, append and append_many carry a creation time."""
    then = datetime(2023, 11, 14, 22, 13, 20, 125000, tzinfo=UTC)
    s = ck.sessions.create(title="Imported", created_at=then)
    one = ck.messages.append(s.id, role="user", content="q", created_at=then)
    many = ck.messages.append_many(
        s.id, [{"role": "assistant", "content": "a", "created_at": then + timedelta(seconds=5)}]
    )
    assert s.created_at == one.created_at == then
    assert many[0].created_at == then + timedelta(seconds=5)
    assert ck.sessions.get(s.id).updated_at == then + timedelta(seconds=5)
    with pytest.raises(ValueError, match="time zone"):
        ck.messages.append(s.id, role="user", content="q", created_at=datetime(2023, 1, 1))


def test_branches_and_roots_by_parent_id(ck: Any) -> None:
    s = ck.sessions.create(title="Tree")
    a = ck.messages.append(s.id, role="user", content="a")
    b = ck.messages.append(s.id, role="assistant", content="b")
    c = ck.messages.append(s.id, role="assistant", content="c", parent_id=a.id)
    root = ck.messages.append(s.id, role="system", content="r", parent_id=None)
    assert (b.parent_id, c.parent_id, root.parent_id) == (a.id, a.id, None)
    every = list(ck.messages.list(s.id))
    assert [m.id for m in every] == [a.id, b.id, c.id, root.id]
    assert [m.id for m in ck.messages.list(s.id, after_seq=2)] == [c.id, root.id]
    path = ck.sessions.update(s.id, active_leaf_id=b.id)
    assert path.active_leaf_id == b.id
    assert [m.id for m in ck.sessions.get(s.id).messages] == [a.id, b.id]


def test_cancel_keeps_the_text(ck: Any, sdk_stack: SdkStack) -> None:
    sdk_stack.fake.set(reply="x" * 4000, chunk_chars=2, token_interval_s=0.01)
    s = ck.sessions.create(title="Stop")
    with ck.turns.stream(s.id, "go on") as stream:
        for event in stream:
            if event.type == "delta" and event.offset >= 20:
                break
        stopped = ck.turns.cancel(s.id, stream.reply_id)
    assert stopped.status == "cancelled" and stopped.text.startswith("x" * 20)
    deadline = time.monotonic() + 10
    while sdk_stack.fake.stats().active and time.monotonic() < deadline:
        time.sleep(0.02)


def test_a_failed_turn_raises_turn_error_with_the_stored_reply(
    ck: Any, sdk_stack: SdkStack
) -> None:
    sdk_stack.fake.set(fail_status=500)
    s = ck.sessions.create(title="Fails")
    with pytest.raises(chatkeep.TurnError) as caught:
        ck.turns.send(s.id, "hello")
    assert caught.value.code and caught.value.reply is not None
    assert caught.value.reply.status == "error"
    with ck.turns.stream(s.id, "again") as stream:
        assert stream.final_reply().status == "error"  # final_reply returns it, whatever it is


def test_a_second_turn_while_one_streams_is_a_conflict(ck: Any, sdk_stack: SdkStack) -> None:
    """G4 through the SDK: 409 generation_in_progress is raised, never retried into a second
    generation."""
    sdk_stack.fake.set(reply="y" * 2000, chunk_chars=2, token_interval_s=0.01)
    s = ck.sessions.create(title="One at a time")
    with ck.turns.stream(s.id, "first") as first:
        next(iter(first))
        with pytest.raises(chatkeep.Conflict) as caught:
            ck.turns.send(s.id, "second")
        assert caught.value.code == "generation_in_progress"
        ck.turns.cancel(s.id, first.reply_id)
    assert sdk_stack.fake.stats().chat_requests == 1
