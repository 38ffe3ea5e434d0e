"""``chatkeep search QUERY [--json]`` as a subprocess (SPEC 6.2)."""

from __future__ import annotations

import json
import uuid

import pytest
from clikit import Cli

import chatkeep
from support.sdk_stack import SdkStack


@pytest.mark.parametrize("cli_stack", ["sqlite"], indirect=True)
def test_search_prints_a_table_or_json_lines(cli: Cli, cli_stack: SdkStack) -> None:
    word = f"okapi{uuid.uuid4().hex[:6]}"
    with chatkeep.Client(base_url=cli.url, api_key=cli.key) as ck:
        s = ck.sessions.create(title="Zoo trip")
        m = ck.messages.append(s.id, role="user", content=f"we saw an {word} today")
    table = cli.run("search", word)
    assert table.returncode == 0, table.stderr
    assert "Zoo trip" in table.stdout and s.id in table.stdout and word in table.stdout
    lines = cli.run("search", word, "--json")
    hits = [json.loads(line) for line in lines.stdout.splitlines()]
    assert [(h["session_id"], h["message_id"]) for h in hits] == [(s.id, m.id)]
    empty = cli.run("search", "-")
    assert empty.returncode == 1 and "Traceback" not in empty.stderr
