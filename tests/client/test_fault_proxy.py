"""The fault proxy itself (tests/support/fault_proxy.py): each fault does what it says, and one
seed gives one sequence of faults."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from support.fault_proxy import FaultProxy

BODY = b"x" * 20_000


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def target() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def get(url: str) -> httpx.Response:
    # A new connection per request: faults are drawn per connection.
    with httpx.Client(timeout=10) as client:
        return client.get(url)


def test_forwards_untouched_without_faults(target: str) -> None:
    with FaultProxy(target) as proxy:
        assert get(proxy.url).content == BODY
        assert proxy.stats().bytes_down > len(BODY)


def test_cut_next_truncates_the_response_mid_body(target: str) -> None:
    with FaultProxy(target) as proxy:
        proxy.cut_next(500)
        with pytest.raises(httpx.TransportError):
            get(proxy.url)
        assert proxy.stats().cut == 1
        assert get(proxy.url).content == BODY  # only the next connection was cut


def test_drop_rate_one_refuses_every_connection(target: str) -> None:
    with FaultProxy(target) as proxy:
        proxy.set(drop_rate=1.0)
        with pytest.raises(httpx.TransportError):
            get(proxy.url)
        proxy.set(reset=True)
        assert get(proxy.url).status_code == 200
        assert proxy.stats().dropped == 1


def test_down_refuses_connects_and_up_listens_on_the_same_port(target: str) -> None:
    with FaultProxy(target) as proxy:
        port = proxy.port
        proxy.down()
        with pytest.raises(httpx.ConnectError):
            get(proxy.url)
        proxy.up()
        assert proxy.port == port
        assert get(proxy.url).content == BODY


def test_one_seed_gives_one_sequence_of_faults(target: str) -> None:
    def outcomes(seed: int) -> list[bool]:
        with FaultProxy(target, seed=seed) as proxy:
            proxy.set(drop_rate=0.3, cut_rate=0.3, cut_after=(0, 5000))
            seen = []
            for _ in range(20):
                try:
                    seen.append(get(proxy.url).content == BODY)
                except httpx.TransportError:
                    seen.append(False)
            return seen

    first = outcomes(11)
    assert first == outcomes(11)
    assert not all(first) and any(first)


async def test_usable_from_async_tests(target: str) -> None:
    async with FaultProxy(target) as proxy:
        proxy.set(delay_s=0.01)
        async with httpx.AsyncClient(timeout=10) as client:
            assert (await client.get(proxy.url)).content == BODY
