"""Any OpenAI-compatible endpoint: OpenAI, vLLM, llama.cpp, LM Studio, Ollama's ``/v1``."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, Sequence
from typing import Any, cast

import httpx
import openai
from openai.types.chat import ChatCompletionMessageParam

from chatkeep.providers.base import Chunk, ModelInfo, ProviderError

log = logging.getLogger(__name__)

LISTING_TTL_S = 60.0
LISTING_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 10.0
# Local servers need no key, but the SDK refuses to start without one, and reading
# OPENAI_API_KEY behind the settings' back is not allowed: send a harmless placeholder.
NO_KEY = "no-key"


class OpenAICompatProvider:
    def __init__(
        self,
        *,
        name: str,
        base_url: str,
        api_key: str = "",
        models: Sequence[str] = (),
        timeout_s: float = 120.0,
    ) -> None:
        self.name = name
        self._configured = list(models)
        self._client = openai.AsyncOpenAI(
            base_url=base_url,
            api_key=api_key or NO_KEY,
            # The SDK retries 429, 5xx and dropped connections by default, without an idempotency
            # key, so one reply could be generated twice (SPEC 9); chatkeep's callers decide.
            max_retries=0,
            # timeout_s bounds the silence between two bytes of a stream, not the whole reply.
            timeout=openai.Timeout(timeout_s, connect=min(timeout_s, CONNECT_TIMEOUT_S)),
        )
        self._listing: tuple[float, list[ModelInfo]] | None = None

    async def list_models(self) -> list[ModelInfo]:
        if self._configured:
            return [self._info(model_id) for model_id in self._configured]
        if self._listing and time.monotonic() - self._listing[0] < LISTING_TTL_S:
            return list(self._listing[1])
        try:
            ids = await self._fetch_model_ids()
        except (openai.OpenAIError, httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            # A provider that is down must not take the model list (or the page) down with it.
            log.warning("provider %s: cannot list models: %s", self.name, exc)
            return []
        models = [self._info(model_id) for model_id in ids]
        self._listing = (time.monotonic(), models)
        return list(models)

    async def _fetch_model_ids(self) -> list[str]:
        return [model.id async for model in self._client.models.list(timeout=LISTING_TIMEOUT_S)]

    def _info(self, model_id: str) -> ModelInfo:
        return ModelInfo(id=model_id, provider=self.name, name=model_id)

    async def stream_chat(
        self, *, model: str, messages: list[dict[str, Any]]
    ) -> AsyncGenerator[Chunk, None]:
        try:
            stream = await self._client.chat.completions.create(
                model=model,
                messages=cast(list[ChatCompletionMessageParam], messages),
                stream=True,
                stream_options={"include_usage": True},
            )
        except openai.APIError as exc:
            raise self._error(exc, streaming=False) from exc
        finish: str | None = None
        usage: dict[str, Any] | None = None
        # Leaving this block for any reason (a cancelled turn included) closes the HTTP stream,
        # which is what tells the upstream to stop generating.
        async with stream:
            try:
                async for event in stream:
                    if event.usage is not None:
                        usage = event.usage.model_dump(exclude_none=True)
                    for choice in event.choices:
                        if choice.index != 0:
                            continue
                        if choice.delta is not None and choice.delta.content:
                            yield Chunk(choice.delta.content)
                        if choice.finish_reason:
                            finish = choice.finish_reason
            except openai.APIError as exc:
                if finish is None:
                    raise self._error(exc, streaming=True) from exc
                # The reply was whole; only the usage chunk or the [DONE] line went missing.
                log.info("provider %s: stream dropped after its finish: %s", self.name, exc)
        if finish is None:
            raise ProviderError(
                "upstream_stream_broken", f"{self.name}: the reply stopped before it was finished"
            )
        yield Chunk("", usage=usage, finish_reason=finish)

    def _error(self, exc: openai.APIError, *, streaming: bool) -> ProviderError:
        if isinstance(exc, openai.APITimeoutError):
            return ProviderError("upstream_timeout", f"{self.name}: the model stopped responding")
        if isinstance(exc, openai.APIConnectionError):
            if streaming:
                return ProviderError(
                    "upstream_stream_broken", f"{self.name}: the connection dropped mid-reply"
                )
            return ProviderError("upstream_unavailable", f"{self.name}: cannot connect")
        if isinstance(exc, openai.RateLimitError):
            return ProviderError("upstream_rate_limited", f"{self.name}: {exc.message}", status=429)
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            return ProviderError("upstream_error", f"{self.name}: {exc.message}", status=status)
        return ProviderError("upstream_error", f"{self.name}: {exc.message}")

    async def aclose(self) -> None:
        await self._client.close()
