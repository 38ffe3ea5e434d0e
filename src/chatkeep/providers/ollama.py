"""A local Ollama, found by itself (SPEC 7): its OpenAI-compatible ``/v1`` for chat, and its own
``/api/tags`` for the list of models, which names every pulled model (``/v1/models`` may not,
on older versions)."""

from __future__ import annotations

import httpx

from chatkeep.providers.openai_compat import LISTING_TIMEOUT_S, OpenAICompatProvider


async def detect(url: str, timeout: float = 0.3) -> bool:
    """Whether an Ollama answers at ``url``; quick, because it runs at every start-up."""
    try:
        async with httpx.AsyncClient(timeout=timeout) as client:
            response = await client.get(f"{url.rstrip('/')}/api/tags")
            return response.status_code == 200 and "models" in response.json()
    except (httpx.HTTPError, ValueError):
        return False


class OllamaProvider(OpenAICompatProvider):
    def __init__(self, *, url: str, timeout_s: float = 120.0, name: str = "ollama") -> None:
        self.url = url.rstrip("/")
        super().__init__(name=name, base_url=f"{self.url}/v1", timeout_s=timeout_s)

    async def _fetch_model_ids(self) -> list[str]:
        async with httpx.AsyncClient(timeout=LISTING_TIMEOUT_S) as client:
            response = await client.get(f"{self.url}/api/tags")
            response.raise_for_status()
            return [str(model["name"]) for model in response.json()["models"]]
