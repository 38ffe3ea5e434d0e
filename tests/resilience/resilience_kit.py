"""What the resilience tests share (imported by name, ``from resilience_kit import ...``, because
tests/resilience has no ``__init__.py``; the fixtures are in conftest.py):

- ``server_env``, ``start_server``, ``run_audit``: ``chatkeep serve --workers N`` on a test's
  database, wired to the fake upstream, that a test can kill -9; ``chatkeep audit --json``;
- ``read_stream``: a byte-exact reader of event streams that can hang up anywhere, even inside
  an event or a UTF-8 character, and that survives the server dying under it;
- ``Target``: which worker process is at the other end of a connection, and clients pinned to a
  chosen worker, so a test can send a request to a process that does not own a generation;
- ``Store``: the database read directly, past the API.
"""

from __future__ import annotations

import asyncio
import codecs
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from chatkeep.store.tables import ChatSession, Message, table
from support.factories import Account, make_accounts
from support.fake_upstream import FakeUpstream
from support.server import REPO, ServerProcess

FAKE_MODEL = "fake-model"
_LINE_END = re.compile(r"\r\n|\r|\n")
S = table(ChatSession)
M = table(Message)


def server_env(db_url: str, data_dir: Path, fake: FakeUpstream, **extra: Any) -> dict[str, str]:
    """The environment of ``chatkeep serve`` (and ``chatkeep audit``) for a test: the fake
    upstream is the only model, no rate limit, and whatever ``extra`` adds (``LEASE_TTL_S=2``
    for ``CHATKEEP_LEASE_TTL_S``)."""
    env = {
        "CHATKEEP_DATABASE_URL": db_url,
        "CHATKEEP_DATA_DIR": str(data_dir),
        "CHATKEEP_OPENAI_BASE_URL": fake.base_url,
        "CHATKEEP_OPENAI_API_KEY": "test",
        "CHATKEEP_DEMO_MODEL": "false",
        "CHATKEEP_DEFAULT_MODEL": FAKE_MODEL,
        "CHATKEEP_OLLAMA_AUTODETECT": "false",
        "CHATKEEP_RATE_LIMIT_PER_MINUTE": "0",
    }
    env.update({f"CHATKEEP_{key.upper()}": str(value) for key, value in extra.items()})
    return env


def start_server(env: dict[str, str], workers: int, log_path: Path) -> ServerProcess:
    return ServerProcess(env, workers=workers, log_path=log_path).start(timeout=60)


def run_audit(env: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """``chatkeep audit --json`` on the test's database: its exit status and findings."""
    done = subprocess.run(
        [sys.executable, "-m", "chatkeep.cli", "audit", "--json"],
        env={**os.environ, **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    try:
        report: dict[str, Any] = json.loads(done.stdout)
    except ValueError:
        report = {"stdout": done.stdout[-2000:], "stderr": done.stderr[-2000:]}
    return done.returncode, report


async def new_accounts(db_url: str, count: int, name: str = "user") -> list[Account]:
    """Accounts with an API key each, under names unique to this call, so that a shared
    database takes many. At most two new chats per user keep ``chatkeep audit``'s "session
    spikes" check (more than 2 sessions created within 5 s by one user, source report metric
    2) quiet."""
    tag = uuid.uuid4().hex[:8]
    made = await make_accounts(db_url, *(f"{name}-{tag}-{n}" for n in range(count)))
    return list(made.values())


# ---- event streams, read byte by byte ---------------------------------------------------------


@dataclass(frozen=True)
class Event:
    event: str
    data: Any  # decoded JSON
    id: str | None = None

    @property
    def offset(self) -> int:
        """The character offset of a ``delta`` (its id is ``<reply_id>:<offset>``, SPEC 4)."""
        assert self.id is not None, f"{self.event} event without an id"
        return int(self.id.rpartition(":")[2])


class SseParser:
    """An incremental ``text/event-stream`` parser (WHATWG HTML, "Parsing an event stream"):
    bytes in, complete events out. An event cut off before its blank line is never dispatched,
    and the id that a reconnect sends (``last_event_id``) only moves when an event is, so a
    client that hangs up mid-event resumes after the last whole one."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._buffer = ""
        self._event, self._data = "", []
        self._id_buffer: str | None = None  # persists from event to event, as the spec says
        self._this_id: str | None = None  # the id line of the event being read, if any
        self.last_event_id: str | None = None

    def feed(self, chunk: bytes) -> list[Event]:
        self._buffer += self._decoder.decode(chunk)
        found: list[Event] = []
        while (end := _LINE_END.search(self._buffer)) is not None:
            if end.group() == "\r" and end.end() == len(self._buffer):
                break  # maybe the first half of a CRLF: wait for the next byte
            line, self._buffer = self._buffer[: end.start()], self._buffer[end.end() :]
            event = self._line(line)
            if event is not None:
                found.append(event)
        return found

    def _line(self, line: str) -> Event | None:
        if not line:  # dispatch
            self.last_event_id = self._id_buffer
            event = None
            if self._data:
                data = json.loads("\n".join(self._data))
                event = Event(self._event or "message", data, self._this_id)
            self._event, self._data, self._this_id = "", [], None
            return event
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\x00" not in value:
            self._id_buffer = self._this_id = value or None
        return None


@dataclass
class Read:
    """One request's answer as a client saw it."""

    status: int = 0
    events: list[Event] = field(default_factory=list)
    problem: dict[str, Any] | None = None
    served_by: int | None = None  # the pid of the server process at the other end
    cut: bool = False  # we hung up before the stream ended
    broken: str | None = None  # the server went away (an httpx error)
    last_event_id: str | None = None

    @property
    def final(self) -> Event | None:
        """The ``done`` or ``error`` event, if the stream got that far."""
        ends = [e for e in self.events if e.event in ("done", "error")]
        return ends[-1] if ends else None

    def deltas(self) -> list[tuple[int, str]]:
        return [(e.offset, e.data["text"]) for e in self.events if e.event == "delta"]


async def read_stream(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    json_body: Any = None,
    last_event_id: str | None = None,
    cut_at_byte: int | None = None,
    into: Read | None = None,
    target: Target | None = None,
    account: Account | None = None,
) -> Read:
    """Send a request whose answer is an event stream (or a problem) and read it to the end,
    or hang up after ``cut_at_byte`` bytes of the body, wherever they fall: between events,
    inside an event, inside a UTF-8 character. ``into`` lets a caller watch the events arrive;
    a server that dies mid-stream ends the read with ``broken`` set, not an exception.
    ``account`` overrides the client's credentials."""
    read = into or Read()
    headers = {"Accept": "text/event-stream", **(account.headers if account else {})}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    parser = SseParser()
    try:
        async with client.stream(method, url, json=json_body, headers=headers) as response:
            read.status = response.status_code
            if target is not None:
                read.served_by = target.served_by(response)
            if not response.headers.get("content-type", "").startswith("text/event-stream"):
                read.problem = json.loads(await response.aread())
                return read
            received = 0
            async for chunk in response.aiter_raw():
                if cut_at_byte is not None and received + len(chunk) >= cut_at_byte:
                    read.events += parser.feed(chunk[: cut_at_byte - received])
                    read.cut = True
                    break
                received += len(chunk)
                read.events += parser.feed(chunk)
    except httpx.HTTPError as exc:
        read.broken = f"{type(exc).__name__}: {exc}"
    finally:
        read.last_event_id = parser.last_event_id or last_event_id
    return read


# ---- which process answers ----------------------------------------------------------------------


@dataclass
class Target:
    """A chatkeep server and an account on it. ``pgid`` is the process group of a
    ``ServerProcess`` (None: a server in this process)."""

    url: str
    account: Account
    pgid: int | None = None

    @property
    def port(self) -> int:
        return int(self.url.rpartition(":")[2])

    def client(self, *, connections: int = 1, timeout: float = 60) -> httpx.AsyncClient:
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        return httpx.AsyncClient(
            base_url=self.url, headers=self.account.headers, timeout=timeout, limits=limits
        )

    def served_by(self, response: httpx.Response) -> int | None:
        """The pid of the server process holding this response's connection (while it is open):
        the server end of the TCP connection in /proc/net/tcp, then its socket among the
        process group's open files."""
        if self.pgid is None:
            return os.getpid()
        stream = response.extensions.get("network_stream")
        if stream is None:
            return None
        client_port = stream.get_extra_info("client_addr")[1]
        return socket_owner(self.pgid, self.port, client_port)

    async def connect(
        self, want: Callable[[int], bool] = lambda pid: True, *, tries: int = 80
    ) -> tuple[httpx.AsyncClient, int]:
        """A client with one open connection to a worker that ``want``s it; uvicorn's workers
        share one listening socket, so new connections are tried until one lands there.
        Use it at once: an idle keep-alive connection is closed by the server after 5 s."""
        for _ in range(tries):
            client = self.client()
            response = await client.get("/readyz")
            pid = self.served_by(response)
            if response.status_code == 200 and pid is not None and want(pid):
                return client, pid
            await client.aclose()
            await asyncio.sleep(0.005)
        raise AssertionError(f"no connection reached a wanted worker in {tries} tries")

    async def spread(
        self, count: int, workers: int, *, minimum: int | None = None
    ) -> list[tuple[httpx.AsyncClient, int]]:
        """``count`` clients, each holding one connection: evenly over ``workers`` processes,
        or, with ``minimum``, at least that many on each and the rest wherever they land."""
        floor = -(-count // workers) if minimum is None else minimum
        taken: dict[int, int] = {}
        clients: list[tuple[httpx.AsyncClient, int]] = []

        def fits(pid: int) -> bool:
            if minimum is None:
                return taken.get(pid, 0) < floor
            others = {w: n for w, n in taken.items() if w != pid}
            unseen = workers - len(others) - 1
            needed = sum(max(0, floor - n) for n in others.values()) + unseen * floor
            return count - len(clients) - 1 >= needed

        try:
            while len(clients) < count:
                client, pid = await self.connect(fits, tries=400)
                taken[pid] = taken.get(pid, 0) + 1
                clients.append((client, pid))
        except BaseException:
            await asyncio.gather(*(c.aclose() for c, _ in clients))
            raise
        return clients


class WorkerPool:
    """Keep-alive connections to every worker, lent out one request at a time.

    Under load one worker tends to accept every new connection, so asking for a connection to a
    given worker by trial and error gets slow; the pool opens them once, evenly, and lends one
    that reaches the worker a test prefers. A connection that the test cut (or the server closed)
    is reopened on return and filed under whichever worker took it, so ``served_by`` on the
    response, not the preference, says where a request went.
    """

    def __init__(self, target: Target, clients: list[tuple[httpx.AsyncClient, int]]) -> None:
        self.target = target
        self._free = list(clients)
        self._all = [client for client, _ in clients]
        self._returned = asyncio.Condition()

    @classmethod
    async def open(cls, target: Target, size: int, workers: int) -> WorkerPool:
        return cls(target, await target.spread(size, workers))

    @asynccontextmanager
    async def lend(
        self, prefer: Callable[[int], bool] = lambda pid: True
    ) -> AsyncIterator[tuple[httpx.AsyncClient, int]]:
        async with self._returned:
            await self._returned.wait_for(lambda: bool(self._free))
            chosen = next((c for c in self._free if prefer(c[1])), self._free[0])
            self._free.remove(chosen)
        client = chosen[0]
        try:
            yield chosen
        finally:
            response = await client.get("/readyz")  # reopens a connection that was cut
            pid = self.target.served_by(response)
            async with self._returned:
                self._free.append((client, pid if pid is not None else -1))
                self._returned.notify()

    async def aclose(self) -> None:
        await asyncio.gather(*(client.aclose() for client in self._all))


def socket_owner(pgid: int, server_port: int, client_port: int) -> int | None:
    """The process of group ``pgid`` that holds the server end of a loopback connection."""
    inode = None
    for table_path in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table_path) as rows:
            for line in rows.read().splitlines()[1:]:
                fields = line.split()
                local, remote = fields[1], fields[2]
                if (
                    int(local.rpartition(":")[2], 16) == server_port
                    and int(remote.rpartition(":")[2], 16) == client_port
                ):
                    inode = fields[9]
    if inode is None:
        return None
    wanted = f"socket:[{inode}]"
    for pid in _group_members(pgid):
        try:
            if any(
                os.readlink(f"/proc/{pid}/fd/{fd}") == wanted
                for fd in os.listdir(f"/proc/{pid}/fd")
            ):
                return pid
        except OSError:
            continue
    return None


def _group_members(pgid: int) -> list[int]:
    """The processes of a server's group (its supervisor and workers)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getpgid(int(entry)) == pgid:
                    found.append(int(entry))
            except OSError:
                continue
    return found


def lease_pid(lease_owner: str | None) -> int | None:
    """``host:pid:token`` -> pid (the process generating a reply)."""
    if not lease_owner:
        return None
    return int(lease_owner.split(":")[-2])


# ---- the database, read directly ---------------------------------------------------------------


class Store:
    """Reads the database past the API, which could hide a duplicate or a lost row."""

    def __init__(self, db_url: str) -> None:
        self.engine: AsyncEngine = create_async_engine(db_url)

    async def messages(self) -> list[dict[str, Any]]:
        """Every message row of every session, oldest first."""
        query = (
            select(
                M.c.id,
                M.c.parent_id,
                M.c.role,
                M.c.content,
                M.c.status,
                M.c.error,
                M.c.lease_owner,
                M.c.seq,
                S.c.id.label("session_id"),
            )
            .join(S, S.c.pk == M.c.session_pk)
            .order_by(M.c.pk)
        )
        async with self.engine.connect() as conn:
            return [dict(row._mapping) for row in await conn.execute(query)]

    async def session(self, session_id: str) -> dict[str, Any] | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(S).where(S.c.id == session_id))).first()
        return dict(row._mapping) if row is not None else None

    async def dispose(self) -> None:
        await self.engine.dispose()


async def eventually(
    check: Callable[[], Any], *, timeout: float = 15.0, interval: float = 0.05, what: str = ""
) -> Any:
    """Poll ``check`` (sync or async) until it returns something truthy."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or check}")
        await asyncio.sleep(interval)


def echo(content: str) -> str:
    """What the fake upstream answers to a user message (``support.fake_upstream``)."""
    return f"Echo: {content}"
