"""A throwaway PostgreSQL cluster for the test suite.

One cluster per test session: ``initdb`` into a temporary directory, ``pg_ctl start`` on a free
TCP port on 127.0.0.1 (trust auth, loopback only, ``fsync=off``), one database per test or
fixture via :meth:`PostgresCluster.create_database`. Starting takes well under a second here.

PostgreSQL refuses to run as root, so when the tests run as root (CI) the server tools run as the
``postgres`` OS user and the temporary directory is handed to that user; as any other user (a
developer laptop) they run as that user. The client side (``psql``, asyncpg) runs as whoever we are.

The cluster is stopped (``pg_ctl stop -m immediate``) and its directory removed by the fixture's
finalizer and, as a backstop, at interpreter exit. A cluster whose owning process died without
either (SIGKILL) is cleaned up by the next cluster that starts.

Use from ``tests/conftest.py``::

    from support.postgres import postgres_cluster, postgres_url  # noqa: F401

then ask for ``postgres_cluster`` (session scope, a :class:`PostgresCluster`) or ``postgres_url``
(function scope, the URL of a fresh database that is dropped afterwards).

Environment:

- ``CHATKEEP_TEST_POSTGRES=skip``: tests that need PostgreSQL are skipped. Otherwise a missing
  PostgreSQL is an error, not a skip: CI must really run them.
- ``CHATKEEP_PG_BINDIR``: directory holding ``initdb``/``pg_ctl``/``postgres``/``psql``.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

__all__ = [
    "PostgresCluster",
    "PostgresError",
    "find_bindir",
    "postgres_available",
    "postgres_cluster",
    "postgres_url",
    "require_postgres",
]

SKIP_ENV = "CHATKEEP_TEST_POSTGRES"
BINDIR_ENV = "CHATKEEP_PG_BINDIR"
SUPERUSER = "postgres"
SERVER_OS_USER = "postgres"  # who runs the server when we are root
HOST = "127.0.0.1"

_SERVER_TOOLS = ("initdb", "pg_ctl", "postgres")
_CLIENT_TOOLS = ("psql",)
_DIR_PREFIX = "chatkeep-pg-"
_OWNER_FILE = "owner.pid"
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


class PostgresError(RuntimeError):
    """The test cluster could not be started or a command against it failed."""


# --------------------------------------------------------------------------------------------
# Finding the binaries


def _version_key(path: Path) -> tuple[int, ...]:
    # /usr/lib/postgresql/<version>/bin
    try:
        return tuple(int(part) for part in path.parent.name.split("."))
    except ValueError:
        return (-1,)


def _has_tools(bindir: Path) -> bool:
    return all(
        (bindir / tool).is_file() and os.access(bindir / tool, os.X_OK)
        for tool in _SERVER_TOOLS + _CLIENT_TOOLS
    )


@functools.cache
def find_bindir() -> Path | None:
    """The directory with PostgreSQL's server binaries, or None.

    Tries ``$CHATKEEP_PG_BINDIR``, ``pg_config --bindir``, the newest
    ``/usr/lib/postgresql/*/bin`` and finally ``initdb`` on ``$PATH``.
    """
    explicit = os.environ.get(BINDIR_ENV)
    if explicit:
        return Path(explicit) if _has_tools(Path(explicit)) else None

    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
                stdin=subprocess.DEVNULL,
            ).stdout.strip()
            if out:
                candidates.append(Path(out))
    candidates.extend(
        sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True)
    )
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).resolve().parent)

    for candidate in candidates:
        if _has_tools(candidate):
            return candidate
    return None


def postgres_available() -> bool:
    """Whether PostgreSQL's server binaries (and psql) can be found."""
    return find_bindir() is not None


# --------------------------------------------------------------------------------------------
# Helpers


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _clean_env() -> dict[str, str]:
    """Our environment without PG* variables that could redirect the tools elsewhere."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PGCONNECT_TIMEOUT"] = "10"
    env["PGAPPNAME"] = "chatkeep-tests"
    env.setdefault("LC_ALL", "C")
    return env


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_postmaster(pid: int) -> bool:
    if not _pid_alive(pid):
        return False
    try:
        return b"postgres" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return not Path("/proc/self").exists()  # no procfs (macOS): trust the pid file
    except OSError:
        return True


def _server_account() -> pwd.struct_passwd | None:
    """The account that runs the server: None means "whoever we are"."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVER_OS_USER)
    except KeyError:
        raise PostgresError(
            f"running as root, and PostgreSQL refuses to run as root, but there is no "
            f"{SERVER_OS_USER!r} OS user to run it as (install Debian's postgresql package or "
            f"`useradd --system {SERVER_OS_USER}`)"
        ) from None


def _base_tmpdir() -> str:
    # As root, the server user must be able to reach the directory: /tmp is world-traversable,
    # while $TMPDIR might be under /root.
    return "/tmp" if os.geteuid() == 0 else tempfile.gettempdir()


def _quote_ident(name: str) -> str:
    if not _NAME_RE.fullmatch(name):
        raise ValueError(f"not a plain database name: {name!r} (use [A-Za-z_][A-Za-z0-9_]*)")
    return '"' + name + '"'


# --------------------------------------------------------------------------------------------
# The cluster

_LIVE: set[PostgresCluster] = set()
_LIVE_LOCK = threading.Lock()


def _stop_all_at_exit() -> None:
    with _LIVE_LOCK:
        clusters = list(_LIVE)
    for cluster in clusters:
        with contextlib.suppress(BaseException):
            cluster.stop()


atexit.register(_stop_all_at_exit)


class PostgresCluster:
    """A private PostgreSQL server in a temporary directory, listening on 127.0.0.1."""

    def __init__(
        self,
        bindir: Path | None = None,
        *,
        max_connections: int = 300,
        extra_settings: dict[str, str] | None = None,
    ) -> None:
        found = bindir or find_bindir()
        if found is None:
            raise PostgresError(
                "PostgreSQL server binaries not found (looked at $CHATKEEP_PG_BINDIR, "
                "pg_config --bindir, /usr/lib/postgresql/*/bin and $PATH); run `make system-deps`"
            )
        self.bindir = found
        self.host = HOST
        self.user = SUPERUSER
        self.port = 0
        self.max_connections = max_connections
        self.extra_settings = dict(extra_settings or {})
        self.tmpdir: Path | None = None
        self.startup_seconds: float | None = None
        self._account: pwd.struct_passwd | None = None
        self._lock = threading.Lock()

    # ---- paths and process helpers

    @property
    def running(self) -> bool:
        return self.tmpdir is not None

    @property
    def datadir(self) -> Path:
        return self._require_tmp() / "data"

    @property
    def logfile(self) -> Path:
        return self._require_tmp() / "server.log"

    def _require_tmp(self) -> Path:
        if self.tmpdir is None:
            raise PostgresError("the cluster is not running")
        return self.tmpdir

    def _run_server_tool(
        self, args: list[str], *, timeout: float, cwd: Path
    ) -> subprocess.CompletedProcess[str]:
        """Run initdb/pg_ctl as the server account, output to a file (never a pipe: pg_ctl's
        server child would inherit it and keep it open)."""
        kwargs: dict[str, Any] = {}
        if self._account is not None:
            kwargs.update(user=self._account.pw_uid, group=self._account.pw_gid, extra_groups=[])
        with tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace") as out:
            proc = subprocess.run(
                args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=_clean_env(),
                timeout=timeout,
                check=False,
                **kwargs,
            )
            out.seek(0)
            return subprocess.CompletedProcess(args, proc.returncode, out.read(), "")

    def _log_tail(self, chars: int = 3000) -> str:
        try:
            return self.logfile.read_text(errors="replace")[-chars:]
        except (OSError, PostgresError):
            return "(no server log)"

    # ---- lifecycle

    def start(self) -> PostgresCluster:
        with self._lock:
            if self.tmpdir is not None:
                return self
            began = time.monotonic()
            self._account = _server_account()
            _reap_stale_clusters()
            tmp = Path(tempfile.mkdtemp(prefix=_DIR_PREFIX, dir=_base_tmpdir()))
            (tmp / _OWNER_FILE).write_text(str(os.getpid()))
            if self._account is not None:
                os.chown(tmp, self._account.pw_uid, self._account.pw_gid)
            self.tmpdir = tmp
            with _LIVE_LOCK:
                _LIVE.add(self)
            try:
                self._initdb()
                self._start_server()
            except BaseException:
                self._stop_locked()
                raise
            self.startup_seconds = time.monotonic() - began
            return self

    def _initdb(self) -> None:
        tmp = self._require_tmp()
        result = self._run_server_tool(
            [
                str(self.bindir / "initdb"),
                "--pgdata",
                str(self.datadir),
                "--username",
                self.user,
                "--auth",
                "trust",
                "--encoding",
                "UTF8",
                "--locale",
                "C",
                "--no-sync",
                "--no-instructions",
            ],
            timeout=120,
            cwd=tmp,
        )
        if result.returncode != 0:
            raise PostgresError(f"initdb failed ({result.returncode}):\n{result.stdout}")
        settings = {
            "listen_addresses": f"'{self.host}'",
            "unix_socket_directories": f"'{tmp}'",
            "max_connections": str(self.max_connections),
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "timezone": "'UTC'",
            "log_min_messages": "warning",
            "log_line_prefix": "'%m [%p] %q%u@%d '",
            **self.extra_settings,
        }
        with (self.datadir / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write("\n# chatkeep test cluster\n")
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())

    def _start_server(self) -> None:
        tmp = self._require_tmp()
        last = ""
        for _attempt in range(5):
            self.port = _free_port()
            result = self._run_server_tool(
                [
                    str(self.bindir / "pg_ctl"),
                    "start",
                    "--pgdata",
                    str(self.datadir),
                    "--log",
                    str(self.logfile),
                    "--options",
                    f"-p {self.port}",
                    "--wait",
                    "--timeout",
                    "60",
                    "--silent",
                ],
                timeout=90,
                cwd=tmp,
            )
            if result.returncode == 0:
                return
            last = f"{result.stdout}\n--- server log ---\n{self._log_tail()}"
            if "already in use" not in last and "could not bind" not in last:
                break  # not a port race: retrying won't help
        raise PostgresError(f"pg_ctl start failed:\n{last}")

    def restart(self, *, down_s: float = 0.0) -> None:
        """Kill the server (immediate mode: no clean shutdown, like a crash), stay down for
        ``down_s``, then start it on the same port with the same data."""
        tmp = self._require_tmp()
        pg_ctl = str(self.bindir / "pg_ctl")
        stopped = self._run_server_tool(
            [pg_ctl, "stop", "--pgdata", str(self.datadir), "--mode", "immediate", "--wait"],
            timeout=60,
            cwd=tmp,
        )
        if stopped.returncode != 0:
            raise PostgresError(f"pg_ctl stop failed:\n{stopped.stdout}")
        time.sleep(down_s)
        started = self._run_server_tool(
            [
                pg_ctl,
                "start",
                "--pgdata",
                str(self.datadir),
                "--log",
                str(self.logfile),
                "--options",
                f"-p {self.port}",
                "--wait",
                "--timeout",
                "60",
                "--silent",
            ],
            timeout=90,
            cwd=tmp,
        )
        if started.returncode != 0:
            raise PostgresError(f"pg_ctl start failed:\n{started.stdout}\n{self._log_tail()}")

    def stop(self) -> None:
        """Stop the server (immediate mode) and remove its directory. Idempotent."""
        with self._lock:
            self._stop_locked()

    def _stop_locked(self) -> None:
        tmp = self.tmpdir
        if tmp is None:
            return
        self.tmpdir = None
        with _LIVE_LOCK:
            _LIVE.discard(self)
        try:
            _stop_datadir(tmp, self.bindir, self._account)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def __enter__(self) -> PostgresCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- databases

    def url(self, database: str = "postgres", *, driver: str = "asyncpg") -> str:
        """SQLAlchemy URL of a database in this cluster (async driver by default)."""
        self._require_tmp()
        scheme = f"postgresql+{driver}" if driver else "postgresql"
        return f"{scheme}://{self.user}@{self.host}:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL with psql (as the superuser, over TCP); return unaligned tuples-only output."""
        self._require_tmp()
        try:
            result = subprocess.run(
                [
                    str(self.bindir / "psql"),
                    "--no-psqlrc",
                    "--quiet",
                    "--no-align",
                    "--tuples-only",
                    "--set",
                    "ON_ERROR_STOP=1",
                    "--host",
                    self.host,
                    "--port",
                    str(self.port),
                    "--username",
                    self.user,
                    "--dbname",
                    database,
                    "--command",
                    sql,
                ],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                env=_clean_env(),
                timeout=60,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise PostgresError(f"psql timed out running {sql!r}") from exc
        if result.returncode != 0:
            raise PostgresError(f"psql failed running {sql!r}:\n{result.stderr.strip()}")
        return result.stdout.strip()

    def create_database(self, name: str) -> str:
        """Create an empty database; return its async SQLAlchemy URL."""
        self.psql(f"CREATE DATABASE {_quote_ident(name)}")
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop a database if it exists, disconnecting whoever is still connected."""
        self.psql(f"DROP DATABASE IF EXISTS {_quote_ident(name)} WITH (FORCE)")

    def databases(self) -> set[str]:
        return set(self.psql("SELECT datname FROM pg_database").splitlines())

    def __repr__(self) -> str:
        state = f"{self.host}:{self.port} in {self.tmpdir}" if self.tmpdir else "stopped"
        return f"<PostgresCluster {state}>"


def _stop_datadir(tmp: Path, bindir: Path, account: pwd.struct_passwd | None) -> None:
    datadir = tmp / "data"
    pidfile = datadir / "postmaster.pid"
    try:
        pid = int(pidfile.read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return  # never started, or already stopped
    if not _is_postmaster(pid):
        return  # died long ago; don't signal whoever reused its pid
    kwargs: dict[str, Any] = {}
    if account is not None:
        kwargs.update(user=account.pw_uid, group=account.pw_gid, extra_groups=[])
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run(
            [str(bindir / "pg_ctl"), "stop", "--pgdata", str(datadir), "--mode", "immediate"]
            + ["--wait", "--timeout", "30", "--silent"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=tmp,
            env=_clean_env(),
            timeout=40,
            check=False,
            **kwargs,
        )
    # Backstop if pg_ctl could not do it: SIGQUIT is PostgreSQL's immediate shutdown.
    if not pidfile.exists() or not _is_postmaster(pid):
        return
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGQUIT)
        deadline = time.monotonic() + 5
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


def _reap_stale_clusters() -> None:
    """Stop and remove clusters left by test processes that died without cleaning up (SIGKILL).

    Only directories whose recorded owner process is gone are touched, so concurrent test runs on
    the same machine are safe.
    """
    bindir = find_bindir()
    if bindir is None:
        return
    account = _server_account()
    for tmp in Path(_base_tmpdir()).glob(_DIR_PREFIX + "*"):
        with contextlib.suppress(OSError, ValueError):
            if tmp.stat().st_uid not in {os.geteuid(), account.pw_uid if account else -1}:
                continue
            owner = int((tmp / _OWNER_FILE).read_text().strip())
            if owner == os.getpid() or _pid_alive(owner):
                continue
            _stop_datadir(tmp, bindir, account)
            shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# pytest fixtures


def require_postgres() -> None:
    """Skip if ``CHATKEEP_TEST_POSTGRES=skip``; fail loudly if PostgreSQL is missing."""
    if os.environ.get(SKIP_ENV, "").strip().lower() == "skip":
        pytest.skip(f"PostgreSQL tests disabled by {SKIP_ENV}=skip")
    if not postgres_available():
        pytest.fail(
            "PostgreSQL server binaries not found (initdb, pg_ctl, postgres, psql). "
            "Run `make system-deps`, point CHATKEEP_PG_BINDIR at them, or set "
            f"{SKIP_ENV}=skip to skip the PostgreSQL tests on purpose.",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """A running PostgreSQL cluster shared by the whole test session."""
    require_postgres()
    cluster = PostgresCluster()
    try:
        cluster.start()
    except PostgresError as exc:
        pytest.fail(f"could not start the PostgreSQL test cluster: {exc}", pytrace=False)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def postgres_url(postgres_cluster: PostgresCluster) -> Iterator[str]:
    """The async SQLAlchemy URL of a fresh, empty database, dropped after the test."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    url = postgres_cluster.create_database(name)
    try:
        yield url
    finally:
        postgres_cluster.drop_database(name)
