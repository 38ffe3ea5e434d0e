"""The outbox across processes (SPEC 6.1): several processes flushing one outbox file at once
send each queued write once and in order; a flush killed with SIGKILL half-way is finished by
the next one, duplicating nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sdkkit import SdkStack, message_rows

import chatkeep
from support.fault_proxy import FaultProxy

CHILD = """
import sys, chatkeep
with chatkeep.Client(base_url=sys.argv[1], api_key=sys.argv[2], outbox=sys.argv[3]) as ck:
    print(ck.outbox.flush(), flush=True)
"""


def queue_offline(
    stack: SdkStack, proxy: FaultProxy, outbox: Path, per_chat: int
) -> dict[str, list[str]]:
    """Two chats made online, then ``per_chat`` messages to each queued while offline."""
    with chatkeep.Client(
        base_url=proxy.url, api_key=stack.alice.key, outbox=outbox, max_retries=0
    ) as ck:
        chats = {ck.sessions.create(title=f"p{n}").id: [] for n in range(2)}
        proxy.down()
        for n in range(per_chat):
            for sid, mids in chats.items():
                mids.append(ck.messages.append(sid, role="user", content=f"m{n}").id)
        assert len(ck.outbox.pending()) == 2 * per_chat
    proxy.up()
    return chats


def child(stack: SdkStack, proxy: FaultProxy, outbox: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, proxy.url, stack.alice.key, str(outbox)],
        stdout=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("sdk_stack", ["sqlite"], indirect=True)
def test_processes_flushing_one_outbox_send_each_write_once_in_order(
    sdk_stack: SdkStack, proxy: FaultProxy, tmp_path: Path
) -> None:
    outbox = tmp_path / "outbox.sqlite"
    chats = queue_offline(sdk_stack, proxy, outbox, per_chat=20)
    children = [child(sdk_stack, proxy, outbox) for _ in range(3)]
    with chatkeep.Client(base_url=proxy.url, api_key=sdk_stack.alice.key, outbox=outbox) as ck:
        sent = ck.outbox.flush()
        for proc in children:
            out, _ = proc.communicate(timeout=60)
            assert proc.returncode == 0
            sent += int(out)
        assert ck.outbox.flush() == 0 and ck.outbox.pending() == []
    assert sent == 40
    for sid, mids in chats.items():
        assert [r[0] for r in message_rows(sdk_stack.db_url, sid)] == mids


@pytest.mark.parametrize("sdk_stack", ["sqlite"], indirect=True)
def test_a_flush_killed_half_way_is_finished_without_duplicates(
    sdk_stack: SdkStack, proxy: FaultProxy, tmp_path: Path
) -> None:
    outbox = tmp_path / "outbox.sqlite"
    chats = queue_offline(sdk_stack, proxy, outbox, per_chat=15)
    first = next(iter(chats))
    proxy.set(delay_s=0.1)  # a slow network, so the kill lands mid-flush
    proc = child(sdk_stack, proxy, outbox)
    deadline = time.monotonic() + 30
    while len(message_rows(sdk_stack.db_url, first)) < 4:
        assert time.monotonic() < deadline and proc.poll() is None, "the flush never got going"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    proxy.set(reset=True)
    with chatkeep.Client(base_url=proxy.url, api_key=sdk_stack.alice.key, outbox=outbox) as ck:
        rest = ck.outbox.flush()
        assert 0 < rest < 30 and ck.outbox.pending() == []
    for sid, mids in chats.items():
        assert [r[0] for r in message_rows(sdk_stack.db_url, sid)] == mids
