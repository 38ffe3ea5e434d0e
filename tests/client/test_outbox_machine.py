"""Hypothesis: the outbox against a real server through the fault proxy (SPEC 6.1, TC-6.3).

Any interleaving of appends to two chats, the network going down and up, answers lost after the
server stored the write, process restarts (a new ``Client`` on the same outbox file) and flushes
leaves, once everything is flushed, exactly the messages written: each once, each chat's in the
order they were written, nothing left pending. Only SQLite: the outbox's correctness does not
depend on the server's database, and each example costs real round trips.
"""

from __future__ import annotations

from pathlib import Path

import httpx
from hypothesis import settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from hypothesis.strategies import sampled_from
from sdkkit import SdkStack, message_rows

import chatkeep
from support.fault_proxy import FaultProxy


class OutboxMachine(RuleBasedStateMachine):
    def __init__(self, stack: SdkStack, proxy: FaultProxy, path: Path) -> None:
        super().__init__()
        self.stack, self.proxy, self.path = stack, proxy, path
        path.unlink(missing_ok=True)
        proxy.up()
        self.online = True
        self.ck = self._client()
        self.written: dict[str, list[str]] = {}

    def _client(self) -> chatkeep.Client:
        # No retries and a new connection per request: each fault meets exactly one attempt.
        transport = httpx.HTTPTransport(limits=httpx.Limits(max_keepalive_connections=0))
        return chatkeep.Client(
            base_url=self.proxy.url,
            api_key=self.stack.alice.key,
            outbox=self.path,
            max_retries=0,
            timeout=10,
            transport=transport,
        )

    @initialize()
    def two_chats(self) -> None:
        for n in range(2):
            self.written[self.ck.sessions.create(title=f"chat {n}").id] = []

    @rule(chat=sampled_from([0, 1]))
    def append(self, chat: int) -> None:
        sid = list(self.written)[chat]
        message = self.ck.messages.append(sid, role="user", content="hello")
        if not self.online:
            assert message.status == "queued"
        self.written[sid].append(message.id)

    @precondition(lambda self: self.online)
    @rule(chat=sampled_from([0, 1]))
    def append_whose_answer_is_lost(self, chat: int) -> None:
        self.proxy.cut_next(0)
        self.append(chat)

    @rule()
    def go_down(self) -> None:
        self.proxy.down()
        self.online = False

    @rule()
    def go_up(self) -> None:
        self.proxy.up()
        self.online = True

    @rule()
    def restart(self) -> None:
        self.ck.close()
        self.ck = self._client()

    @precondition(lambda self: self.online)
    @rule()
    def flush(self) -> None:
        self.ck.outbox.flush()

    @invariant()
    def never_a_duplicate_nor_out_of_order(self) -> None:
        for sid, mids in self.written.items():
            stored = [r[0] for r in message_rows(self.stack.db_url, sid)]
            assert len(stored) == len(set(stored))
            assert stored == mids[: len(stored)], "stored out of order or unexpected"

    def teardown(self) -> None:
        self.proxy.up()
        self.ck.outbox.flush()
        for sid, mids in self.written.items():
            assert [r[0] for r in message_rows(self.stack.db_url, sid)] == mids
        assert self.ck.outbox.pending() == [] and self.ck.outbox.failed() == []
        self.ck.close()


def test_outbox_loses_nothing_and_duplicates_nothing(
    sdk_stack: SdkStack, proxy: FaultProxy, tmp_path: Path
) -> None:
    """TC-6.3 under any interleaving of the faults above."""
    run_state_machine_as_test(
        lambda: OutboxMachine(sdk_stack, proxy, tmp_path / "outbox.sqlite"),
        settings=settings(max_examples=8, stateful_step_count=12, deadline=None),
    )
