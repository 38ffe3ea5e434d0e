"""``chatkeep`` client commands as a subprocess (SPEC 6.2): chat from a pipe, sessions,
export in both formats, imports run twice, configuration, and clear errors (a message and exit
status 1, never a traceback, nothing half-imported)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from clikit import Cli, chatgpt_export, open_webui_export

import chatkeep
from chatkeep.cli.import_formats import derived_id, load_export
from support.sdk_stack import SdkStack

# Each run of the command costs a process start; only the import round trip, whose replays the
# server's database decides, runs on both databases.
SQLITE_ONLY = pytest.mark.parametrize("cli_stack", ["sqlite"], indirect=True)


def sdk(stack: SdkStack) -> chatkeep.Client:
    return chatkeep.Client(base_url=stack.url, api_key=stack.alice.key)


@SQLITE_ONLY
def test_piped_chat_prints_only_the_reply(cli: Cli, cli_stack: SdkStack) -> None:
    first = cli.run("chat", stdin="hello there\n")
    assert (first.returncode, first.stdout) == (0, "Echo: hello there\n"), first.stderr
    with sdk(cli_stack) as ck:
        newest = next(ck.sessions.list())
    again = cli.run("chat", newest.id[:13], stdin="and again")
    assert (again.returncode, again.stdout) == (0, "Echo: and again\n"), again.stderr
    with sdk(cli_stack) as ck:
        assert [m.text for m in ck.sessions.get(newest.id).messages] == [
            "hello there",
            "Echo: hello there",
            "and again",
            "Echo: and again",
        ]


@SQLITE_ONLY
def test_sessions_list_show_export_delete(cli: Cli, cli_stack: SdkStack, tmp_path: Path) -> None:
    with sdk(cli_stack) as ck:
        s = ck.sessions.create(title="Export me")
        ck.messages.append(s.id, role="user", content="# Heading\n\nsome *markdown*")
        ck.messages.append(s.id, role="assistant", content="a reply")
    listed = cli.run("sessions", "list", "--json")
    assert listed.returncode == 0
    assert s.id in [json.loads(line)["id"] for line in listed.stdout.splitlines()]
    shown = cli.run("sessions", "show", s.id)
    assert shown.returncode == 0 and "a reply" in shown.stdout

    as_json = cli.run("sessions", "export", s.id[:12], "--format", "json")
    body = json.loads(as_json.stdout)
    assert body["session"]["title"] == "Export me"
    assert [m["content"] for m in body["messages"]] == ["# Heading\n\nsome *markdown*", "a reply"]
    target = tmp_path / "chat.md"
    as_md = cli.run("sessions", "export", s.id, "--format", "markdown", "-o", str(target))
    assert as_md.returncode == 0 and as_md.stdout == ""
    text = target.read_text()
    assert text.startswith("# Export me") and "## User" in text and "## Assistant" in text

    refused = cli.run("sessions", "delete", s.id, stdin="n\n")
    assert refused.returncode == 1
    deleted = cli.run("sessions", "delete", s.id, "--yes")
    assert deleted.returncode == 0
    gone = cli.run("sessions", "show", s.id)
    assert gone.returncode == 1 and "Traceback" not in gone.stderr


def _state(stack: SdkStack, sid: str) -> tuple[object, ...]:
    with sdk(stack) as ck:
        session = ck.sessions.get(sid)
        every = [(m.id, m.parent_id, m.role, m.text, m.seq) for m in ck.messages.list(sid)]
    path = [m.text for m in session.messages]
    return session.title, session.active_leaf_id, session.updated_at, tuple(every), tuple(path)


def test_chatgpt_import_twice_changes_nothing(
    cli: Cli, cli_stack: SdkStack, tmp_path: Path
) -> None:
    """Branches stay branches, the current node is the active leaf, hidden system nodes, null
    roots and tool nodes are skipped, an absent image becomes a note; a second run is a no-op."""
    export = tmp_path / "conversations.json"
    export.write_text(json.dumps(chatgpt_export()))
    first = cli.run("import", str(export))
    assert first.returncode == 0, first.stderr
    assert "imported 2 chats (7 messages)" in first.stderr
    conv = "6a1b2c3d-0000-4000-8000-000000000001"
    sid = derived_id("chatgpt", conv)
    ids = {n: derived_id("chatgpt", conv, n) for n in ("u1", "a1", "a1b", "u2", "a2")}
    before = _state(cli_stack, sid)
    title, leaf, _, every, path = before
    assert title == "Lisbon" and leaf == ids["a2"]
    parents = {mid: parent for mid, parent, *_ in every}  # type: ignore[misc]
    assert parents == {
        ids["u1"]: None,
        ids["a1"]: ids["u1"],
        ids["a1b"]: ids["u1"],
        ids["u2"]: ids["a1"],
        ids["a2"]: ids["u2"],
    }
    assert path == (
        "Plan a day in Lisbon",
        "Start in **Alfama**.",
        "[image not included in the export: file-AbC123]\nWhich tram is this?",
        "That is tram 28.",
    )
    # The source's creation times are kept (SPEC 6.2), so the chat shows its original dates
    # and takes its original place in the sidebar: updated_at is its latest message's time.
    source = chatgpt_export()[0]
    with sdk(cli_stack) as ck:
        session = ck.sessions.get(sid)
        stored = {m.id: m.created_at for m in ck.messages.list(sid)}
    assert session.created_at == datetime.fromtimestamp(source["create_time"], UTC)
    expected = {
        ids[n]: datetime.fromtimestamp(source["mapping"][n]["message"]["create_time"], UTC)
        for n in ids
    }
    assert stored == expected
    assert session.updated_at == max(expected.values())
    second = cli.run("import", str(export))
    assert second.returncode == 0, second.stderr
    assert _state(cli_stack, sid) == before

    with sdk(cli_stack) as ck:  # a chat deleted after its import never comes back (G5)
        ck.sessions.delete(derived_id("chatgpt", "6a1b2c3d-0000-4000-8000-000000000002"))
    third = cli.run("import", str(export))
    assert third.returncode == 0 and "skipped 'Greeting'" in third.stderr, third.stderr
    assert _state(cli_stack, sid) == before


@SQLITE_ONLY
def test_a_chat_imported_without_times_is_still_a_replay(
    cli: Cli, cli_stack: SdkStack, tmp_path: Path
) -> None:
    """A file imported by a chatkeep that did not send the source's times: importing it again
    changes nothing rather than stopping at a 409 (the times of that import stay)."""
    source = chatgpt_export()[1]
    source["conversation_id"] = "6a1b2c3d-0000-4000-8000-00000000000a"  # not in other tests
    export = tmp_path / "conversations.json"
    export.write_text(json.dumps([source]))
    (greeting,) = load_export(export.read_bytes())
    with sdk(cli_stack) as ck:
        ck.sessions.create(id=greeting.id, title=greeting.title)
        old = [{**m.item(), "created_at": None} for m in greeting.messages]
        ck.messages.append_many(greeting.id, old)
    before = _state(cli_stack, greeting.id)
    done = cli.run("import", str(export))
    assert done.returncode == 0 and "imported 1 chats (2 messages)" in done.stderr, done.stderr
    assert _state(cli_stack, greeting.id) == before


@SQLITE_ONLY
def test_open_webui_import_keeps_branches_and_current_message(
    cli: Cli, cli_stack: SdkStack, tmp_path: Path
) -> None:
    export = tmp_path / "chat-export.json"
    export.write_text(json.dumps(open_webui_export()))
    for _ in range(2):
        done = cli.run("import", str(export))
        assert done.returncode == 0, done.stderr
    sid = derived_id("open-webui", "owui-chat-1")
    title, leaf, _, every, path = _state(cli_stack, sid)
    assert title == "Colours" and leaf == derived_id("open-webui", "owui-chat-1", "m3")
    assert path == ("Name a colour", "Green") and len(every) == 3  # type: ignore[arg-type]


@SQLITE_ONLY
def test_malformed_import_exits_1_and_imports_nothing(
    cli: Cli, cli_stack: SdkStack, tmp_path: Path
) -> None:
    broken_json = tmp_path / "broken.json"
    broken_json.write_text('[{"title": "x", "mapping": {')
    result = cli.run("import", str(broken_json))
    assert result.returncode == 1 and "not valid JSON" in result.stderr
    assert "Traceback" not in result.stderr

    half = chatgpt_export()
    half[1]["mapping"]["q"]["parent"] = "ans"  # a cycle in the second conversation
    half[1]["mapping"]["r"]["children"] = []
    bad = tmp_path / "cycle.json"
    bad.write_text(json.dumps(half))
    result = cli.run("import", str(bad))
    assert result.returncode == 1 and "nothing was imported" in result.stderr
    assert "Traceback" not in result.stderr
    with sdk(cli_stack) as ck:
        sid = derived_id("chatgpt", "6a1b2c3d-0000-4000-8000-000000000001")
        titles = [s.title for s in ck.sessions.list() if s.id == sid]
    assert titles in ([], ["Lisbon"])  # "Lisbon" only if an earlier test imported it


@SQLITE_ONLY
def test_wrong_key_and_unreachable_server_are_clear_errors(cli: Cli) -> None:
    wrong = Cli(cli.url, "ck_wrong", cli.home).run("sessions", "list")
    assert wrong.returncode == 1 and "refused the API key" in wrong.stderr
    assert "Traceback" not in wrong.stderr
    away = Cli("http://127.0.0.1:9", cli.key, cli.home).run("chat", stdin="hi")
    assert away.returncode == 1 and "cannot reach chatkeep" in away.stderr
    assert "Traceback" not in away.stderr and away.stdout == ""


@SQLITE_ONLY
def test_server_and_key_from_environment_and_config_file(cli: Cli) -> None:
    from_env = cli.run(
        "sessions", "list", flags=False, CHATKEEP_URL=cli.url, CHATKEEP_API_KEY=cli.key
    )
    assert from_env.returncode == 0, from_env.stderr
    config = cli.home / "config" / "chatkeep" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(f'url = "{cli.url}"\napi_key = "{cli.key}"\n')
    from_file = cli.run("chat", stdin="from the config", flags=False)
    assert (from_file.returncode, from_file.stdout) == (0, "Echo: from the config\n")
