"""Liveness, readiness (the database answers), and Prometheus metrics (G10)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess
from sqlalchemy import text

from chatkeep.api.deps import DbDep, SettingsDep
from chatkeep.problems import Unavailable

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(db: DbDep) -> dict[str, str]:
    try:
        await db.read(lambda conn: conn.execute(text("SELECT 1")))
    except Exception as exc:
        raise Unavailable("the database does not answer") from exc
    return {"status": "ready", "database": db.dialect_name}


@router.get("/metrics", response_class=Response)
async def metrics_endpoint(settings: SettingsDep) -> Response:
    # With several workers each process writes its samples to this directory.
    if settings.prometheus_multiproc_dir:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
