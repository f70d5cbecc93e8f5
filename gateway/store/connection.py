"""Open the store: ``redis://`` (or ``rediss://``, ``unix://``) for a shared Redis, or
``memory://`` for one process — fakeredis running the very same Lua scripts in-process."""

from __future__ import annotations

import redis.asyncio as redis


def connect(url: str) -> redis.Redis:
    if url.startswith("memory://"):
        from fakeredis import FakeServer, aioredis

        return aioredis.FakeRedis(server=FakeServer(), decode_responses=False)
    return redis.Redis.from_url(
        url,
        decode_responses=False,
        socket_connect_timeout=2.0,
        socket_keepalive=True,
        health_check_interval=10,
        retry_on_timeout=False,
    )
