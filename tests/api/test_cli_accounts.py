"""``chatkeep users add`` and ``chatkeep keys create`` as a script runs them (SPEC 6): the
password from standard input, the key alone on the last line, and plain errors with exit code 1.
The accounts they make are then used against a real server on the same database."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from chatkeep.settings import Settings
from chatkeep.store import users
from chatkeep.store.engine import Database
from support.factories import make_accounts_sync
from support.server import REPO, ServerThread

PASSWORD = "correct horse battery staple"


class Chatkeep:
    """The ``chatkeep`` command against the test database, stdin a pipe (not a terminal)."""

    def __init__(self, db_url: str, data_dir: Path) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CHATKEEP_")}
        self.env |= {
            "CHATKEEP_DATA_DIR": str(data_dir),
            "CHATKEEP_DATABASE_URL": db_url,
            "COLUMNS": "200",  # no line wrapping of messages by rich
        }

    def start(self, *args: str, stdin: str = "") -> Running:
        process = subprocess.Popen(
            [sys.executable, "-m", "chatkeep.cli", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
            cwd=REPO,
        )
        return Running(process, stdin)

    def __call__(self, *args: str, stdin: str = "") -> Result:
        return self.start(*args, stdin=stdin).result()


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class Running:
    """A started command; several can run side by side while Python imports."""

    process: subprocess.Popen[str]
    stdin: str

    def result(self) -> Result:
        stdout, stderr = self.process.communicate(self.stdin, timeout=60)
        return Result(self.process.returncode, stdout, stderr)


@pytest.fixture
def chatkeep(db_url: str, tmp_path: Path) -> Chatkeep:
    return Chatkeep(db_url, tmp_path / "data")


async def user_names(db_url: str) -> list[str]:
    db = Database(db_url)
    try:
        return [r["name"] for r in await db.read(users.list_users)]
    finally:
        await db.dispose()


def test_users_add_and_keys_create_make_working_credentials(
    chatkeep: Chatkeep, settings: Settings
) -> None:
    """The first account added becomes admin, the next does not; the password read from stdin
    signs in on the web; ``keys create`` prints a key alone on its last line of stdout, and
    that key signs in as its user at once."""
    first = chatkeep("users", "add", "root", stdin=PASSWORD + "\n")
    second = chatkeep("users", "add", "carol", stdin=PASSWORD + "\n")
    assert (first.returncode, second.returncode) == (0, 0), first.stderr + second.stderr
    assert "added admin root" in first.stderr
    assert "added user carol" in second.stderr

    keyed = chatkeep("keys", "create", "carol")
    assert keyed.returncode == 0, keyed.stderr
    key = keyed.stdout.splitlines()[-1]
    assert re.fullmatch(r"ck_[A-Za-z0-9_-]{20,}", key), keyed.stdout

    server = ServerThread(settings).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as web:
            for name, is_admin in (("root", True), ("carol", False)):
                signed_in = web.post("/api/auth/login", json={"name": name, "password": PASSWORD})
                assert signed_in.status_code == 200, signed_in.text
                assert signed_in.json()["user"] == {"name": name, "is_admin": is_admin}
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}) as sdk:
            assert sdk.get("/api/auth/status").json()["user"]["name"] == "carol"
            assert sdk.get("/api/sessions").status_code == 200
    finally:
        server.stop()


def test_bad_account_commands_exit_1_with_a_clear_message(chatkeep: Chatkeep, db_url: str) -> None:
    """A short password, a name already taken, or a key for nobody: exit code 1 and one plain
    line saying why, no traceback, and nothing created."""
    make_accounts_sync(db_url, "alice")
    running = {  # independent, so run side by side
        "8 to 1024 characters": chatkeep.start("users", "add", "dave", stdin="short\n"),
        "user alice exists": chatkeep.start("users", "add", "alice", stdin=PASSWORD + "\n"),
        "no user nobody": chatkeep.start("keys", "create", "nobody"),
    }
    for message, command in running.items():
        result = command.result()
        output = result.stdout + result.stderr
        assert result.returncode == 1, output
        assert message in result.stderr, output
        assert "Traceback" not in output
        assert "ck_" not in result.stdout
    assert asyncio.run(user_names(db_url)) == ["alice"]
