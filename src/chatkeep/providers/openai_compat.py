"""Any OpenAI-compatible endpoint: OpenAI, vLLM, llama.cpp, LM Studio, LiteLLM, Ollama's ``/v1``.

The stream is read with httpx and httpx-sse and each chunk is one ``json.loads`` into plain
dicts: no SDK, no pydantic model per chunk (a third of chatkeep's CPU per relayed token went
there), and no hidden retries — a retried upstream request could generate twice (SPEC 9). The
one retry here is deliberate and safe: a request refused for its ``stream_options`` is sent again
without them, before the model produced anything (issue 8, item 6).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any

import httpx
from httpx_sse import EventSource, SSEError

from chatkeep.providers.base import Chunk, ModelInfo, ProviderError
from chatkeep.providers.health import Health
from chatkeep.providers.kinds import model_kind
from chatkeep.providers.reasoning import ThinkSplitter

log = logging.getLogger(__name__)

LISTING_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 10.0
# Local models may queue a request or spend minutes on a long prompt before the first token;
# once they stream, a long silence means they are stuck (issue 8, item 5).
FIRST_TOKEN_TIMEOUT_S = 600.0
IDLE_TIMEOUT_S = 120.0
_STREAM_OPTION_WORDS = ("stream_options", "include_usage")


class Secrets:
    """Keys and header values of a provider: sent upstream, never shown or logged."""

    def __init__(self, values: Sequence[str]) -> None:
        self._values = [v for v in values if len(v) >= 4]

    def redact(self, text: str) -> str:
        for value in self._values:
            text = text.replace(value, "***")
        return text


class OpenAICompatProvider:
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
        sent = dict(headers or {})
        if api_key:
            sent["Authorization"] = f"Bearer {api_key}"
        self.secrets = Secrets([api_key, *(headers or {}).values()])
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/",
            headers=sent,
            # Read timeouts are the first-token and idle timeouts of stream_chat, kept there.
            timeout=httpx.Timeout(LISTING_TIMEOUT_S, connect=CONNECT_TIMEOUT_S, read=None),
            limits=httpx.Limits(max_connections=1000, max_keepalive_connections=100),
        )
        self._listed: list[ModelInfo] = []
        # Whether the upstream accepts stream_options; learnt once, kept (issue 8, item 6).
        self.sends_usage_option = True

    # ---- models ------------------------------------------------------------------------------

    async def list_models(self) -> list[ModelInfo]:
        """The allow-list if there is one, else the endpoint's listing; either way the
        endpoint is asked (when its health is due) so that its state is known."""
        async with self.health.lock:
            if self.health.due:
                await self._check()
        if self._allowed:
            kinds = {m.id: m.kind for m in self._listed}
            return [self._info({"id": m}, kinds.get(m)) for m in self._allowed]
        return list(self._listed)

    async def _check(self) -> None:
        try:
            try:
                entries = await self._fetch_models()
            except (KeyError, TypeError) as exc:
                raise ProviderError("upstream_error", f"{self.name}: odd model list") from exc
        except ProviderError as exc:
            self._failed(exc)
        else:
            self.health.ok()
            self._listed = [self._info(e) for e in entries]

    async def _fetch_models(self) -> list[dict[str, Any]]:
        body = await self._get_json("models")
        return [e for e in body["data"] if isinstance(e, dict) and "id" in e]

    async def _get_json(self, url: str) -> Any:
        """GET ``url`` (relative to the base URL, or absolute) as JSON; raises ProviderError."""
        try:
            response = await self._http.get(url)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, streaming=False) from exc
        if response.status_code >= 400:
            raise self._status_error(response.status_code, response.text)
        try:
            return response.json()
        except ValueError as exc:
            raise ProviderError("upstream_error", f"{self.name}: not a JSON answer") from exc

    def _info(self, entry: Mapping[str, Any], kind: Any = None) -> ModelInfo:
        model_id = str(entry["id"])
        return ModelInfo(
            id=model_id, provider=self.name, name=model_id, kind=kind or model_kind(entry)
        )

    def _failed(self, exc: ProviderError) -> None:
        state = {
            "upstream_unauthorized": "unauthorized",
            "upstream_unavailable": "unreachable",
        }.get(exc.code, "error")
        self.health.failed(state, exc.message)  # type: ignore[arg-type]
        log.warning("provider %s is %s: %s", self.name, state, exc.message)

    # ---- chat --------------------------------------------------------------------------------

    async def stream_chat(
        self, *, model: str, messages: list[dict[str, Any]]
    ) -> AsyncGenerator[Chunk, None]:
        body: dict[str, Any] = {"model": model, "messages": messages, "stream": True}
        # The first-token timeout runs from the request, so it covers waiting for the headers.
        deadline = asyncio.get_running_loop().time() + self.first_token_timeout_s
        while True:
            if self.sends_usage_option:
                body["stream_options"] = {"include_usage": True}
            else:
                body.pop("stream_options", None)
            request = self._http.build_request(
                "POST", "chat/completions", json=body, headers={"Accept": "text/event-stream"}
            )
            try:
                async with asyncio.timeout_at(deadline):
                    response = await self._http.send(request, stream=True)
            except TimeoutError:
                raise self._timeout(started=False) from None
            except httpx.HTTPError as exc:
                error = self._transport_error(exc, streaming=False)
                if error.code == "upstream_unavailable":
                    self._failed(error)
                raise error from exc
            # Leaving this block for any reason (a cancelled turn included) closes the HTTP
            # stream, which is what tells the upstream to stop generating.
            try:
                if response.status_code >= 400:
                    await self._refused(response)
                    continue  # only when it was the stream_options: try again without
                self.health.answered()
                async for chunk in self._read(response, deadline):
                    yield chunk
                return
            finally:
                await response.aclose()

    async def _refused(self, response: httpx.Response) -> None:
        """Raise the error of a refused request, unless it refused only the usage option."""
        text = (await response.aread()).decode(errors="replace")
        # 400 or 422 from vLLM and llama.cpp; some servers answer 500 for an unknown field.
        rejects_option = response.status_code not in (401, 403, 429) and any(
            word in text for word in _STREAM_OPTION_WORDS
        )
        if self.sends_usage_option and rejects_option:
            # Nothing was generated, so sending it again cannot double a reply (SPEC 9).
            log.info("provider %s refuses stream_options; not sending them again", self.name)
            self.sends_usage_option = False
            return
        error = self._status_error(response.status_code, text)
        if error.code == "upstream_unauthorized":
            self._failed(error)
        raise error

    async def _read(self, response: httpx.Response, deadline: float) -> AsyncGenerator[Chunk, None]:
        events = EventSource(response).aiter_sse()
        think = ThinkSplitter()
        finish: str | None = None
        usage: dict[str, Any] | None = None
        loop, started = asyncio.get_running_loop(), False
        try:
            while True:
                try:
                    # Around the read only, never across the yield below: the timeout must
                    # fire in this generator, not in whatever code the caller runs meanwhile.
                    async with asyncio.timeout_at(deadline):
                        sse = await anext(events)
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    raise self._timeout(started=started) from None
                if sse.data == "[DONE]":
                    break
                if not sse.data:
                    continue
                try:
                    data = json.loads(sse.data)
                except ValueError:
                    continue  # a comment-like line some servers send; not part of the reply
                if not isinstance(data, dict):
                    continue
                if data.get("error"):
                    raise self._stream_error(data["error"])
                usage = data.get("usage") or usage
                for choice in data.get("choices") or ():
                    if choice.get("index", 0) != 0:
                        continue
                    delta = choice.get("delta") or {}
                    # vLLM and DeepSeek: reasoning_content; OpenRouter and newer vLLM: reasoning.
                    reasoning = delta.get("reasoning_content") or delta.get("reasoning") or ""
                    if not isinstance(reasoning, str):
                        reasoning = ""
                    content = delta.get("content") or ""
                    if content:
                        thought, content = think.feed(content)
                        reasoning += thought
                    if content or reasoning:
                        started = True
                        yield Chunk(content, reasoning=reasoning)
                        deadline = loop.time() + self.idle_timeout_s
                    finish = choice.get("finish_reason") or finish
        except (httpx.HTTPError, SSEError) as exc:
            if finish is None:
                raise self._transport_error(exc, streaming=True) from exc
            # The reply was whole; only the usage chunk or the [DONE] line went missing.
            log.info("provider %s: stream dropped after its finish: %s", self.name, exc)
        finally:
            await events.aclose()
        thought, rest = think.flush()
        if thought or rest:
            yield Chunk(rest, reasoning=thought)
        if finish is None:
            raise ProviderError(
                "upstream_stream_broken", f"{self.name}: the reply stopped before it was finished"
            )
        yield Chunk("", usage=usage, finish_reason=finish)

    # ---- errors ------------------------------------------------------------------------------

    def _timeout(self, *, started: bool) -> ProviderError:
        if started:
            what = f"sent nothing for {self.idle_timeout_s:g} s"
        else:
            what = f"sent no first token within {self.first_token_timeout_s:g} s"
        return ProviderError("upstream_timeout", f"{self.name}: the model {what}")

    def _transport_error(self, exc: Exception, *, streaming: bool) -> ProviderError:
        if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
            return ProviderError("upstream_timeout", f"{self.name}: the model stopped responding")
        if isinstance(exc, SSEError):
            return ProviderError("upstream_error", f"{self.name}: not an event stream: {exc}")
        if streaming:
            return ProviderError(
                "upstream_stream_broken", f"{self.name}: the connection dropped mid-reply"
            )
        return ProviderError("upstream_unavailable", f"{self.name}: cannot connect ({exc!r})")

    def _status_error(self, status: int, text: str) -> ProviderError:
        message = f"{self.name}: {self.secrets.redact(_error_message(text) or f'status {status}')}"
        if status in (401, 403):
            return ProviderError("upstream_unauthorized", message, status=status)
        if status == 429:
            return ProviderError("upstream_rate_limited", message, status=status)
        return ProviderError("upstream_error", message, status=status)

    def _stream_error(self, error: Any) -> ProviderError:
        text = error.get("message") if isinstance(error, dict) else str(error)
        return ProviderError("upstream_error", f"{self.name}: {self.secrets.redact(str(text))}")

    async def aclose(self) -> None:
        await self._http.aclose()


def _error_message(text: str) -> str:
    """The message of an OpenAI-style error body (``{"error": {"message": ...}}``, or vLLM's
    ``{"message": ...}``), else the body itself, cut short."""
    try:
        body = json.loads(text)
    except ValueError:
        return text.strip()[:300]
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:300]
        if isinstance(error, str):
            return error[:300]
    return text.strip()[:300]
