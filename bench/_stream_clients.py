"""The client side of the stream benchmarks: many SSE streams at once, each measured
against the fake upstream's token schedule."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any

import httpx

from bench.turns_ttft import (
    PROMPT,
    FakeUpstreamProcess,
    SSEParser,
    chunk_text,
)
from support.factories import new_id

CHUNK = 4  # characters per token


def reply_of(tokens: int) -> str:
    """``000 001 002 ...``: 4-character tokens that say where they belong."""
    return "".join(f"{i % 1000:03d} " for i in range(tokens))


@dataclass
class StreamLog:
    sent: float = 0.0
    first_lag: float | None = None  # lag of token 0
    lags: list[float] = field(default_factory=list)
    drifts: list[float] = field(default_factory=list)
    text: str = ""
    stored: str | None = None  # the done event's reply content (chatkeep) or the [DONE] text
    error: str | None = None
    done_at: float | None = None
    tokens: int = 0


@dataclass
class Clients:
    ck: httpx.AsyncClient
    direct: httpx.AsyncClient
    sessions: Any
    direct_body: dict[str, Any] = field(default_factory=dict)

    async def stream(
        self, *, chatkeep: bool, interval: float, ttft: float = 0.0, stride: int = 1
    ) -> StreamLog:
        """One stream, to the end; per token its lag behind the fake's schedule."""
        log = StreamLog()
        parser = SSEParser()
        parts: list[str] = []
        got = 0
        if chatkeep:
            path = f"/api/sessions/{next(self.sessions)}/turns"
            request = self.ck.stream(
                "POST", path, json={"message": {"id": new_id(), "content": PROMPT}}
            )
        else:
            request = self.direct.stream("POST", "/chat/completions", json=self.direct_body)
        log.sent = perf_counter()
        try:
            async with request as response:
                if response.status_code != 200:
                    await response.aread()
                    log.error = f"{response.status_code} {response.text[:200]}"
                    return log
                async for raw in response.aiter_raw():
                    now = perf_counter()
                    for name, _event_id, data in parser.feed(raw):
                        if chatkeep:
                            if name == b"delta":
                                text = json.loads(data)["text"]
                            elif name == b"done":
                                log.stored = json.loads(data)["content"]
                                log.done_at = now
                                continue
                            elif name == b"error":
                                log.error = data.decode()[:300]
                                continue
                            else:
                                continue
                        elif data == b"[DONE]":
                            log.done_at = now
                            continue
                        else:
                            text = chunk_text(data)
                        if not text:
                            continue
                        parts.append(text)
                        got += len(text)
                        while (log.tokens + 1) * CHUNK <= got:
                            lag = now - log.sent - ttft - log.tokens * interval
                            if log.first_lag is None:
                                log.first_lag = lag
                            elif log.tokens % stride == 0:
                                log.lags.append(lag)
                                log.drifts.append(lag - log.first_lag)
                            log.tokens += 1
        except httpx.HTTPError as exc:
            log.error = f"{type(exc).__name__}: {exc}"
        log.text = "".join(parts)
        if not chatkeep:
            log.stored = log.text if log.done_at is not None else None
        return log

    async def batch(
        self, fake: FakeUpstreamProcess, size: int, tokens: int, interval: float
    ) -> list[StreamLog]:
        await fake.control(
            reset=True,
            reply=reply_of(tokens),
            chunk_chars=CHUNK,
            ttft_s=0.0,
            token_interval_s=interval,
        )
        logs = await asyncio.gather(
            *(self.stream(chatkeep=True, interval=interval) for _ in range(size))
        )
        expected = reply_of(tokens)
        bad = [log for log in logs if log.error or log.text != expected or log.stored != expected]
        if bad:
            raise RuntimeError(f"{len(bad)} of {size} batch turns went wrong: {bad[0].error!r}")
        return logs


# ---------------------------------------------------------------------------------------------
# (a) CPU per relayed token
