"""Open the store: ``redis://`` (or ``rediss://``, ``unix://``) for a shared Redis, or
``memory://`` for one process — fakeredis running the very same Lua scripts in-process."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from importlib import resources

import redis.asyncio as redis
from redis import exceptions as redis_errors

from gateway.errors import Unavailable

#: Connections one replica keeps to Redis. Every request in flight may hold one or two at a
#: moment (limits beside the affinity lookup), plus one for the grant mailbox.
POOL_SIZE = 512
#: Seconds a command waits for a free connection: a full pool means "busy", not "down" —
#: redis-py's default pool refuses at once with "Too many connections", which would turn a
#: burst into 503s.
POOL_WAIT = 10.0


def connect(url: str) -> redis.Redis:
    if url.startswith("memory://"):
        from fakeredis import FakeServer, aioredis

        return aioredis.FakeRedis(
            server=FakeServer(),
            decode_responses=False,
            connection_pool_class=redis.BlockingConnectionPool,
            max_connections=POOL_SIZE,
            timeout=POOL_WAIT,
        )
    pool = redis.BlockingConnectionPool.from_url(
        url,
        max_connections=POOL_SIZE,
        timeout=POOL_WAIT,
        decode_responses=False,
        socket_connect_timeout=2.0,
        socket_keepalive=True,
        health_check_interval=10,
        retry_on_timeout=False,
    )
    return redis.Redis(connection_pool=pool)


def script(name: str) -> str:
    """The text of a Lua script kept beside this package's modules."""
    return resources.files(__package__).joinpath(name).read_text()


@contextlib.contextmanager
def reachable(store: str) -> Iterator[None]:
    """Redis down or still loading: the client gets a 503 with ``Retry-After``, not a 500."""
    try:
        yield
    except (redis_errors.ConnectionError, redis_errors.TimeoutError) as exc:
        raise Unavailable(
            f"The gateway's {store} is unreachable; try again shortly.", retry_after=1.0
        ) from exc
