"""``GET /api/models``: the models of every configured provider, and each provider's state
(issue 8, item 1), so a bad key or a gateway that is down is said, not hidden."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from chatkeep.api.deps import CurrentUser
from chatkeep.api.schemas import ModelsList
from chatkeep.providers.registry import Providers

router = APIRouter(prefix="/api", tags=["models"])


@router.get("/models", response_model=ModelsList)
async def list_models(request: Request, user: CurrentUser) -> dict[str, Any]:
    """Listing asks a provider again when its check is due (every minute while it is fine,
    with a growing backoff while it fails), so one that comes back needs no restart."""
    providers: Providers = request.app.state.turns.providers
    models = await providers.list_models()
    health = {p.name: p.health.status for p in providers.all}
    return {
        "models": [
            {
                "id": providers.public_id(m.provider, m.id),
                "provider": m.provider,
                "name": providers.public_id(m.provider, m.id) if not m.is_demo else m.name,
                "is_demo": m.is_demo,
                "kind": m.kind,
                "upstream_id": m.id,
                "available": health[m.provider].state in ("ok", "unknown"),
            }
            for m in models
        ],
        "default": providers.default_id(),
        "providers": [
            {
                "name": name,
                "state": status.state,
                "message": status.message,
                "checked_at": status.checked_at,
            }
            for name, status in health.items()
        ],
    }
