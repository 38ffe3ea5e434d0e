"""``chatkeep chat`` in a pseudo-terminal (pexpect), the way a person uses it: a reply streams
in, ``/model``, ``/sessions``, ``/regenerate`` and ``/new`` work, and Ctrl-C stops a generation
and keeps its text, on the screen and in the store."""

from __future__ import annotations

import sys
import time

import pexpect
import pytest
from clikit import Cli

import chatkeep
from support.fake_upstream import FakeUpstream
from support.sdk_stack import SdkStack

LONG = " ".join(f"token{n}" for n in range(400))


def spawn(cli: Cli) -> pexpect.spawn:
    child = pexpect.spawn(
        sys.executable,
        ["-m", "chatkeep.cli", "--url", cli.url, "--api-key", cli.key, "chat"],
        env=cli.env(TERM="xterm"),
        encoding="utf-8",
        timeout=30,
        dimensions=(40, 160),
    )
    child.expect("you>")
    return child


@pytest.mark.parametrize("cli_stack", ["sqlite"], indirect=True)
def test_interactive_chat_commands_and_ctrl_c(
    cli: Cli, cli_stack: SdkStack, cli_fake: FakeUpstream
) -> None:
    child = spawn(cli)
    child.sendline("hello pty")
    child.expect("Echo: hello pty")
    child.expect("you>")

    child.sendline("/model")
    child.expect("fake-model")
    child.expect("you>")
    child.sendline("/sessions")
    child.expect("messages")
    child.expect("you>")

    cli_fake.set(reply="Another take")
    child.sendline("/regenerate")
    child.expect("Another take")
    child.expect("you>")

    child.sendline("/new")
    child.expect("new chat")
    child.expect("you>")
    cli_fake.set(reply=LONG, chunk_chars=6, token_interval_s=0.02)
    child.sendline("tell me everything")
    child.expect("token5 ")
    child.sendintr()  # Ctrl-C mid-reply
    child.expect(r"\(stopped\)")
    child.expect("you>")
    child.sendline("/quit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0

    with chatkeep.Client(base_url=cli.url, api_key=cli.key) as ck:
        newest = next(ck.sessions.list())
        reply = ck.sessions.get(newest.id).messages[-1]
        first = [s for s in ck.sessions.list() if s.id != newest.id][0]
        regenerated = [m for m in ck.messages.list(first.id) if m.role == "assistant"]
    assert reply.status == "cancelled"
    assert reply.text and LONG.startswith(reply.text) and reply.text != LONG
    assert [m.text for m in regenerated] == ["Echo: hello pty", "Another take"]
    deadline = time.monotonic() + 10
    while cli_fake.stats().active and time.monotonic() < deadline:
        time.sleep(0.05)
    assert cli_fake.stats().active == 0  # the generation was stopped, not left running
