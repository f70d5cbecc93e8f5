"""The store's connections: under a burst, more concurrent commands than connections wait for
one instead of failing (redis-py's default pool refuses at once, which the gateway would have
answered with 503s); after a Redis restart the broken ones are replaced, not failed; and the
``redis+sentinel://`` URL form."""

from __future__ import annotations

import asyncio

import pytest
from redis import exceptions as redis_errors

from gateway.config import SettingsError, load_settings
from gateway.errors import Unavailable
from gateway.store.connection import (
    POOL_SIZE,
    SentinelURL,
    WaitingConnectionPool,
    connect,
    execute,
    queue_script,
    reachable,
)
from tests.support.redis_server import RedisServer


async def test_a_burst_larger_than_the_pool_waits_instead_of_failing(store_url: str) -> None:
    client = connect(store_url)
    try:
        await client.delete("burst")
        count = client.register_script("return redis.call('INCR', KEYS[1])")
        results = await asyncio.gather(*(count(keys=["burst"]) for _ in range(3 * POOL_SIZE)))
        assert sorted(results) == list(range(1, 3 * POOL_SIZE + 1))
    finally:
        await client.aclose()


async def test_a_full_pool_refuses_after_its_timeout_and_a_released_connection_is_reused(
    redis_server,
) -> None:
    pool = WaitingConnectionPool.from_url(redis_server.url, max_connections=2, timeout=0.2)
    held = [await pool.get_connection(), await pool.get_connection()]
    with pytest.raises(redis_errors.ConnectionError, match="No connection available"):
        await pool.get_connection()
    waiting = asyncio.ensure_future(pool.get_connection())
    await asyncio.sleep(0.05)
    assert not waiting.done()  # waits for a free one, not a new one
    await pool.release(held[0])
    assert await asyncio.wait_for(waiting, 1) is held[0]
    await pool.release(held[1])
    await pool.release(held[0])
    assert len(pool._available_connections) == 2  # every connection came back
    await pool.disconnect()


async def test_a_pipelined_script_redis_forgot_runs_once_by_its_text(store_url: str) -> None:
    client = connect(store_url)
    try:
        await client.delete("counted", "plain")
        count = client.register_script("return redis.call('INCR', KEYS[1])")
        await client.script_flush()
        for _ in range(2):  # unknown, sent again as EVAL; then known by its digest
            async with client.pipeline(transaction=False) as pipe:
                queue_script(pipe, count, ["counted"], [])
                pipe.incr("plain")
                queue_script(pipe, count, ["counted"], [])
                replies = await execute(pipe)
        assert replies == [3, 2, 4]  # each command ran once, in order, replies in place
        assert await client.script_exists(count.sha) == [True]
    finally:
        await client.aclose()


async def test_connections_broken_by_a_restart_are_replaced_by_the_next_command(
    tmp_path,
) -> None:
    """#15 item 3: after a Redis restart every pooled connection is broken; without a retry,
    each one failed the first command that drew it (a burst of 503s, for seconds)."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    client = connect(server.url)
    try:
        await asyncio.gather(*(client.incr("n") for _ in range(100)))  # 100 pooled
        server.restart()
        replies = await asyncio.gather(
            *(client.incr("n") for _ in range(100)), return_exceptions=True
        )
        assert [r for r in replies if isinstance(r, Exception)] == []
        assert int(await client.get("n")) == 200  # each command ran once (AOF kept 100)
    finally:
        await client.aclose()
        server.stop()


async def test_commands_to_a_stopped_redis_fail_fast_as_unavailable(tmp_path) -> None:
    server = RedisServer(tmp_path / "redis")
    server.start()
    client = connect(server.url)
    try:
        await client.ping()
        server.stop()
        with pytest.raises(Unavailable), reachable("admission store"):
            await asyncio.wait_for(client.ping(), 10)  # refused: no hang
    finally:
        await client.aclose()


@pytest.mark.parametrize(
    ("url", "parsed"),
    [
        (
            "redis+sentinel://:s%40cret@10.0.0.1:26379,10.0.0.2:26380/gateway/2",
            SentinelURL([("10.0.0.1", 26379), ("10.0.0.2", 26380)], "gateway", 2, None, "s@cret"),
        ),
        (
            "redis+sentinel://app:pw@h:1/svc?sentinel_password=x",
            SentinelURL([("h", 1)], "svc", 0, "app", "pw", "x"),
        ),
    ],
)
def test_sentinel_urls(url: str, parsed: SentinelURL) -> None:
    assert SentinelURL.parse(url) == parsed


@pytest.mark.parametrize(
    "url",
    ["redis+sentinel://h1/svc", "redis+sentinel://h:1/", "redis+sentinel://h:1/svc/x"],
)
def test_a_bad_sentinel_url_is_a_settings_error(url: str) -> None:
    with pytest.raises(SettingsError, match="redis_url"):
        load_settings({"redis_url": url}, environ={})
