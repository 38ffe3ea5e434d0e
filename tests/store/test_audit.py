"""``chatkeep audit`` (G10): clean data passes; each kind of damage is found by its check."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta

import httpx
from sqlalchemy import Connection, insert, update

from chatkeep.store.audit import run_audit
from chatkeep.store.engine import Database
from chatkeep.store.tables import ChatSession, Message, utcnow
from support.factories import new_id

S, M = ChatSession.__table__, Message.__table__


def audit_cli(db_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CHATKEEP_DATABASE_URL": db_url}
    return subprocess.run(
        [sys.executable, "-m", "chatkeep.cli", "audit", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def _chat(api: httpx.AsyncClient, n: int) -> tuple[str, list[str]]:
    sid, ids = new_id(), []
    assert (await api.put(f"/api/sessions/{sid}", json={})).status_code == 201
    for i in range(n):
        mid = new_id()
        role = "user" if i % 2 == 0 else "assistant"
        r = await api.put(
            f"/api/sessions/{sid}/messages/{mid}", json={"role": role, "content": f"m{i}"}
        )
        assert r.status_code == 201
        ids.append(mid)
    return sid, ids


async def test_audit_is_clean_on_data_written_through_the_api(stack, api, db_url) -> None:
    """Monitoring section of the source report: no duplicates, no spikes, no gaps."""
    await _chat(api, 4)
    await _chat(api, 2)
    result = audit_cli(db_url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert '"ok": true' in result.stdout


async def test_audit_finds_each_kind_of_damage(stack, api, db_url) -> None:
    sid, ids = await _chat(api, 3)
    doomed, _ = await _chat(api, 1)  # with the one above and below: 3 sessions within 5 s
    assert (await api.put(f"/api/sessions/{new_id()}", json={})).status_code == 201
    db = Database(db_url)
    try:

        def damage(conn: Connection) -> None:
            session = conn.execute(S.select().where(S.c.id == sid)).one()
            first = conn.execute(M.select().where(M.c.id == ids[0])).one()
            base = {k: getattr(first, k) for k in first._mapping.keys() if k != "pk"}
            # A duplicate of the first message (same parent, content, within 1 s) at seq 10:
            # also a seq gap, since last_seq stays 3.
            conn.execute(insert(M).values({**base, "id": new_id(), "seq": 10}))
            # A message whose parent is not in the session.
            conn.execute(
                insert(M).values(
                    {**base, "id": new_id(), "seq": 11, "parent_id": new_id(), "content": "x"}
                )
            )
            # A reply left streaming by a process that died long ago.
            conn.execute(
                update(M)
                .where(M.c.id == ids[2])
                .values(status="streaming", lease_expires_at=utcnow() - timedelta(hours=1))
            )
            conn.execute(update(S).where(S.c.pk == session.pk).values(active_leaf_id=new_id()))
            # A session marked deleted whose messages stayed behind.
            conn.execute(update(S).where(S.c.id == doomed).values(deleted_at=utcnow()))

        await db.write(damage)
        found = {f.check: f.rows for f in await db.read(run_audit)}
    finally:
        await db.dispose()
    for check in (
        "duplicate_messages",
        "session_spikes",
        "seq_gaps",
        "broken_parents",
        "broken_leaves",
        "stale_generations",
        "orphans",
    ):
        assert found[check], f"{check} found nothing"
    result = audit_cli(db_url)
    assert result.returncode == 1
    assert '"ok": false' in result.stdout
