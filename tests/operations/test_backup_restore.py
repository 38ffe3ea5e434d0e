"""Backup and restore under load (SPEC 6.2; docs/operations.md).

Clients keep appending messages while a backup is taken: ``chatkeep backup`` on SQLite, and on
PostgreSQL the very ``pg_dump``/``pg_restore`` commands docs/operations.md gives. The backup is
restored into an empty place, a server is started on it, and a set checker (support.checker)
compares it with the clients' log: every message acknowledged before the backup began is there,
exactly once and exactly as sent, nothing is there that no client sent, and ``chatkeep audit``
finds nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from chatkeep.settings import Settings
from support.checker import History
from support.factories import Account, make_accounts, new_id
from support.postgres import find_bindir
from support.server import REPO, ServerThread

WRITERS = 6


def chatkeep(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chatkeep.cli", *args],
        env={**os.environ, **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def env_for(db_url: str, data_dir: Path) -> dict[str, str]:
    return {"CHATKEEP_DATABASE_URL": db_url, "CHATKEEP_DATA_DIR": str(data_dir)}


class Load:
    """Writers appending messages, each as its own user to its own chat (one user opening six
    chats at once would be a session spike for the audit), logging what was acknowledged when."""

    def __init__(self, url: str, accounts: list[Account]) -> None:
        self.url, self.accounts = url, accounts
        self.history = History()
        self.acked_at: dict[str, float] = {}
        self.sessions: list[tuple[Account, str]] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self.write, args=(a,), daemon=True) for a in accounts
        ]

    def write(self, account: Account) -> None:
        sid = new_id()
        with httpx.Client(base_url=self.url, headers=account.headers, timeout=30) as http:
            assert http.put(f"/api/sessions/{sid}", json={"title": "load"}).status_code == 201
            with self.lock:
                self.sessions.append((account, sid))
            parent: str | None = None
            while not self.stop.is_set():
                mid, text = new_id(), f"line {uuid.uuid4().hex}"
                with self.lock:
                    self.history.attempt(mid, text)
                body = {"role": "user", "content": text, "parent_id": parent}
                response = http.put(f"/api/sessions/{sid}/messages/{mid}", json=body)
                if response.status_code in (200, 201):
                    with self.lock:
                        self.history.ack(mid, text)
                        self.acked_at[mid] = time.monotonic()
                    parent = mid

    def wait_for(self, acks: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.acked_at) < acks:
            assert time.monotonic() < deadline, f"only {len(self.acked_at)} writes acknowledged"
            time.sleep(0.02)


def pg_command(name: str) -> str:
    bindir = find_bindir()
    assert bindir is not None
    return str(bindir / name)


def libpq(db_url: str) -> str:
    return make_url(db_url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.mark.slow
async def test_a_backup_taken_under_write_load_restores_whole(
    db_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    writers = list((await make_accounts(db_url, *(f"w{i}" for i in range(WRITERS)))).values())
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=db_url,
        demo_model=True,
        ollama_autodetect=False,
        rate_limit_per_minute=0,
    )
    server = ServerThread(settings).start()
    load = Load(server.url, writers)
    backup = tmp_path / "backup.file"
    restored_dir = tmp_path / "restored"
    try:
        for thread in load.threads:
            thread.start()
        load.wait_for(60)
        began = time.monotonic()
        if settings.is_sqlite:
            done = chatkeep(env_for(db_url, settings.data_dir), "backup", str(backup))
            assert done.returncode == 0, done.stderr
            assert "backup written" in done.stderr
        else:  # docs/operations.md, "PostgreSQL"
            dump = [pg_command("pg_dump"), "--format=custom", f"--file={backup}", libpq(db_url)]
            subprocess.run(dump, check=True, timeout=300, capture_output=True)
        ended = time.monotonic()
        load.wait_for(len(load.acked_at) + 30)  # the server kept serving writes throughout
    finally:
        load.stop.set()
        for thread in load.threads:
            thread.join(timeout=30)
        server.stop()
    during = [m for m, at in load.acked_at.items() if began <= at <= ended]

    if settings.is_sqlite:
        restored_url = f"sqlite+aiosqlite:///{restored_dir / 'chatkeep.db'}"
        env = {"CHATKEEP_DATABASE_URL": "", "CHATKEEP_DATA_DIR": str(restored_dir)}
        done = chatkeep(env, "restore", str(backup))
        assert done.returncode == 0, done.stderr
        again = chatkeep(env, "restore", str(backup))  # never over an existing store
        assert again.returncode == 1 and "already exists" in again.stderr
    else:
        cluster = request.getfixturevalue("postgres_cluster")
        restored_url = cluster.create_database(f"r_{uuid.uuid4().hex[:12]}")
        restore = [pg_command("pg_restore"), "--no-owner", "--no-privileges", "--exit-on-error"]
        subprocess.run([*restore, "-d", libpq(restored_url), str(backup)], check=True, timeout=300)
        env = env_for(restored_url, restored_dir)
        # ``chatkeep backup``/``restore`` wrap the same tools, refusing a non-empty target.
        again_url = cluster.create_database(f"r_{uuid.uuid4().hex[:12]}")
        wrapped = tmp_path / "wrapped.dump"
        done = chatkeep(env_for(restored_url, restored_dir), "backup", str(wrapped))
        assert done.returncode == 0, done.stderr
        done = chatkeep(env_for(again_url, restored_dir), "restore", str(wrapped))
        assert done.returncode == 0, done.stderr
        done = chatkeep(env_for(again_url, restored_dir), "restore", str(wrapped))
        assert done.returncode == 1 and "not empty" in done.stderr
        assert chatkeep(env_for(again_url, restored_dir), "audit").returncode == 0

    audit = chatkeep(env, "audit", "--json")
    assert audit.returncode == 0, audit.stdout + audit.stderr

    # The restored store serves, with the writers' keys, what they had acknowledged.
    restored = ServerThread(
        Settings(
            data_dir=restored_dir,
            database_url=restored_url,
            demo_model=True,
            ollama_autodetect=False,
            rate_limit_per_minute=0,
        )
    ).start()
    rows: list[tuple[str, object]] = []
    try:
        for account, sid in load.sessions:
            with httpx.Client(base_url=restored.url, headers=account.headers, timeout=30) as http:
                page = http.get(f"/api/sessions/{sid}/messages", params={"limit": 1000})
                assert page.status_code == 200, page.text
                rows += [(m["id"], m["content"]) for m in page.json()["messages"]]
    finally:
        restored.stop()
    stored = {key for key, _ in rows}
    # What was acknowledged after the backup began may or may not be in it; nothing before may
    # be missing: judge those as acknowledged, the rest as attempted.
    judged = History()
    for key, item in load.history.items.items():
        at = load.acked_at.get(str(key))
        if at is not None and at < began:
            judged.ack(key, item.value)
        else:
            judged.attempt(key, item.value)
    verdict = judged.check(rows)
    assert verdict.ok, verdict
    before = [m for m, at in load.acked_at.items() if at < began]
    assert len(before) >= 60 and set(before) <= stored
    print(
        f"{len(before)} acknowledged before the backup, {len(during)} while it ran, "
        f"{len(stored)} restored"
    )
