"""Open the store: ``redis://`` (or ``rediss://``, ``unix://``) for a shared Redis, or
``memory://`` for one process — fakeredis running the very same Lua scripts in-process."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Sequence
from importlib import resources
from typing import Any

import redis.asyncio as redis
from redis import exceptions as redis_errors
from redis.asyncio.client import Pipeline
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from gateway.errors import Unavailable

#: Connections one replica keeps to Redis. Every request in flight may hold one or two at a
#: moment (limits beside the affinity lookup), plus one for the grant mailbox.
POOL_SIZE = 512
#: Seconds a command waits for a free connection: a full pool means "busy", not "down" —
#: redis-py's default pool refuses at once with "Too many connections", which would turn a
#: burst into 503s.
POOL_WAIT = 10.0


class WaitingConnectionPool(redis.ConnectionPool):
    """A pool that, when all its connections are in use, waits up to ``timeout`` seconds for
    one — as redis-py's ``BlockingConnectionPool`` does — but takes a free one without a
    ``Condition`` and a timeout scope: ``BlockingConnectionPool`` spends ~45 µs more per
    command at 64 concurrent commands (~106 against ~62 µs, measured on this machine's core),
    and a request makes several."""

    def __init__(self, *args: object, timeout: float = POOL_WAIT, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.timeout = timeout
        self._free = asyncio.Semaphore(self.max_connections)

    async def get_connection(self, *args: object, **kwargs: object):  # type: ignore[override]
        if self._free.locked():
            try:
                async with asyncio.timeout(self.timeout):
                    await self._free.acquire()
            except TimeoutError as exc:
                raise redis_errors.ConnectionError("No connection available.") from exc
        else:
            await self._free.acquire()  # returns at once: a permit is free
        try:
            return await super().get_connection()
        except BaseException:
            self._free.release()
            raise

    async def release(self, connection: redis.Connection) -> None:  # type: ignore[override]
        try:
            await super().release(connection)
        finally:
            self._free.release()


def connect(url: str) -> redis.Redis:
    if url.startswith("memory://"):
        from fakeredis import FakeServer, aioredis

        return aioredis.FakeRedis(
            server=FakeServer(),
            decode_responses=False,
            connection_pool_class=WaitingConnectionPool,
            max_connections=POOL_SIZE,
            timeout=POOL_WAIT,
        )
    pool = WaitingConnectionPool.from_url(
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


#: Script texts by digest, for an ``EVALSHA`` that Redis answers ``NOSCRIPT``.
_TEXTS: dict[str, str | bytes] = {}


def queue_script(
    pipe: Pipeline, registered: AsyncScript, keys: Sequence[Any], args: Sequence[Any]
) -> None:
    """Queue a registered script on ``pipe`` by its digest: ``EVALSHA`` sends 40 bytes where
    ``EVAL`` sends the whole text (~3.5 KB for a limits script; packing the texts was ~8% of
    a request's CPU). Run such a pipeline with :func:`execute`."""
    _TEXTS[registered.sha] = registered.script
    pipe.evalsha(registered.sha, len(keys), *keys, *args)


async def execute(pipe: Pipeline) -> list[Any]:
    """Run ``pipe``, each command's error as its reply. A script Redis does not know (it
    restarted, or its script cache was flushed) is sent again as ``EVAL`` with its text,
    which caches it again; ``NOSCRIPT`` means it did not run, so nothing runs twice."""
    sent = [args for args, _ in pipe.command_stack]
    replies = await pipe.execute(raise_on_error=False)
    unknown = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
    if unknown:
        for i in unknown:
            _, digest, *rest = sent[i]
            pipe.execute_command("EVAL", _TEXTS[digest], *rest)
        for i, reply in zip(unknown, await pipe.execute(raise_on_error=False), strict=True):
            replies[i] = reply
    return replies


async def round_trip(pipe: Pipeline) -> list[Any]:
    """:func:`execute` for pipelines whose commands each have a handler of their own: when
    the round trip itself fails (Redis unreachable), that error is every command's reply, and
    each handler decides what it means for its command (a refusal, a warning, nothing)."""
    queued = len(pipe)
    if not queued:
        return []
    try:
        return await execute(pipe)
    except redis_errors.RedisError as exc:
        return [exc] * queued


@contextlib.contextmanager
def reachable(store: str) -> Iterator[None]:
    """Redis down or still loading: the client gets a 503 with ``Retry-After``, not a 500."""
    try:
        yield
    except (redis_errors.ConnectionError, redis_errors.TimeoutError) as exc:
        raise Unavailable(
            f"The gateway's {store} is unreachable; try again shortly.", retry_after=1.0
        ) from exc
