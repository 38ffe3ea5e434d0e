"""Hypothesis: the cache merge of ``sessions.get`` against a model (TC-4.1, TC-4.3).

The outbox is real (a SQLite file, reopened on "restart"); the server is a model that confirms,
refuses or lags. ``get`` runs in two steps like the real one, the queue read first and the
server's page later, with any other step in between (another process's flush confirming and
deleting an entry): whatever the interleaving, every message written is shown exactly once,
the server's messages first by seq, then the queued ones in the order they were written.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from chatkeep.client import _cache, _calls
from chatkeep.client._models import Message, OutboxEntry
from chatkeep.client._outbox import OutboxStore

SID = "00000000-0000-7000-8000-000000000001"


class CacheMachine(RuleBasedStateMachine):
    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        path.unlink(missing_ok=True)
        self.box = OutboxStore(path)
        self.server: list[Message] = []  # what the server holds, by seq
        self.written: list[str] = []  # every id the client wrote, in order
        self.refused: set[str] = set()
        self.sent: OutboxEntry | None = None  # the head entry, sent but not yet confirmed
        self.queue_snapshot: list[OutboxEntry] | None = None
        self.written_before_get: set[str] = set()

    def _entries(self) -> list[OutboxEntry]:
        return self.box.pending(SID)

    @rule()
    def add_optimistic(self) -> None:
        write = _calls.append_message(SID, None, {"role": "user", "content": "hi"})
        self.box.enqueue(write)
        self.written.append(write.id)

    @precondition(lambda self: self.sent is None)
    @rule()
    def server_receives_head(self) -> None:
        entries = self._entries()
        if entries:
            self.sent = entries[0]
            seq = len(self.server) + 1
            body = self.sent.body["json"]
            message = _calls.queued_message(SID, self.sent.id, body)
            self.server.append(message.model_copy(update={"seq": seq, "status": "complete"}))

    @precondition(lambda self: self.sent is not None)
    @rule()
    def confirm(self) -> None:
        assert self.sent is not None
        self.box.confirm(self.sent)
        self.sent = None

    @precondition(lambda self: self.sent is None)
    @rule()
    def server_refuses_head(self) -> None:
        entries = self._entries()
        if entries:
            self.box.fail(entries[0], {"status": 409, "code": "idempotency_conflict"})
            self.refused.add(entries[0].id)

    @rule()
    def restart(self) -> None:
        self.box.close()
        self.box = OutboxStore(self.path)

    @precondition(lambda self: self.queue_snapshot is None)
    @rule()
    def get_reads_queue(self) -> None:
        self.queue_snapshot = self._entries()
        self.written_before_get = set(self.written)

    @precondition(lambda self: self.queue_snapshot is not None)
    @rule()
    def get_reads_page(self) -> None:
        assert self.queue_snapshot is not None
        before = self.written_before_get  # what was written before this get began
        shown = _cache.merge(list(self.server), _cache.queued_messages(self.queue_snapshot))
        ids = [m.id for m in shown]
        assert len(ids) == len(set(ids)), "a message shown twice"
        missing = before - set(ids) - self.refused
        assert not missing, f"lost before the server confirmed: {missing}"
        confirmed = [m.id for m in shown if m.status == "complete"]
        assert confirmed == [m.id for m in self.server]
        assert ids[: len(confirmed)] == confirmed  # the server's first, by seq
        self.queue_snapshot = None

    def teardown(self) -> None:
        self.box.close()

    @invariant()
    def each_write_is_in_one_place(self) -> None:
        queued = {e.id for e in self._entries()}
        stored = {m.id for m in self.server}
        failed = {e.id for e in self.box.failed()}
        for mid in self.written:
            places = (mid in queued) + (mid in stored) + (mid in failed)
            in_flight = self.sent is not None and mid == self.sent.id
            assert places == (2 if in_flight else 1), mid


def test_cache_merge_never_duplicates_or_loses(tmp_path: Path) -> None:
    """TC-4.1, TC-4.3: any interleaving of adds, confirms, refusals, restarts and gets."""
    run_state_machine_as_test(
        lambda: CacheMachine(tmp_path / "outbox.sqlite"),
        settings=settings(max_examples=15, stateful_step_count=20, deadline=None),
    )
