"""G10: /metrics counts created vs replayed writes and conflicts; /healthz and /readyz tell
liveness from readiness (the database answers)."""

from __future__ import annotations

import re

import httpx
import pytest

from support.factories import new_id
from support.stack import Stack


def sample(metrics: str, name: str, **labels: str) -> float:
    """The value of one sample of the Prometheus text format (0 if absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in metrics.splitlines():
        match = re.match(r"^(\w+)(?:\{(.*)\})? (\S+)$", line)
        if match and match[1] == name:
            found = ",".join(sorted((match[2] or "").split(","))) if match[2] else ""
            if found == wanted:
                return float(match[3])
    return 0.0


async def test_metrics_count_created_replayed_and_conflicting_writes(
    stack: Stack, api: httpx.AsyncClient
) -> None:
    async def writes(outcome: str, resource: str) -> float:
        text = (await api.get("/metrics")).text
        return sample(text, "chatkeep_writes_total", outcome=outcome, resource=resource)

    before = {
        (o, r): await writes(o, r)
        for o in ("created", "replayed", "conflict")
        for r in ("session", "message")
    }
    sid, mid = new_id(), new_id()
    for _ in range(3):  # one created, two replayed
        assert (await api.put(f"/api/sessions/{sid}", json={"title": "t"})).status_code in (
            200,
            201,
        )
    assert (await api.put(f"/api/sessions/{sid}", json={"title": "other"})).status_code == 409
    for _ in range(2):
        body = {"role": "user", "content": "hi"}
        assert (await api.put(f"/api/sessions/{sid}/messages/{mid}", json=body)).is_success
    conflict = await api.put(
        f"/api/sessions/{sid}/messages/{mid}", json={"role": "user", "content": "x"}
    )
    assert conflict.status_code == 409

    expected = {
        ("created", "session"): 1,
        ("replayed", "session"): 2,
        ("conflict", "session"): 1,
        ("created", "message"): 1,
        ("replayed", "message"): 1,
        ("conflict", "message"): 1,
    }
    for key, delta in expected.items():
        assert await writes(*key) - before[key] == delta, key
    text = (await api.get("/metrics")).text
    assert "chatkeep_request_seconds_bucket" in text
    assert "chatkeep_save_failures_total" in text


async def test_healthz_and_readyz_answer(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.url) as anonymous:
        assert (await anonymous.get("/healthz")).json() == {"status": "ok"}
        ready = await anonymous.get("/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "ready"


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
async def test_readyz_is_503_when_the_database_is_gone(stack: Stack, db_url, postgres_cluster):
    """Liveness stays up, readiness says the database does not answer (problem+json 503)."""
    postgres_cluster.drop_database(db_url.rsplit("/", 1)[1])
    async with httpx.AsyncClient(base_url=stack.url) as anonymous:
        assert (await anonymous.get("/healthz")).status_code == 200
        ready = await anonymous.get("/readyz")
    assert ready.status_code == 503
    assert ready.headers["content-type"].startswith("application/problem+json")
    assert ready.json()["code"] == "unavailable"
    assert "Traceback" not in ready.text
