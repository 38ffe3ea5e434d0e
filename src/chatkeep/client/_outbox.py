"""The outbox (SPEC 6.1): writes that could not reach the server, kept on disk until it
confirms them, so nothing a program wrote is lost to a network hiccup (the source report's
batcher dropped messages on one, TC-6.3).

One SQLite file, safe for several processes: every change is one short transaction (WAL,
``busy_timeout``), and one flusher at a time holds an advisory file lock. An entry is deleted only
after the server answered ``2xx``, so a flush killed half-way sends the rest next time and the
entry it had sent becomes a replay (``200``), never a second row (G1). Entries keep their order
(``position``); the client never lets a later write to a session overtake its queued ones.
"""

from __future__ import annotations

import fcntl
import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chatkeep.client._calls import Call, Write
from chatkeep.client._models import OutboxEntry

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    position   INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT NOT NULL,
    kind       TEXT NOT NULL,
    session_id TEXT NOT NULL,
    call       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    problem    TEXT,
    UNIQUE (kind, id)
);
CREATE INDEX IF NOT EXISTS outbox_session ON outbox (session_id, position);
"""


class OutboxStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_path = self.path.with_name(self.path.name + ".lock")
        # One connection, autocommit: every statement below is its own short transaction, so
        # other processes' writers wait at most a statement (busy timeout 30 s).
        self._conn = sqlite3.connect(
            self.path, timeout=30, isolation_level=None, check_same_thread=False
        )
        self._guard = threading.Lock()
        self._conn.execute("PRAGMA journal_mode=WAL")
        # FULL: a write reported queued survives a power loss too, like a 2xx from chatkeep.
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.executescript(SCHEMA)

    def close(self) -> None:
        with self._guard:
            self._conn.close()

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with self._guard:
            yield self._conn

    def enqueue(self, write: Write) -> None:
        """Keep a write; the same write queued twice (a retry of a queued call) is kept once."""
        with self._connect() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO outbox (id, kind, session_id, call, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (
                    write.id,
                    write.kind,
                    write.session_id,
                    json.dumps(write.call.to_json()),
                    datetime.now(UTC).isoformat(),
                ),
            )

    def _entries(self, where: str, args: tuple[Any, ...] = ()) -> list[OutboxEntry]:
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT position, id, kind, session_id, call, created_at, problem FROM outbox"
                f" WHERE {where} ORDER BY position",
                args,
            ).fetchall()
        return [
            OutboxEntry(
                position=row[0],
                id=row[1],
                kind=row[2],
                session_id=row[3],
                body=json.loads(row[4]),
                created_at=datetime.fromisoformat(row[5]),
                problem=json.loads(row[6]) if row[6] else None,
            )
            for row in rows
        ]

    def pending(self, session_id: str | None = None) -> list[OutboxEntry]:
        if session_id is None:
            return self._entries("problem IS NULL")
        return self._entries("problem IS NULL AND session_id = ?", (session_id,))

    def failed(self) -> list[OutboxEntry]:
        return self._entries("problem IS NOT NULL")

    def has_pending(self, session_id: str | None = None) -> bool:
        with self._connect() as conn:
            if session_id is None:
                row = conn.execute("SELECT 1 FROM outbox WHERE problem IS NULL LIMIT 1")
            else:
                row = conn.execute(
                    "SELECT 1 FROM outbox WHERE problem IS NULL AND session_id = ? LIMIT 1",
                    (session_id,),
                )
            return row.fetchone() is not None

    def confirm(self, entry: OutboxEntry) -> None:
        """The server has it: only now may the entry go."""
        with self._connect() as conn:
            conn.execute("DELETE FROM outbox WHERE position = ?", (entry.position,))

    def fail(self, entry: OutboxEntry, problem: dict[str, Any]) -> None:
        """Refused with a 4xx: kept with its problem for ``failed()``, never retried forever."""
        with self._connect() as conn:
            conn.execute(
                "UPDATE outbox SET problem = ? WHERE position = ?",
                (json.dumps(problem), entry.position),
            )

    @contextmanager
    def flushing(self) -> Iterator[bool]:
        """Whether this process may flush now: one flusher at a time across processes, so two
        never send the same queue at once (their replays would be harmless, but wasted)."""
        with open(self._lock_path, "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def entry_call(entry: OutboxEntry) -> Call:
    body = entry.body
    return Call(body["method"], body["path"], body.get("json"))
