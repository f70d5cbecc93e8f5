"""The store's connection pool under a burst: more concurrent commands than connections wait
for one instead of failing (redis-py's default pool refuses at once, which the gateway would
have answered with 503s)."""

from __future__ import annotations

import asyncio

import pytest
from redis import exceptions as redis_errors

from gateway.store.connection import (
    POOL_SIZE,
    WaitingConnectionPool,
    connect,
    execute,
    queue_script,
)


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
