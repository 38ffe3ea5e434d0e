"""The Redis parts of the scale-out (docs/deploy.md) against a real ``redis-server``, one at a
time: the live relay's hand-over from a stored checkpoint (exactly once, G6), its fall-backs to
the checkpoints (gap, silent owner, lost Redis), cancel/delete signals (G5), and a rate limit
shared by two "replicas" (G8)."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from chatkeep.api.shared_limits import RedisLimiter
from chatkeep.problems import RateLimited
from chatkeep.turns.redis_relay import RedisRelay, stream_key
from chatkeep.turns.relay import Delta, Final, Relay
from chatkeep.turns.signals import Signals
from support.cluster import redis_server
from support.factories import new_id
from support.server import free_port

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    proc = redis_server(tmp_path_factory.mktemp("redis"), port)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture
async def relay_link(redis_url: str) -> AsyncIterator[RedisRelay]:
    link = RedisRelay(redis_url, maxlen=1000, ttl_s=30)
    yield link
    await link.aclose()


async def collect(
    link: RedisRelay, reply_id: str, offset: int, stored: tuple[int, bool] = (0, True)
) -> list[Delta | Final]:
    async def probe() -> tuple[int, bool]:
        return stored

    return [item async for item in link.follow(reply_id, offset, probe)]


async def test_reader_takes_over_from_the_checkpoint_exactly_once(relay_link: RedisRelay) -> None:
    """The checkpoint gave 6 characters; the stream's entries overlap it: the rest, once."""
    reply_id = new_id()
    key = stream_key(reply_id)
    for end, text in ((4, "abcd"), (8, "efgh"), (12, "ijkl")):
        await relay_link.redis.xadd(key, {"o": end, "t": text})
    await relay_link.redis.xadd(key, {"e": "done", "d": '{"content": "abcdefghijkl"}'})
    items = await collect(relay_link, reply_id, offset=6)
    assert items == [Delta(8, "gh"), Delta(12, "ijkl"), Final("done", {"content": "abcdefghijkl"})]


async def test_the_owner_publishes_every_delta_then_the_end(relay_link: RedisRelay) -> None:
    reply_id, relay = new_id(), Relay()
    publisher = asyncio.create_task(relay_link.publish(reply_id, relay))
    for text in ("abcd", "efgh", "ijkl"):
        relay.append(text)
        await asyncio.sleep(0.01)
    relay.close(Final("done", {"content": relay.text}))
    await publisher
    items = await collect(relay_link, reply_id, offset=0)
    deltas = [i for i in items if isinstance(i, Delta)]
    assert "".join(d.text for d in deltas) == "abcdefghijkl" and deltas[-1].offset == 12
    assert items[-1] == Final("done", {"content": "abcdefghijkl"})
    ttl = await relay_link.redis.ttl(stream_key(reply_id))
    assert 0 < ttl <= 30  # expires after the reply ended


async def test_a_gap_in_the_stream_hands_back_to_the_checkpoints(relay_link: RedisRelay) -> None:
    reply_id = new_id()
    await relay_link.redis.xadd(stream_key(reply_id), {"o": 20, "t": "late"})
    assert await collect(relay_link, reply_id, offset=4) == []


async def test_a_silent_owner_hands_back_once_the_stored_text_moved_on(
    relay_link: RedisRelay,
) -> None:
    """An owner that never published (no Redis there, or lost it): after one quiet XREAD BLOCK,
    the stored text is ahead of the reader, so the reader goes back to the checkpoints."""
    items = await asyncio.wait_for(collect(relay_link, new_id(), 0, stored=(10, True)), 10)
    assert items == []


async def test_lost_redis_hands_back_at_once(tmp_path: Path) -> None:
    port = free_port()
    proc: subprocess.Popen[bytes] = redis_server(tmp_path, port)
    link = RedisRelay(f"redis://127.0.0.1:{port}/0", maxlen=1000, ttl_s=30)
    try:
        reply_id, relay = new_id(), Relay()
        publisher = asyncio.create_task(link.publish(reply_id, relay))
        relay.append("before")
        reader = asyncio.create_task(collect(link, reply_id, 0))
        await asyncio.sleep(0.2)
        proc.kill()
        proc.wait(timeout=10)
        relay.append(" after")
        relay.close(Final("done", {}))
        await asyncio.wait_for(publisher, 10)  # gives up on this reply, raises nothing
        items = await asyncio.wait_for(reader, 10)
        assert all(isinstance(i, Delta) for i in items)  # no final: the caller reads the row
    finally:
        if proc.poll() is None:
            proc.kill()
        await link.aclose()


async def test_cancel_and_delete_reach_the_owner(redis_url: str) -> None:
    got: list[object] = []
    owner = Signals(redis_url, on_cancel=got.append, on_delete=got.append)
    other = Signals(redis_url, on_cancel=lambda _: None, on_delete=lambda _: None)
    owner.start()
    try:
        await asyncio.wait_for(owner.subscribed.wait(), 10)
        await other.cancelled("reply-1")
        await other.deleted(42)
        async with asyncio.timeout(10):
            while len(got) < 2:
                await asyncio.sleep(0.01)
        assert got == ["reply-1", 42]
    finally:
        await owner.stop()
        await other.stop()


async def test_a_rate_limit_is_shared_by_every_replica(redis_url: str) -> None:
    replicas = [RedisLimiter(redis_url) for _ in range(3)]
    key = new_id()
    for n in range(10):
        await replicas[n % 3].hit(key, limit=10)
    for limiter in replicas:
        with pytest.raises(RateLimited) as refused:
            await limiter.check(key, limit=10)
        with pytest.raises(RateLimited) as refused:
            await limiter.hit(key, limit=10)
        assert 1 <= int(refused.value.headers["Retry-After"]) <= 60
    await replicas[0].check(key, limit=11)  # a check counts nothing
    await replicas[0].hit(key, limit=11)
    await replicas[0].hit(new_id(), limit=10)  # another user is not affected
    for limiter in replicas:
        await limiter.aclose()


async def test_without_redis_the_fallback_counts() -> None:
    limiter = RedisLimiter(f"redis://127.0.0.1:{free_port()}/0")
    await limiter.hit("k", limit=2)
    await limiter.hit("k", limit=2)
    with pytest.raises(RateLimited):
        await limiter.hit("k", limit=2)
    await limiter.aclose()
