"""``chatkeep.AsyncClient``: the exact mirror of ``Client`` (``_client.py``) over
``httpx.AsyncClient``, with ``await`` and ``async for``; what each method sends lives once in
``_calls.py``. Keep the two files in step: tests/client runs one test body against both."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from chatkeep import __version__
from chatkeep.client import _cache, _calls
from chatkeep.client._calls import NOT_GIVEN, Call, Write
from chatkeep.client._errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    NotFound,
    error_from_response,
)
from chatkeep.client._models import (
    Content,
    Message,
    Model,
    OutboxEntry,
    SearchHit,
    Session,
)
from chatkeep.client._outbox import OutboxStore, entry_call
from chatkeep.client._retry import RetryPolicy, async_retrying, is_retryable
from chatkeep.client._stream import AsyncTurnStream, StreamState

USER_AGENT = f"chatkeep-python/{__version__}"


class AsyncClient:
    """``async with AsyncClient(...) as ck:`` or ``await ck.aclose()``."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        max_retries: int = 5,
        timeout: float = 30.0,
        deadline: float = 60.0,
        backoff_base: float = 0.25,
        backoff_max: float = 8.0,
        outbox: str | Path | None = None,
        on_unauthorized: Callable[[], str | None | Awaitable[str | None]] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        url, key = _calls.resolve_config(base_url, api_key)
        self.base_url = url
        self._policy = RetryPolicy(
            max_retries=max_retries,
            deadline=deadline,
            backoff_base=backoff_base,
            backoff_max=backoff_max,
        )
        self._on_unauthorized = on_unauthorized
        self._http = httpx.AsyncClient(
            base_url=url,
            headers={"User-Agent": USER_AGENT, **_calls.auth_headers(key)},
            timeout=timeout,
            transport=transport,
        )
        self._outbox = OutboxStore(outbox) if outbox is not None else None
        self.sessions = AsyncSessions(self)
        self.messages = AsyncMessages(self)
        self.turns = AsyncTurns(self)
        self.models = AsyncModels(self)
        self.outbox = AsyncOutbox(self)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()
        if self._outbox is not None:
            self._outbox.close()

    async def search(self, q: str, limit: int | None = None) -> AsyncIterator[SearchHit]:
        """Hits across the caller's chats, best first, auto-paging; ``limit`` caps the total."""
        cursor: str | None = None
        left = limit
        while left is None or left > 0:
            page_size = min(100, left) if left is not None else 100
            body = (await self._request(_calls.search_page(q, page_size, cursor))).json()
            for hit in body["hits"]:
                yield SearchHit.model_validate(hit)
                if left is not None:
                    left -= 1
                    if left == 0:
                        return
            cursor = body.get("next_cursor")
            if not cursor:
                return

    # ---- the transport: retries, errors, credentials -------------------------------------

    async def _send_once(
        self, call: Call, headers: Mapping[str, str] | None = None
    ) -> httpx.Response:
        try:
            response = await self._http.request(
                call.method, call.path, json=call.json, params=call.params, headers=headers
            )
        except httpx.TimeoutException as exc:
            raise APITimeoutError(f"{call.method} {call.path}: timed out") from exc
        except httpx.TransportError as exc:
            raise APIConnectionError(f"{call.method} {call.path}: {exc!r}") from exc
        if response.is_success:
            return response
        raise error_from_response(response, response.content)

    async def _request(
        self, call: Call, headers: Mapping[str, str] | None = None
    ) -> httpx.Response:
        """One call with retries (SPEC 6.1); a 401 refreshes the credentials once (TC-6.1)."""
        try:
            return await async_retrying(self._policy)(self._send_once, call, headers)
        except AuthenticationError:
            if not await self._refresh_credentials():
                raise
            return await async_retrying(self._policy)(self._send_once, call, headers)

    async def _refresh_credentials(self) -> bool:
        if self._on_unauthorized is None:
            return False
        key = self._on_unauthorized()
        if inspect.isawaitable(key):
            key = await key
        if not key:
            return False
        self._http.headers.update(_calls.auth_headers(key))
        return True

    @asynccontextmanager
    async def _open_stream(
        self, call: Call, headers: Mapping[str, str]
    ) -> AsyncIterator[httpx.Response]:
        try:
            async with self._http.stream(
                call.method, call.path, json=call.json, headers=dict(headers)
            ) as response:
                if not response.is_success:
                    raise error_from_response(response, await response.aread())
                yield response
        except httpx.TimeoutException as exc:
            raise APITimeoutError(f"{call.method} {call.path}: timed out") from exc
        except httpx.TransportError as exc:
            raise APIConnectionError(f"{call.method} {call.path}: {exc!r}") from exc

    # ---- writes through the outbox ---------------------------------------------------------

    async def _write(self, write: Write) -> Any:
        """Send a write, or keep it in the outbox (SPEC 6.1): the parsed body, or ``queued``."""
        box = self._outbox
        if box is None:
            return (await self._request(write.call)).json()
        if box.has_pending():
            reachable = await self._flush_quietly()
            # A later write to a session never overtakes that session's queued writes.
            if not reachable or box.has_pending(write.session_id):
                box.enqueue(write)
                return write.queued
        try:
            return (await self._request(write.call)).json()
        except Exception as exc:
            if not is_retryable(exc):
                raise
            box.enqueue(write)
            return write.queued

    async def _flush_quietly(self) -> bool:
        """Flush before a write; False when the server could not be reached."""
        try:
            await self.outbox.flush()
        except Exception as exc:
            if is_retryable(exc):
                return False
            raise
        return True


class AsyncSessions:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def create(
        self,
        *,
        title: str | None = None,
        model: str | None = None,
        id: str | None = None,
        pinned: bool = False,
        archived: bool = False,
        created_at: datetime | None = None,
    ) -> Session:
        """``created_at`` (time-zone aware): keep another app's date on an import."""
        write = _calls.create_session(
            id=id,
            title=title,
            model=model,
            pinned=pinned,
            archived=archived,
            created_at=created_at,
        )
        body = await self._client._write(write)
        return body if isinstance(body, Session) else Session.model_validate(body)

    async def get(self, session_id: str) -> Session:
        """The session and its active path, with this client's queued messages after it."""
        box = self._client._outbox
        # The queue is read before the page: an entry another flush confirms in between is then
        # in the page, the queue, or both, never in neither (tests/client/test_cache_machine.py).
        queued = box.pending() if box else []
        try:
            response = await self._client._request(Call("GET", f"/api/sessions/{session_id}"))
            body = response.json()
        except (NotFound, APIConnectionError):
            offline = _cache.queued_session(session_id, queued)
            if offline is None:
                raise
            return offline
        return _cache.with_queued(Session.model_validate(body), queued)

    async def list(
        self, *, q: str | None = None, archived: bool = False, pinned: bool | None = None
    ) -> AsyncIterator[Session]:
        """Every session, newest first, page after page."""
        cursor: str | None = None
        while True:
            call = _calls.sessions_page(q=q, archived=archived, pinned=pinned, cursor=cursor)
            body = (await self._client._request(call)).json()
            for item in body["sessions"]:
                yield Session.model_validate(item)
            cursor = body.get("next_cursor")
            if not cursor:
                return

    async def update(
        self,
        session_id: str,
        *,
        title: str = NOT_GIVEN,
        model: str = NOT_GIVEN,
        pinned: bool = NOT_GIVEN,
        archived: bool = NOT_GIVEN,
        active_leaf_id: str = NOT_GIVEN,
    ) -> Session:
        call = _calls.update_session(
            session_id,
            title=title,
            model=model,
            pinned=pinned,
            archived=archived,
            active_leaf_id=active_leaf_id,
        )
        return Session.model_validate((await self._client._request(call)).json())

    async def delete(self, session_id: str) -> None:
        await self._client._request(Call("DELETE", f"/api/sessions/{session_id}"))


class AsyncMessages:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def append(
        self,
        session_id: str,
        *,
        role: str,
        content: Content,
        id: str | None = None,
        parent_id: str | None = NOT_GIVEN,
        model: str | None = None,
        status: str | None = None,
        error: dict[str, Any] | None = None,
        usage: dict[str, Any] | None = None,
        created_at: datetime | None = None,
    ) -> Message:
        """Append one message without generating. ``parent_id`` left out: after the active
        leaf; ``None``: a new root; an earlier message: a branch. ``created_at`` (time-zone
        aware): keep another app's date on an import; left out: the server's now."""
        body = _calls.message_body(
            role=role,
            content=content,
            parent_id=parent_id,
            model=model,
            status=status,
            error=error,
            usage=usage,
            created_at=created_at,
        )
        result = await self._client._write(_calls.append_message(session_id, id, body))
        return result if isinstance(result, Message) else Message.model_validate(result)

    async def append_many(
        self, session_id: str, items: Sequence[Mapping[str, Any]]
    ) -> list[Message]:
        """One atomic batch (G9): all saved, or none and ``Conflict``/``UnprocessableEntity``
        whose ``.problem["results"]`` says which item was refused."""
        result = await self._client._write(_calls.append_batch(session_id, items))
        return result if isinstance(result, list) else _calls.batch_messages(result)

    async def list(self, session_id: str, *, after_seq: int = 0) -> AsyncIterator[Message]:
        """Every branch's messages after ``after_seq``, by seq, page after page."""
        while True:
            call = _calls.messages_page(session_id, after_seq)
            body = (await self._client._request(call)).json()
            for item in body["messages"]:
                yield Message.model_validate(item)
            if body.get("next_after_seq") is None:
                return
            after_seq = int(body["next_after_seq"])


class AsyncTurns:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    def stream(
        self,
        session_id: str,
        content: Content,
        *,
        model: str | None = None,
        id: str | None = None,
        reply_id: str | None = None,
        parent_id: str | None = None,
        session: Mapping[str, Any] | None = None,
    ) -> AsyncTurnStream:
        """Send a user message and stream the reply (SPEC 4). ``session=`` creates the chat in
        the same request when it does not exist yet. Drops are resumed, never re-generated."""
        body = _calls.turn_body(
            content=content,
            message_id=id,
            reply_id=reply_id,
            parent_id=parent_id,
            model=model,
            session=session,
        )
        return AsyncTurnStream(self._client, StreamState(session_id, body))

    async def send(
        self,
        session_id: str,
        content: Content,
        *,
        model: str | None = None,
        id: str | None = None,
        reply_id: str | None = None,
        parent_id: str | None = None,
        session: Mapping[str, Any] | None = None,
    ) -> Message:
        """The final reply; ``TurnError`` when the stream ends with an ``error`` event."""
        options = {"model": model, "id": id, "reply_id": reply_id, "parent_id": parent_id}
        async with self.stream(session_id, content, session=session, **options) as stream:
            async for _ in stream:
                pass
            stream.state.raise_for_error()
            return stream.state.final_reply()

    async def cancel(self, session_id: str, reply_id: str) -> Message:
        call = Call("POST", f"/api/sessions/{session_id}/messages/{reply_id}/cancel")
        return Message.model_validate((await self._client._request(call)).json())


class AsyncModels:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def list(self) -> list[Model]:
        body = (await self._client._request(Call("GET", "/api/models"))).json()
        return [Model.model_validate(m) for m in body["models"]]


class AsyncOutbox:
    """Queued writes (SPEC 6.1); empty lists and ``flush() == 0`` without an outbox."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def pending(self) -> list[OutboxEntry]:
        box = self._client._outbox
        return box.pending() if box else []

    async def failed(self) -> list[OutboxEntry]:
        box = self._client._outbox
        return box.failed() if box else []

    async def flush(self) -> int:
        """Send queued writes in order; how many the server confirmed. Stops at the first that
        cannot reach the server (raising its error); a 4xx moves an entry to ``failed()``."""
        box = self._client._outbox
        if box is None:
            return 0
        sent = 0
        with box.flushing() as mine:
            if not mine:
                return 0
            for entry in box.pending():
                try:
                    await self._client._request(entry_call(entry))
                except APIError as exc:
                    if is_retryable(exc) or isinstance(exc, AuthenticationError):
                        raise
                    box.fail(entry, {**exc.problem, "status": exc.status, "code": exc.code})
                    continue
                box.confirm(entry)
                sent += 1
        return sent
