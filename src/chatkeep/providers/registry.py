"""Every configured provider behind one lookup: which models exist, and who serves a model id."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence

from chatkeep.providers.base import ModelInfo, Provider
from chatkeep.providers.demo import DemoProvider
from chatkeep.providers.ollama import OllamaProvider, detect
from chatkeep.providers.openai_compat import OpenAICompatProvider
from chatkeep.settings import Settings


class UnknownModel(Exception):
    """A model id that no provider offers. Not a ``ProviderError``: nothing upstream failed,
    the request itself is wrong."""

    def __init__(self, model_id: str | None) -> None:
        super().__init__(f"unknown model {model_id!r}" if model_id else "no model is available")
        self.model_id = model_id


def _check_unique(names: Iterable[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            # "provider:model" ids name a provider, so two of the same name would be ambiguous.
            raise ValueError(f"two model providers are named {name!r}; give each its own name")
        seen.add(name)


class Providers:
    """Model ids are the upstreams' own (``gpt-4o``); where two providers offer the same id the
    first one wins, and ``provider:model`` reaches any provider's model explicitly."""

    def __init__(self, providers: Sequence[Provider], *, default_model: str = "") -> None:
        _check_unique(p.name for p in providers)
        self._providers = {p.name: p for p in providers}
        self._default = default_model
        self._models: list[ModelInfo] = []
        self._by_id: dict[str, ModelInfo] = {}

    @classmethod
    async def from_settings(cls, settings: Settings) -> Providers:
        """The providers that the settings name, a local Ollama if one answers, and the demo
        model last; the model list is fetched once, so ``resolve`` works right away."""
        configs = settings.all_openai_providers()
        _check_unique([c.name for c in configs] + (["demo"] if settings.demo_model else []))
        timeout = settings.upstream_timeout_s
        found: list[Provider] = [
            OpenAICompatProvider(
                name=c.name,
                base_url=c.base_url,
                api_key=c.api_key,
                models=c.models,
                timeout_s=timeout,
            )
            for c in configs
        ]
        ollama = settings.ollama_url.rstrip("/")
        # An Ollama the settings already name (by name or address) is not added a second time.
        configured = any(c.name == "ollama" or c.base_url.startswith(ollama) for c in configs)
        if settings.ollama_autodetect and ollama and not configured and await detect(ollama):
            found.append(OllamaProvider(url=ollama, timeout_s=timeout))
        if settings.demo_model:
            found.append(DemoProvider())
        providers = cls(found, default_model=settings.default_model)
        await providers.list_models()
        return providers

    async def list_models(self) -> list[ModelInfo]:
        """All providers' models, demo last; also refreshes the listing that ``resolve`` uses."""
        listings = await asyncio.gather(*(p.list_models() for p in self._providers.values()))
        by_id: dict[str, ModelInfo] = {}
        for listing in listings:
            for info in listing:
                by_id.setdefault(info.id, info)
        self._by_id = by_id
        self._models = sorted(by_id.values(), key=lambda info: info.is_demo)
        return list(self._models)

    def resolve(self, model_id: str | None) -> tuple[Provider, str]:
        """The provider for ``model_id`` and the id to send it; None means the default model.

        A plain id must be in the last listing. ``provider:model`` is taken at its word when the
        provider exists, even if its listing missed the model (say, the upstream was down when
        it was fetched): the upstream itself then says whether the model exists.
        """
        if not model_id:
            if self._default:
                return self.resolve(self._default)
            if not self._models:
                raise UnknownModel(None)
            model_id = self._models[0].id
        info = self._by_id.get(model_id)
        if info is not None:
            return self._providers[info.provider], info.id
        # Checked after the plain ids, because Ollama's ids ("llama3:8b") contain colons too.
        name, colon, rest = model_id.partition(":")
        if colon and rest and name in self._providers:
            return self._providers[name], rest
        raise UnknownModel(model_id)

    async def aclose(self) -> None:
        await asyncio.gather(*(p.aclose() for p in self._providers.values()))
