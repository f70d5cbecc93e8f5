"""The store's connection pool under a burst: more concurrent commands than connections wait
for one instead of failing (redis-py's default pool refuses at once, which the gateway would
have answered with 503s)."""

from __future__ import annotations

import asyncio

from gateway.store.connection import POOL_SIZE, connect


async def test_a_burst_larger_than_the_pool_waits_instead_of_failing(store_url: str) -> None:
    client = connect(store_url)
    try:
        await client.delete("burst")
        count = client.register_script("return redis.call('INCR', KEYS[1])")
        results = await asyncio.gather(*(count(keys=["burst"]) for _ in range(3 * POOL_SIZE)))
        assert sorted(results) == list(range(1, 3 * POOL_SIZE + 1))
    finally:
        await client.aclose()
