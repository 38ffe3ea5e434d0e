"""Anthropic's Messages API, streamed through the ``anthropic`` SDK (issue 8, item 7).

The prompt arrives in OpenAI's chat format, as for every provider: system messages become the
``system`` parameter, ``data:`` image URLs become base64 image blocks. Extended thinking
(``thinking_delta``) is the reply's reasoning, kept apart from its text. The SDK's retries are
off, as everywhere: a retried request can generate twice (SPEC 9).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from typing import Any, cast

import anthropic

from chatkeep.providers.base import Chunk, ModelInfo, ProviderError
from chatkeep.providers.health import Health
from chatkeep.providers.openai_compat import (
    CONNECT_TIMEOUT_S,
    FIRST_TOKEN_TIMEOUT_S,
    IDLE_TIMEOUT_S,
    LISTING_TIMEOUT_S,
    Secrets,
)

log = logging.getLogger(__name__)
MAX_TOKENS = 8192  # the Messages API requires a bound; the model's own limit still applies
# The SDK refuses to start without a key and would look for one elsewhere: send a placeholder.
NO_KEY = "no-key"
_DATA_URL = re.compile(r"^data:(?P<type>[\w/+.-]+);base64,(?P<data>.*)$", re.S)
_STATES = {"upstream_unauthorized": "unauthorized", "upstream_unavailable": "unreachable"}


class AnthropicProvider:
    def __init__(
        self,
        *,
        name: str,
        base_url: str,
        api_key: str = "",
        models: Sequence[str] = (),
        headers: Mapping[str, str] | None = None,
        first_token_timeout_s: float = FIRST_TOKEN_TIMEOUT_S,
        idle_timeout_s: float = IDLE_TIMEOUT_S,
        health: Health | None = None,
    ) -> None:
        self.name = name
        self.health = health or Health()
        self._allowed = list(models)
        self.first_token_timeout_s = first_token_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.secrets = Secrets([api_key, *(headers or {}).values()])
        self._client = anthropic.AsyncAnthropic(
            base_url=base_url.rstrip("/").removesuffix("/v1"),
            api_key=api_key or NO_KEY,
            default_headers=dict(headers or {}),
            max_retries=0,
            # Read timeouts are the first-token and idle timeouts of stream_chat, kept there.
            timeout=anthropic.Timeout(LISTING_TIMEOUT_S, connect=CONNECT_TIMEOUT_S, read=None),
        )
        self._listed: list[ModelInfo] = []

    async def list_models(self) -> list[ModelInfo]:
        async with self.health.lock:  # concurrent page loads ask the upstream once
            if self.health.due:
                await self._check()
        if self._allowed:
            return [ModelInfo(id=m, provider=self.name, name=m) for m in self._allowed]
        return list(self._listed)

    async def _check(self) -> None:
        try:
            ids = [m.id async for m in self._client.models.list(timeout=LISTING_TIMEOUT_S)]
        except anthropic.APIError as exc:
            self._failed(self._error(exc, streaming=False))
        else:
            self.health.ok()
            self._listed = [ModelInfo(id=i, provider=self.name, name=i) for i in ids]

    def _failed(self, exc: ProviderError) -> None:
        state = _STATES.get(exc.code, "error")
        self.health.failed(state, exc.message)  # type: ignore[arg-type]
        log.warning("provider %s is %s: %s", self.name, state, exc.message)

    async def stream_chat(
        self, *, model: str, messages: list[dict[str, Any]]
    ) -> AsyncGenerator[Chunk, None]:
        system, turns = to_anthropic(messages)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.first_token_timeout_s
        params: dict[str, Any] = {"model": model, "max_tokens": MAX_TOKENS, "messages": turns}
        if system:
            params["system"] = system
        try:
            async with asyncio.timeout_at(deadline):
                stream = await self._client.messages.create(stream=True, **params)
        except TimeoutError:
            raise self._timeout(started=False) from None
        except anthropic.APIError as exc:
            error = self._error(exc, streaming=False)
            if error.code in _STATES:
                self._failed(error)
            raise error from exc
        self.health.answered()
        usage: dict[str, Any] = {}
        finish: str | None = None
        started = False
        events = cast(AsyncIterator[Any], stream.__aiter__())
        async with stream:
            while True:
                try:
                    async with asyncio.timeout_at(deadline):  # around the read only
                        event = await anext(events)
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    raise self._timeout(started=started) from None
                except anthropic.APIError as exc:
                    raise self._error(exc, streaming=True) from exc
                if event.type == "content_block_delta":
                    delta = event.delta
                    text = getattr(delta, "text", "") if delta.type == "text_delta" else ""
                    thought = delta.thinking if delta.type == "thinking_delta" else ""
                    if text or thought:
                        started = True
                        yield Chunk(text, reasoning=thought)
                        deadline = loop.time() + self.idle_timeout_s
                elif event.type == "message_start":
                    usage["prompt_tokens"] = event.message.usage.input_tokens
                elif event.type == "message_delta":
                    finish = event.delta.stop_reason or finish
                    usage["completion_tokens"] = event.usage.output_tokens
        if finish is None:
            raise ProviderError(
                "upstream_stream_broken", f"{self.name}: the reply stopped before it was finished"
            )
        if "prompt_tokens" in usage and "completion_tokens" in usage:
            usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        yield Chunk("", usage=usage or None, finish_reason=finish)

    def _timeout(self, *, started: bool) -> ProviderError:
        if started:
            what = f"sent nothing for {self.idle_timeout_s:g} s"
        else:
            what = f"sent no first token within {self.first_token_timeout_s:g} s"
        return ProviderError("upstream_timeout", f"{self.name}: the model {what}")

    def _error(self, exc: anthropic.APIError, *, streaming: bool) -> ProviderError:
        message = f"{self.name}: {self.secrets.redact(str(exc.message))}"
        if isinstance(exc, anthropic.APITimeoutError):
            return ProviderError("upstream_timeout", f"{self.name}: the model stopped responding")
        if isinstance(exc, anthropic.APIConnectionError):
            if streaming:
                return ProviderError(
                    "upstream_stream_broken", f"{self.name}: the connection dropped mid-reply"
                )
            return ProviderError("upstream_unavailable", f"{self.name}: cannot connect")
        if isinstance(exc, anthropic.AuthenticationError | anthropic.PermissionDeniedError):
            return ProviderError("upstream_unauthorized", message, status=exc.status_code)
        if isinstance(exc, anthropic.RateLimitError):
            return ProviderError("upstream_rate_limited", message, status=429)
        if isinstance(exc, anthropic.APIStatusError):
            return ProviderError("upstream_error", message, status=exc.status_code)
        return ProviderError("upstream_error", message)

    async def aclose(self) -> None:
        await self._client.close()


def to_anthropic(messages: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """OpenAI chat messages -> (system text, Messages API turns). The prompt already alternates
    (turns/context.py), as the Messages API requires."""
    system = [m["content"] for m in messages if m["role"] == "system"]
    turns = [
        {"role": m["role"], "content": _blocks(m["content"])}
        for m in messages
        if m["role"] != "system"
    ]
    text = "\n\n".join(s if isinstance(s, str) else _text(s) for s in system)
    return text, turns


def _text(parts: list[dict[str, Any]]) -> str:
    return "\n\n".join(p.get("text", "") for p in parts if p.get("type") == "text")


def _blocks(content: Any) -> Any:
    if isinstance(content, str):
        return content
    blocks: list[dict[str, Any]] = []
    for part in content:
        if part.get("type") == "text":
            blocks.append({"type": "text", "text": part.get("text", "")})
        elif part.get("type") == "image_url":
            match = _DATA_URL.match(part.get("image_url", {}).get("url", ""))
            if match:
                source = {"type": "base64", "media_type": match["type"], "data": match["data"]}
                blocks.append({"type": "image", "source": source})
    return blocks
