"""Disk trouble: a database that cannot store anything answers ``503 storage_unavailable`` (a
clear problem, never a 500), acknowledges nothing it did not store, and serves writes again
once the trouble is over, without a restart.

- SQLite: the data directory is on a small tmpfs that a filler file then fills to the last byte
  (skipped where this machine may not mount one); deleting the filler makes room again.
- PostgreSQL: the server is switched to read-only (``default_transaction_read_only``, reloaded
  into every open session) and back.

A writer keeps appending throughout; a set checker (support.checker) compares its log with the
final state: everything acknowledged is stored, nothing refused with 503 is.
"""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest

from chatkeep.settings import Settings
from support.checker import History
from support.factories import Account, make_accounts, new_id
from support.server import ServerThread


class Writer:
    """Appends messages to one chat until stopped, logging every answer."""

    def __init__(self, url: str, account: Account) -> None:
        self.url, self.account = url, account
        self.history = History()
        self.sid = new_id()
        self.answers: list[tuple[int, dict[str, Any]]] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        with httpx.Client(base_url=self.url, headers=self.account.headers, timeout=60) as http:
            assert http.put(f"/api/sessions/{self.sid}", json={}).status_code == 201
            while not self.stop.is_set():
                mid, text = new_id(), f"line {uuid.uuid4().hex} " + "x" * 2000
                body = {"role": "user", "content": text}
                try:
                    response = http.put(f"/api/sessions/{self.sid}/messages/{mid}", json=body)
                except httpx.HTTPError as exc:  # no answer: stored or not, at most once
                    with self.lock:
                        self.history.attempt(mid, text)
                        self.answers.append((0, {"error": repr(exc)}))
                    continue
                problem = {} if response.status_code < 300 else response.json()
                with self.lock:
                    self.answers.append((response.status_code, problem))
                    if response.status_code in (200, 201):
                        self.history.ack(mid, text)
                    elif response.status_code == 503:
                        self.history.refuse(mid, text)  # "nothing was saved"
                    else:
                        self.history.attempt(mid, text)

    def wait_for(self, what: str, predicate: Callable[[int, dict[str, Any]], bool]) -> None:
        """Until an answer after now satisfies ``predicate`` (deadline 60 s)."""
        with self.lock:
            start = len(self.answers)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with self.lock:
                if any(predicate(s, p) for s, p in self.answers[start:]):
                    return
            time.sleep(0.05)
        raise AssertionError(f"never saw {what}: {self.answers[-5:]}")


def storage_problem(status: int, problem: dict[str, Any]) -> bool:
    return status == 503 and problem.get("code") == "storage_unavailable"


def acknowledged(status: int, _problem: dict[str, Any]) -> bool:
    return status in (200, 201)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=12m", "chatkeep-test", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small file system here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(path: Path) -> None:
    """Write until the file system has no byte left."""
    chunk = b"\0" * 65536
    with open(path, "wb", buffering=0) as filler:  # unbuffered: close() has nothing to flush
        try:
            while filler.write(chunk):
                pass
        except OSError:  # ENOSPC: full
            pass


async def pg_system(db_url: str, sql: str) -> None:
    parts = urlsplit(db_url)
    conn = await asyncpg.connect(
        host=parts.hostname,
        port=parts.port,
        user=parts.username,
        database=parts.path.lstrip("/"),
        server_settings={"default_transaction_read_only": "off"},
    )
    try:
        await conn.execute(sql)
        await conn.execute("SELECT pg_reload_conf()")
    finally:
        await conn.close()


def serve(db_url: str, data_dir: Path) -> ServerThread:
    settings = Settings(
        data_dir=data_dir,
        database_url=db_url,
        demo_model=True,
        ollama_autodetect=False,
        rate_limit_per_minute=0,
    )
    return ServerThread(settings).start()


def final_check(writer: Writer, url: str) -> None:
    with httpx.Client(base_url=url, headers=writer.account.headers, timeout=60) as http:
        page = http.get(f"/api/sessions/{writer.sid}/messages", params={"limit": 1000})
        assert page.status_code == 200, page.text
        rows = [(m["id"], m["content"]) for m in page.json()["messages"]]
    verdict = writer.history.check(rows)
    assert verdict.ok, verdict
    statuses = {status for status, _ in writer.answers}
    assert 500 not in statuses, writer.answers


async def test_a_full_disk_answers_503_and_recovers_without_restart(
    small_disk: Path, tmp_path: Path
) -> None:
    db_url = f"sqlite+aiosqlite:///{small_disk / 'chatkeep.db'}"
    alice = (await make_accounts(db_url, "alice"))["alice"]
    server = serve(db_url, small_disk)
    writer = Writer(server.url, alice)
    try:
        writer.thread.start()
        writer.wait_for("a first write", acknowledged)
        fill(small_disk / "filler")
        writer.wait_for("a 503 storage_unavailable", storage_problem)
        with httpx.Client(base_url=server.url, headers=alice.headers) as http:
            assert http.get(f"/api/sessions/{writer.sid}").status_code == 200  # reads go on
        (small_disk / "filler").unlink()
        writer.wait_for("a write after room was made", acknowledged)
    finally:
        writer.stop.set()
        writer.thread.join(timeout=60)
    try:
        final_check(writer, server.url)
    finally:
        server.stop()


async def test_a_read_only_postgresql_answers_503_and_recovers(
    postgres_url: str, tmp_path: Path
) -> None:
    alice = (await make_accounts(postgres_url, "alice"))["alice"]
    server = serve(postgres_url, tmp_path / "data")
    writer = Writer(server.url, alice)
    try:
        writer.thread.start()
        writer.wait_for("a first write", acknowledged)
        await pg_system(postgres_url, "ALTER SYSTEM SET default_transaction_read_only = on")
        try:
            writer.wait_for("a 503 storage_unavailable", storage_problem)
        finally:
            await pg_system(postgres_url, "ALTER SYSTEM RESET default_transaction_read_only")
        writer.wait_for("a write after read-write again", acknowledged)
    finally:
        writer.stop.set()
        writer.thread.join(timeout=60)
    try:
        final_check(writer, server.url)
    finally:
        server.stop()
