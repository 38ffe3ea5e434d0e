"""A local Ollama, found by itself (SPEC 7): its OpenAI-compatible ``/v1`` for chat, and its own
``/api/tags`` for the list of models, which names every pulled model (``/v1/models`` may not,
on older versions) and their family (a ``bert`` family is an embedding model)."""

from __future__ import annotations

from typing import Any

import httpx

from chatkeep.providers.health import Health
from chatkeep.providers.openai_compat import (
    FIRST_TOKEN_TIMEOUT_S,
    IDLE_TIMEOUT_S,
    OpenAICompatProvider,
)


async def detect(url: str, timeout: float = 0.3) -> bool:
    """Whether an Ollama answers at ``url``; quick, because it runs at every start-up."""
    try:
        async with httpx.AsyncClient(timeout=timeout) as client:
            response = await client.get(f"{url.rstrip('/')}/api/tags")
            return response.status_code == 200 and "models" in response.json()
    except (httpx.HTTPError, ValueError):
        return False


class OllamaProvider(OpenAICompatProvider):
    def __init__(
        self,
        *,
        url: str,
        name: str = "ollama",
        first_token_timeout_s: float = FIRST_TOKEN_TIMEOUT_S,
        idle_timeout_s: float = IDLE_TIMEOUT_S,
        health: Health | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        super().__init__(
            name=name,
            base_url=f"{self.url}/v1",
            first_token_timeout_s=first_token_timeout_s,
            idle_timeout_s=idle_timeout_s,
            health=health,
        )

    async def _fetch_models(self) -> list[dict[str, Any]]:
        body = await self._get_json(f"{self.url}/api/tags")
        return [{**m, "id": str(m["name"])} for m in body["models"] if isinstance(m, dict)]
