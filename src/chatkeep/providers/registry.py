"""Every configured provider behind one lookup: which models exist, who serves a model id, which
model is the default, and how each provider is doing."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence

from chatkeep.providers.base import ModelInfo, Provider
from chatkeep.providers.demo import DemoProvider
from chatkeep.providers.health import Health
from chatkeep.providers.ollama import OllamaProvider, detect
from chatkeep.providers.openai_compat import OpenAICompatProvider
from chatkeep.settings import ProviderConfig, Settings


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
    """With one real provider, model ids are the upstream's own (``gpt-4o``). With several, the
    listed ids are ``provider:model`` (issue 8, item 7), so the same model name on two gateways
    stays two choices; a plain id still reaches the first provider that lists it."""

    def __init__(self, providers: Sequence[Provider], *, default_model: str = "") -> None:
        _check_unique(p.name for p in providers)
        self._providers = {p.name: p for p in providers}
        self._default = default_model
        real = [p for p in providers if not isinstance(p, DemoProvider)]
        self.qualified = len(real) > 1
        self._first_real = real[0] if real else None
        self._models: list[ModelInfo] = []
        self._by_id: dict[str, ModelInfo] = {}

    @classmethod
    async def from_settings(cls, settings: Settings) -> Providers:
        """The providers that the settings name, a local Ollama if one answers, and the demo
        model last; the model list is fetched once, so ``resolve`` works right away."""
        configs = settings.all_openai_providers()
        _check_unique([c.name for c in configs] + (["demo"] if settings.demo_model else []))
        found: list[Provider] = [_provider(c, settings) for c in configs]
        ollama = settings.ollama_url.rstrip("/")
        # An Ollama the settings already name (by name or address) is not added a second time.
        configured = any(c.name == "ollama" or c.base_url.startswith(ollama) for c in configs)
        if settings.ollama_autodetect and ollama and not configured and await detect(ollama):
            found.append(
                OllamaProvider(
                    url=ollama,
                    first_token_timeout_s=settings.upstream_first_token_timeout_s,
                    idle_timeout_s=settings.upstream_timeout_s,
                    health=_health(settings),
                )
            )
        if settings.demo_model:
            found.append(DemoProvider())
        providers = cls(found, default_model=settings.default_model)
        await providers.list_models()
        return providers

    @property
    def all(self) -> list[Provider]:
        return list(self._providers.values())

    async def list_models(self) -> list[ModelInfo]:
        """All providers' models, demo last; also refreshes the listing that ``resolve`` uses.
        A failing provider keeps the models it listed last (its health says why)."""
        listings = await asyncio.gather(*(p.list_models() for p in self._providers.values()))
        by_id: dict[str, ModelInfo] = {}
        models: list[ModelInfo] = []
        for listing in listings:
            for info in listing:
                public = self.public_id(info.provider, info.id)
                if public in by_id:
                    continue
                by_id[public] = info
                models.append(info)
        for info in models:  # plain ids, first provider wins
            by_id.setdefault(info.id, info)
        self._by_id = by_id
        self._models = sorted(models, key=lambda info: info.is_demo)
        return list(self._models)

    def public_id(self, provider: str, model_id: str) -> str:
        """The id a model is listed, chosen and stored under."""
        if not self.qualified or isinstance(self._providers.get(provider), DemoProvider):
            return model_id
        return f"{provider}:{model_id}"

    def default_id(self) -> str | None:
        """The model a turn gets when it names none: the configured one, else the first chat
        model listed (not an embedding, audio, image or moderation model: issue 8, item 3)."""
        if self._default:
            try:
                provider, model_id = self.resolve(self._default)
            except UnknownModel:
                return self._default
            return self.public_id(provider.name, model_id)
        for info in self._models:
            if info.kind == "chat":
                return self.public_id(info.provider, info.id)
        return None

    def resolve(self, model_id: str | None) -> tuple[Provider, str]:
        """The provider for ``model_id`` and the id to send it; None means the default model.

        A plain id must be in the last listing (which keeps what a failing provider listed
        before), or be the configured default. ``provider:model`` is taken at its word when
        the provider exists, even if its listing missed the model (say, the upstream was down
        when it was fetched): the upstream itself then says whether the model exists.
        """
        if not model_id:
            model_id = self._default or self.default_id()
            if model_id is None:
                raise UnknownModel(None)
        info = self._by_id.get(model_id)
        if info is not None:
            return self._providers[info.provider], info.id
        # Checked after the listed ids, because Ollama's ids ("llama3:8b") contain colons too.
        name, colon, rest = model_id.partition(":")
        if colon and rest and name in self._providers:
            return self._providers[name], rest
        if model_id == self._default and self._first_real is not None:
            # The configured default is known even while its provider cannot list it.
            return self._first_real, model_id
        raise UnknownModel(model_id)

    async def aclose(self) -> None:
        await asyncio.gather(*(p.aclose() for p in self._providers.values()))


def _health(settings: Settings) -> Health:
    return Health(
        backoff_min_s=settings.provider_recheck_min_s,
        backoff_max_s=settings.provider_recheck_max_s,
    )


def _provider(config: ProviderConfig, settings: Settings) -> Provider:
    first_token = config.first_token_timeout_s or settings.upstream_first_token_timeout_s
    idle = config.idle_timeout_s or settings.upstream_timeout_s
    headers = {k: v.get_secret_value() for k, v in config.headers.items()}
    if config.kind == "anthropic":
        from chatkeep.providers.anthropic import AnthropicProvider

        return AnthropicProvider(
            name=config.name,
            base_url=config.base_url,
            api_key=config.api_key.get_secret_value(),
            models=config.models,
            headers=headers,
            first_token_timeout_s=first_token,
            idle_timeout_s=idle,
            health=_health(settings),
        )
    return OpenAICompatProvider(
        name=config.name,
        base_url=config.base_url,
        api_key=config.api_key.get_secret_value(),
        models=config.models,
        headers=headers,
        first_token_timeout_s=first_token,
        idle_timeout_s=idle,
        health=_health(settings),
    )
