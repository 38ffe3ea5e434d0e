"""A fake OpenAI-compatible model server: real HTTP on loopback, real SSE, faults on demand.

It serves ``POST /v1/chat/completions`` (streamed or not), ``GET /v1/models``, Ollama's
``GET /api/tags`` and Anthropic's ``POST /v1/messages`` (streamed, with thinking blocks);
``Knobs`` lists what can be tuned, ``Stats`` what it counts.
Tests use it in-thread::

    with run_fake_upstream() as fake:
        fake.set(reply="Hello!", token_interval_s=0.01)
        ...  # point a provider at fake.base_url
        assert fake.stats().chat_requests == 1

and benchmarks or multi-process tests run it alone, ``python -m tests.support.fake_upstream
--port N`` (port 0 picks a free one; the first stdout line is the base URL), and drive it over HTTP:
``POST /_control`` with knobs as JSON (``{"reset": true}`` first restores the defaults),
``GET /_stats``, ``GET /_requests``, and ``POST /_wait`` (``{"field", "at_least", "timeout_s"}``)
to block until a counter reaches a value instead of polling.

A thousand streams may run at once, so the per-stream cost is kept small: one watcher task for
the disconnect, pre-encoded SSE framing, no per-token logging.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

DEFAULT_MODELS = ("fake-model", "fake-model-mini")


@dataclass(frozen=True)
class Knobs:
    reply: str | None = None  # None: a deterministic echo of the last user message
    chunk_chars: int = 4
    ttft_s: float = 0.0  # after the headers, before the first token
    token_interval_s: float = 0.0
    fail_status: int | None = None
    fail_times: int | None = None  # None: every request fails while fail_status is set
    cut_after_chunks: int | None = None  # drop the connection after N text chunks
    hang: bool = False  # send nothing at all until the client goes away
    models: tuple[str, ...] = DEFAULT_MODELS
    # 401 on every endpoint unless "Authorization: Bearer <require_key>"; the error message
    # repeats the key it was given, as some gateways do, so leaks can be tested.
    require_key: str | None = None
    # 400, as vLLM's Mistral and Gemma chat templates do, unless the roles after an optional
    # leading system message go user, assistant, user, ... and end with a user message.
    strict_roles: bool = False
    # Streamed before the text: as "reasoning_content" deltas (vLLM, DeepSeek), "reasoning"
    # deltas (OpenRouter), or "think": a <think>...</think> block at the start of the content.
    reasoning: str | None = None
    reasoning_format: str = "reasoning_content"
    # 400 for a request with stream_options, as older vLLM and llama.cpp builds do.
    reject_stream_options: bool = False


@dataclass
class Stats:
    chat_requests: int = 0
    completed: int = 0
    abandoned: int = 0  # the client went away before the reply was finished
    cut: int = 0
    failed: int = 0
    rejected: int = 0  # refused for their key, roles or stream_options
    active: int = 0
    max_active: int = 0
    models_requests: int = 0
    tags_requests: int = 0


def default_reply(messages: list[dict[str, Any]]) -> str:
    """``Echo: <last user text>``, so a test can see which prompt reached the model."""
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                content = " ".join(p.get("text", "") for p in content if p.get("type") == "text")
            return f"Echo: {content}"
    return "Echo: (no user message)"


class _CutConnection(Exception):
    """Raised after a response started, so uvicorn drops the connection mid-body."""


def _hide_deliberate_cuts(record: logging.LogRecord) -> bool:
    return not (record.exc_info and isinstance(record.exc_info[1], _CutConnection))


logging.getLogger("uvicorn.error").addFilter(_hide_deliberate_cuts)


class FakeState:
    """Knobs and counters, shared between the server thread and the test thread."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.knobs = Knobs()
        self._stats = Stats()
        self._requests: list[dict[str, Any]] = []

    def set(self, **knobs: Any) -> Knobs:
        if "models" in knobs:
            knobs["models"] = tuple(knobs["models"])
        with self._cond:
            self.knobs = replace(self.knobs, **knobs)
            return self.knobs

    def reset(self) -> None:
        with self._cond:
            self.knobs = Knobs()
            self._stats = Stats()
            self._requests = []
            self._cond.notify_all()

    def stats(self) -> Stats:
        with self._cond:
            return replace(self._stats)

    @property
    def requests(self) -> list[dict[str, Any]]:
        with self._cond:
            return list(self._requests)

    def bump(self, name: str, by: int = 1) -> None:
        with self._cond:
            value = getattr(self._stats, name) + by
            setattr(self._stats, name, value)
            if name == "active":
                self._stats.max_active = max(self._stats.max_active, value)
            self._cond.notify_all()

    def end_stream(self, outcome: str) -> None:
        with self._cond:
            self._stats.active -= 1
            setattr(self._stats, outcome, getattr(self._stats, outcome) + 1)
            self._cond.notify_all()

    def record(self, body: dict[str, Any]) -> tuple[Knobs, bool]:
        """Count a chat request; say whether it is one of the requests that must fail."""
        with self._cond:
            self._requests.append(body)
            self._stats.chat_requests += 1
            knobs = self.knobs
            fail = knobs.fail_status is not None and knobs.fail_times != 0
            if fail and knobs.fail_times is not None:
                self.knobs = replace(knobs, fail_times=knobs.fail_times - 1)
            self._cond.notify_all()
            return knobs, fail

    def wait_until(self, predicate: Callable[[Stats], bool], timeout: float) -> Stats:
        with self._cond:
            if not self._cond.wait_for(lambda: predicate(self._stats), timeout):
                raise TimeoutError(f"fake upstream never reached the condition: {self._stats}")
            return replace(self._stats)


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def _usage(body: dict[str, Any], completion_tokens: int) -> dict[str, int]:
    prompt = sum(len(str(m.get("content", ""))) for m in body.get("messages", [])) // 4 + 1
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt + completion_tokens,
    }


class _ChatStream(Response):
    """An SSE reply in OpenAI's ``chat.completion.chunk`` format, with the knobs' faults."""

    def __init__(self, state: FakeState, knobs: Knobs, body: dict[str, Any], text: str) -> None:
        self.state, self.knobs, self.request_body, self.text = state, knobs, body, text
        self.finished = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.state.bump("active")
        outcome = "abandoned"  # unless _play gets to the end
        try:
            if self.knobs.hang:
                await _wait_disconnect(receive)
                return
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._watch, receive, tg.cancel_scope)
                outcome = await self._play(send)
                tg.cancel_scope.cancel()
        finally:
            # One update for both counters, so a waiter never sees "abandoned" but still "active".
            self.state.end_stream(outcome)
        if outcome == "cut":
            raise _CutConnection

    async def _watch(self, receive: Receive, scope: anyio.CancelScope) -> None:
        await _wait_disconnect(receive)
        if not self.finished:
            scope.cancel()

    async def _play(self, send: Send) -> str:
        """Send the reply; "cut" when the knobs say to drop the connection instead of finishing."""
        knobs, model = self.knobs, str(self.request_body.get("model", ""))
        head = {"id": f"chatcmpl-fake-{id(self)}", "created": int(time.time()), "model": model}
        prefix, suffix = _chunk_framing(head)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream"),
                    (b"cache-control", b"no-cache"),
                ],
            }
        )
        if knobs.ttft_s:
            await anyio.sleep(knobs.ttft_s)
        size = max(1, knobs.chunk_chars)
        text = self.text
        if knobs.reasoning and knobs.reasoning_format == "think":
            text = f"<think>{knobs.reasoning}</think>\n\n{text}"
        elif knobs.reasoning:
            for i in range(0, len(knobs.reasoning), size):
                delta = {"role": "assistant", knobs.reasoning_format: knobs.reasoning[i : i + size]}
                choice = {"index": 0, "delta": delta, "finish_reason": None}
                frame = _sse({**head, "object": "chat.completion.chunk", "choices": [choice]})
                await send({"type": "http.response.body", "body": frame, "more_body": True})
                if knobs.token_interval_s:
                    await anyio.sleep(knobs.token_interval_s)
        pieces = [text[i : i + size] for i in range(0, len(text), size)]
        for n, piece in enumerate(pieces):
            if knobs.cut_after_chunks is not None and n >= knobs.cut_after_chunks:
                return "cut"
            if n and knobs.token_interval_s:
                await anyio.sleep(knobs.token_interval_s)
            data = prefix + json.dumps(piece).encode() + suffix
            await send({"type": "http.response.body", "body": data, "more_body": True})
        if knobs.cut_after_chunks is not None:
            return "cut"  # the cut falls after the last text chunk: no finish, no [DONE]
        tail = _sse({**head, "object": "chat.completion.chunk", "choices": [_finish()]})
        if (self.request_body.get("stream_options") or {}).get("include_usage"):
            usage = _usage(self.request_body, len(pieces))
            tail += _sse({**head, "object": "chat.completion.chunk", "choices": [], "usage": usage})
        self.finished = True
        await send({"type": "http.response.body", "body": tail + b"data: [DONE]\n\n"})
        return "completed"


def _anthropic_sse(kind: str, payload: dict[str, Any]) -> bytes:
    data = json.dumps({"type": kind, **payload}, separators=(",", ":"))
    return f"event: {kind}\ndata: {data}\n\n".encode()


async def _anthropic_events(
    state: FakeState, knobs: Knobs, body: dict[str, Any], text: str
) -> AsyncIterator[bytes]:
    state.bump("active")
    outcome = "abandoned"
    try:
        usage = {"input_tokens": _usage(body, 0)["prompt_tokens"], "output_tokens": 1}
        message = {"id": "msg_fake", "type": "message", "role": "assistant", "content": []}
        message.update(model=body.get("model"), stop_reason=None, stop_sequence=None, usage=usage)
        yield _anthropic_sse("message_start", {"message": message})
        if knobs.ttft_s:
            await anyio.sleep(knobs.ttft_s)
        size, index, sent = max(1, knobs.chunk_chars), 0, 0
        blocks = [("thinking", knobs.reasoning or ""), ("text", text)]
        for kind, whole in blocks:
            if not whole:
                continue
            start = {"type": kind, kind: ""} | ({"signature": ""} if kind == "thinking" else {})
            yield _anthropic_sse("content_block_start", {"index": index, "content_block": start})
            for i in range(0, len(whole), size):
                if sent and knobs.token_interval_s:
                    await anyio.sleep(knobs.token_interval_s)
                delta = {"type": f"{kind}_delta", kind: whole[i : i + size]}
                yield _anthropic_sse("content_block_delta", {"index": index, "delta": delta})
                sent += 1
            yield _anthropic_sse("content_block_stop", {"index": index})
            index += 1
        end = {"delta": {"stop_reason": "end_turn", "stop_sequence": None}}
        yield _anthropic_sse("message_delta", {**end, "usage": {"output_tokens": sent}})
        yield _anthropic_sse("message_stop", {})
        outcome = "completed"
    finally:
        state.end_stream(outcome)


def _chunk_framing(head: dict[str, Any]) -> tuple[bytes, bytes]:
    """The bytes around a chunk's content, built once per stream instead of once per token."""
    marker = "\x00"
    delta = {"role": "assistant", "content": marker}
    choice = {"index": 0, "delta": delta, "finish_reason": None}
    frame = _sse({**head, "object": "chat.completion.chunk", "choices": [choice]})
    prefix, _, suffix = frame.partition(json.dumps(marker).encode())
    return prefix, suffix


def _finish() -> dict[str, Any]:
    return {"index": 0, "delta": {}, "finish_reason": "stop"}


async def _wait_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _error(status: int) -> JSONResponse:
    kind = "rate_limit_error" if status == 429 else "server_error"
    body = {"error": {"message": f"fake upstream: status {status}", "type": kind, "code": None}}
    headers = {"retry-after": "1"} if status == 429 else None
    return JSONResponse(body, status_code=status, headers=headers)


def _unauthorized(knobs: Knobs, request: Request) -> JSONResponse | None:
    if knobs.require_key is None:
        return None
    given = request.headers.get("x-api-key") or request.headers.get("authorization", "")
    given = given.removeprefix("Bearer ")
    if given == knobs.require_key:
        return None
    message = f"Incorrect API key provided: {given or '(none)'}"
    body = {
        "error": {"message": message, "type": "invalid_request_error", "code": "invalid_api_key"}
    }
    return JSONResponse(body, status_code=401)


def _roles_alternate(messages: list[dict[str, Any]]) -> bool:
    roles = [m.get("role") for m in messages]
    if roles[:1] == ["system"]:
        roles = roles[1:]
    expected = ["user", "assistant"] * len(roles)
    return bool(roles) and roles == expected[: len(roles)] and roles[-1] == "user"


def _refusal(knobs: Knobs, request: Request, body: dict[str, Any]) -> JSONResponse | None:
    """A request the knobs say to refuse before generating anything, as real servers do."""
    if (unauthorized := _unauthorized(knobs, request)) is not None:
        return unauthorized
    if knobs.reject_stream_options and "stream_options" in body:
        # vLLM's words (pydantic's extra="forbid"), in vLLM's error shape.
        message = (
            "[{'type': 'extra_forbidden', 'loc': ('body', 'stream_options'), "
            "'msg': 'Extra inputs are not permitted'}]"
        )
        return JSONResponse(
            {"object": "error", "message": message, "type": "BadRequestError", "code": 400},
            status_code=400,
        )
    if knobs.strict_roles and not _roles_alternate(body.get("messages", [])):
        message = "Conversation roles must alternate user/assistant/user/assistant/..."
        return JSONResponse(
            {"object": "error", "message": message, "type": "BadRequestError", "code": 400},
            status_code=400,
        )
    return None


def create_app(state: FakeState) -> Starlette:
    async def chat(request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"error": {"message": "bad json"}}, status_code=400)
        knobs, fail = state.record(body)
        refusal = _refusal(knobs, request, body)
        if refusal is not None:
            state.bump("rejected")
            return refusal
        if fail:
            state.bump("failed")
            assert knobs.fail_status is not None
            return _error(knobs.fail_status)
        text = knobs.reply if knobs.reply is not None else default_reply(body.get("messages", []))
        if body.get("stream") or knobs.hang:
            return _ChatStream(state, knobs, body, text)
        if knobs.ttft_s:
            await asyncio.sleep(knobs.ttft_s)
        state.bump("completed")
        message = {"role": "assistant", "content": text}
        return JSONResponse(
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", ""),
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                "usage": _usage(body, max(1, len(text) // max(1, knobs.chunk_chars))),
            }
        )

    async def messages(request: Request) -> Response:
        """Anthropic's Messages API, streamed: thinking (the reasoning knob), then text."""
        body = await request.json()
        knobs, fail = state.record(body)
        refusal = _refusal(knobs, request, body)
        if refusal is not None:
            state.bump("rejected")
            return refusal
        if fail:
            state.bump("failed")
            assert knobs.fail_status is not None
            return _error(knobs.fail_status)
        text = knobs.reply if knobs.reply is not None else default_reply(body["messages"])
        return StreamingResponse(
            _anthropic_events(state, knobs, body, text), media_type="text/event-stream"
        )

    async def models(request: Request) -> Response:
        state.bump("models_requests")
        if (unauthorized := _unauthorized(state.knobs, request)) is not None:
            return unauthorized
        models = state.knobs.models
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in models]
        return JSONResponse({"object": "list", "data": data})

    async def tags(request: Request) -> Response:
        # Ollama's own listing, so provider auto-detection has something to find.
        state.bump("tags_requests")
        if (unauthorized := _unauthorized(state.knobs, request)) is not None:
            return unauthorized
        data = [{"name": m, "model": m, "size": 0} for m in state.knobs.models]
        return JSONResponse({"models": data})

    async def control(request: Request) -> Response:
        knobs = await request.json()
        if knobs.pop("reset", False):
            state.reset()
        try:
            return JSONResponse(asdict(state.set(**knobs)))
        except TypeError as exc:
            return JSONResponse({"error": {"message": str(exc)}}, status_code=422)

    async def stats(request: Request) -> Response:
        return JSONResponse(asdict(state.stats()))

    async def requests(request: Request) -> Response:
        return JSONResponse(state.requests)

    async def wait(request: Request) -> Response:
        spec = await request.json()
        name, at_least = spec["field"], int(spec.get("at_least", 1))
        try:
            got = await asyncio.to_thread(
                state.wait_until,
                lambda s: getattr(s, name) >= at_least,
                float(spec.get("timeout_s", 10)),
            )
        except TimeoutError:
            return JSONResponse(asdict(state.stats()), status_code=408)
        return JSONResponse(asdict(got))

    return Starlette(
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/messages", messages, methods=["POST"]),
            Route("/v1/models", models),
            Route("/api/tags", tags),
            Route("/_control", control, methods=["POST"]),
            Route("/_stats", stats),
            Route("/_requests", requests),
            Route("/_wait", wait, methods=["POST"]),
        ]
    )


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()


@dataclass
class FakeUpstream:
    """A running fake: its address, its knobs and what it has seen."""

    url: str  # the server's root, e.g. for Ollama detection
    state: FakeState = field(repr=False)

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    @property
    def requests(self) -> list[dict[str, Any]]:
        return self.state.requests

    def set(self, **knobs: Any) -> Knobs:
        return self.state.set(**knobs)

    def reset(self) -> None:
        self.state.reset()

    def stats(self) -> Stats:
        return self.state.stats()

    async def wait_for(self, predicate: Callable[[Stats], bool], timeout: float = 10.0) -> Stats:
        """Wait, without blocking the event loop, until the counters satisfy ``predicate``."""
        return await asyncio.to_thread(self.state.wait_until, predicate, timeout)


def _listening_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    # Listening before the server loop starts: early connections wait in the backlog.
    sock.listen(2048)
    return sock


@contextmanager
def run_fake_upstream(host: str = "127.0.0.1", port: int = 0) -> Iterator[FakeUpstream]:
    """Serve a fake upstream from a background thread for the duration of the block."""
    state = FakeState()
    sock = _listening_socket(host, port)
    config = uvicorn.Config(
        create_app(state), log_config=None, lifespan="off", timeout_graceful_shutdown=2
    )
    server = _Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        if not server.ready.wait(10):
            raise RuntimeError("fake upstream did not start")
        yield FakeUpstream(url=f"http://{host}:{sock.getsockname()[1]}", state=state)
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    sock = _listening_socket(args.host, args.port)
    print(f"http://{args.host}:{sock.getsockname()[1]}/v1", flush=True)
    config = uvicorn.Config(create_app(FakeState()), log_level="warning", lifespan="off")
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
