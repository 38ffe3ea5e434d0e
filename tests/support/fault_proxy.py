"""A TCP fault proxy on loopback (stdlib asyncio): the network between a client and chatkeep,
made to fail on demand. It listens on 127.0.0.1 (port 0 unless told), forwards every connection
to a target, and on each new connection draws from a seeded ``random.Random`` whether to

- **drop** it: close it at once, before a byte reaches the target (a refused/reset connect);
- **cut** its response: forward the request, then close both sides after ``cut_after`` bytes of
  the response (0: the server did the work but the client never hears of it — the case an
  idempotent retry exists for; a few hundred: mid-body, mid-stream);
- **delay** it: wait ``delay_s`` before forwarding each chunk of the response (``delay_next``:
  only the next connections, e.g. longer than the client's timeout);

and it can go **down** (stop listening and reset every open connection: connect refused) and come
back **up** on the same port. ``cut_next(n)`` cuts exactly the next connections, for tests that
need a cut at a known point rather than at a rate.

The proxy runs its own event loop in a thread, so sync and async tests use it alike::

    with FaultProxy(server.url, seed=7) as proxy:        # or: async with FaultProxy(...)
        proxy.set(drop_rate=0.1, cut_rate=0.2, cut_after=(0, 400))
        client = Client(base_url=proxy.url, ...)
        ...
        assert proxy.stats().cut > 0

Decisions are drawn in the order connections are accepted, so one seed gives one sequence of
faults (which request meets which fault still depends on scheduling).
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

CHUNK = 65_536


@dataclass(frozen=True)
class Faults:
    drop_rate: float = 0.0  # probability a new connection is closed before it is forwarded
    cut_rate: float = 0.0  # probability a connection's response is cut
    cut_after: int | tuple[int, int] = 0  # response bytes let through before a cut (or a range)
    delay_s: float = 0.0  # before each chunk of the response


@dataclass
class ProxyStats:
    connections: int = 0
    dropped: int = 0
    cut: int = 0
    bytes_up: int = 0  # client -> target
    bytes_down: int = 0  # target -> client


class FaultProxy:
    """See the module docstring."""

    def __init__(self, target: str, *, seed: int = 0, port: int = 0) -> None:
        parts = urlsplit(target if "://" in target else f"tcp://{target}")
        assert parts.hostname and parts.port, f"target needs a host and a port: {target}"
        self.target_host, self.target_port = parts.hostname, parts.port
        self._scheme = parts.scheme if parts.scheme in ("http", "https") else "http"
        self._port = port
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._faults = Faults()
        self._cut_next: list[int] = []
        self._delay_next: list[float] = []
        self._stats = ProxyStats()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    # ---- knobs (any thread) -------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"{self._scheme}://127.0.0.1:{self._port}"

    def set(self, **faults: Any) -> Faults:
        """Change fault knobs (``Faults`` fields); ``set()`` with ``reset=True`` clears them."""
        with self._lock:
            base = Faults() if faults.pop("reset", False) else self._faults
            self._faults = replace(base, **faults)
            return self._faults

    def cut_next(self, after_bytes: int, count: int = 1) -> None:
        """Cut the responses of the next ``count`` connections after ``after_bytes`` bytes."""
        with self._lock:
            self._cut_next.extend([after_bytes] * count)

    def delay_next(self, seconds: float, count: int = 1) -> None:
        """Hold the responses of the next ``count`` connections back by ``seconds`` (the request
        still reaches the target at once: a client that times out has already been served)."""
        with self._lock:
            self._delay_next.extend([seconds] * count)

    def stats(self) -> ProxyStats:
        with self._lock:
            return replace(self._stats)

    def down(self) -> None:
        """Stop listening (connects are refused) and reset every open connection."""
        self._call(self._down())

    def up(self) -> None:
        """Listen again on the same port."""
        self._call(self._listen())

    # ---- life ---------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            ready.set()
            self._loop.run_forever()
            self._loop.close()

        self._thread = threading.Thread(target=run, daemon=True, name="fault-proxy")
        self._thread.start()
        ready.wait(10)
        self._call(self._listen())
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> FaultProxy:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.stop)

    def _call(self, coro: Any) -> Any:
        assert self._loop is not None, "the proxy is not running"
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    # ---- the proxy's own loop -----------------------------------------------------------

    async def _listen(self) -> None:
        if self._server is not None:
            return
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", self._port, reuse_address=True
        )
        self._port = self._server.sockets[0].getsockname()[1]

    async def _down(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._writers):
            _abort(writer)
        if server is not None:
            with suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 5)

    async def _shutdown(self) -> None:
        """Down, and every connection's task finished, so nothing is left on a closed loop."""
        await self._down()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _decide(self) -> tuple[bool, int | None, float]:
        """Drop?, cut after how many bytes (None: never), delay: one draw per connection."""
        with self._lock:
            self._stats.connections += 1
            faults = self._faults
            delay = self._delay_next.pop(0) if self._delay_next else faults.delay_s
            if self._cut_next:
                return False, self._cut_next.pop(0), delay
            if self._random.random() < faults.drop_rate:
                self._stats.dropped += 1
                return True, None, delay
            cut = None
            if self._random.random() < faults.cut_rate:
                after = faults.cut_after
                cut = after if isinstance(after, int) else self._random.randint(*after)
            return False, cut, delay

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        drop, cut_after, delay = self._decide()
        if drop:
            _abort(writer)
            return
        self._writers.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            self._writers.discard(writer)
            _abort(writer)
            return
        self._writers.add(up_writer)
        upward = asyncio.create_task(self._pipe(reader, up_writer, "bytes_up", None, 0.0))
        downward = asyncio.create_task(
            self._pipe(up_reader, writer, "bytes_down", cut_after, delay)
        )
        try:
            await asyncio.wait({upward, downward}, return_when=asyncio.FIRST_COMPLETED)
            if downward.done():
                # The response side ended (cut, or the target closed): end the whole connection.
                upward.cancel()
            else:
                # The client finished sending (half-close); let the response drain.
                await downward
        finally:
            for task in (upward, downward):
                task.cancel()
                with suppress(BaseException):
                    await task
            # A cut ends with a reset, as a dead network would; a normal end with a close.
            end_with = _abort if downward.done() and self._was_cut(downward) else _close
            for end in (writer, up_writer):
                self._writers.discard(end)
                end_with(end)

    @staticmethod
    def _was_cut(task: asyncio.Task[bool]) -> bool:
        return not task.cancelled() and task.exception() is None and task.result()

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        counter: str,
        cut_after: int | None,
        delay: float,
    ) -> bool:
        """Copy until EOF; True when it stopped because of a cut."""
        sent = 0
        try:
            while True:
                data = await reader.read(CHUNK)
                if not data:
                    with suppress(OSError):
                        if writer.can_write_eof():
                            writer.write_eof()
                    return False
                if delay:
                    await asyncio.sleep(delay)
                # Counted before it is written, so a test that has the bytes sees them counted.
                if cut_after is not None and sent + len(data) > cut_after:
                    data = data[: cut_after - sent]
                    self._count(counter, len(data), cut=True)
                    if data:
                        writer.write(data)
                        await writer.drain()
                    return True
                self._count(counter, len(data))
                writer.write(data)
                await writer.drain()
                sent += len(data)
        except (ConnectionError, OSError):
            return False

    def _count(self, counter: str, size: int, *, cut: bool = False) -> None:
        with self._lock:
            setattr(self._stats, counter, getattr(self._stats, counter) + size)
            if cut:
                self._stats.cut += 1


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with a reset (RST), as a dead network or a killed peer would."""
    transport = writer.transport
    with suppress(Exception):
        transport.abort()


def _close(writer: asyncio.StreamWriter) -> None:
    with suppress(Exception):
        writer.close()


@contextmanager
def run_fault_proxy(target: str, *, seed: int = 0) -> Iterator[FaultProxy]:
    with FaultProxy(target, seed=seed) as proxy:
        yield proxy
