"""What the client commands share (SPEC 6.2): the server and key from ``--url``/``--api-key``
before the command, ``CHATKEEP_URL``/``CHATKEEP_API_KEY``, or the config file
(``<user config dir>/chatkeep/config.toml``: ``url = "…"``, ``api_key = "…"``); a ``Client``;
ids by unique prefix; and errors as one line on stderr with exit status 1, never a traceback.

These commands talk to a server over HTTP only: they never import the server's modules
(tests/test_layering.py).
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import platformdirs
import typer
from rich.console import Console

from chatkeep import (
    APIConnectionError,
    APIError,
    AuthenticationError,
    ChatkeepError,
    Client,
    NotFound,
    TurnError,
)

err = Console(stderr=True, soft_wrap=True, highlight=False)


def config_path() -> Path:
    return Path(platformdirs.user_config_dir("chatkeep")) / "config.toml"


@dataclass
class Connection:
    """The global options, filled in from the environment by Typer, and from the file here."""

    url: str | None = None
    api_key: str | None = None

    def resolved(self) -> tuple[str | None, str | None]:
        url, key = self.url, self.api_key
        if url is None or key is None:
            path = config_path()
            if path.is_file():
                try:
                    config: dict[str, Any] = tomllib.loads(path.read_text())
                except (OSError, tomllib.TOMLDecodeError) as exc:
                    fail(f"cannot read {path}: {exc}")
                url = url or config.get("url")
                key = key or config.get("api_key")
        return url, key


def connection(ctx: typer.Context) -> Connection:
    found = ctx.find_object(Connection)
    return found if found is not None else Connection()


def open_client(ctx: typer.Context, **options: Any) -> Client:
    url, key = connection(ctx).resolved()
    options.setdefault("max_retries", 2)
    options.setdefault("deadline", 15.0)
    return Client(base_url=url, api_key=key, **options)


def fail(message: str) -> NoReturn:
    err.print(f"[red]error:[/red] {message}")
    raise typer.Exit(1)


@contextmanager
def clean_errors(client: Client | None = None) -> Iterator[None]:
    """The SDK's exceptions as one clear line and exit status 1 (SPEC 6.2: no traceback)."""
    try:
        yield
    except AuthenticationError:
        fail("the server refused the API key (401); check --api-key or CHATKEEP_API_KEY")
    except APIConnectionError as exc:
        where = client.base_url if client is not None else "the server"
        fail(f"cannot reach chatkeep at {where}: {exc}")
    except TurnError as exc:
        fail(f"the reply failed: {exc.code}: {exc.message}")
    except APIError as exc:
        fail(f"{exc.detail} ({exc.status} {exc.code})")
    except ChatkeepError as exc:
        fail(str(exc))


def resolve_session(client: Client, ref: str) -> str:
    """A session id from an id or a unique prefix of one (SPEC 6.2)."""
    if len(ref) == 36:
        try:
            return client.sessions.get(ref).id
        except NotFound:
            fail(f"no chat {ref}")
    matches = [s.id for s in client.sessions.list() if s.id.startswith(ref)]
    matches += [s.id for s in client.sessions.list(archived=True) if s.id.startswith(ref)]
    if not matches:
        fail(f"no chat whose id starts with {ref!r}")
    if len(matches) > 1:
        fail(f"{ref!r} is the start of {len(matches)} chat ids; give more characters")
    return matches[0]
