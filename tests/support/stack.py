"""A running test server and its two accounts (the ``stack`` fixture's value)."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from chatkeep.settings import Settings
from support.factories import Account
from support.server import ServerThread


@dataclass
class Stack:
    """A running server and two accounts that must never see each other's data (G7)."""

    url: str
    server: ServerThread
    alice: Account
    bob: Account
    settings: Settings

    def client(self, account: Account | None = None, **kwargs: object) -> httpx.AsyncClient:
        headers = (account or self.alice).headers
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=30, **kwargs)  # type: ignore[arg-type]
