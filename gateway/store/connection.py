"""Open the store: ``redis://`` (or ``rediss://``, ``unix://``) for a shared Redis,
``redis+sentinel://`` for one watched by Redis Sentinel (a failover is followed without a
restart), or ``memory://`` for one process — fakeredis running the very same Lua scripts
in-process.

A connection that broke since its last use (Redis restarted, or failed over) is found out by
the command that next uses it; that command is sent once more on a fresh connection instead
of failing, so the store works again with the first request after it is back. Connections
idle for :data:`HEALTH_CHECK_INTERVAL` are checked with a ``PING`` first, so it is usually the
``PING`` that finds them broken. A command whose connection broke while it ran may thus run
twice: the scripts are written so that this is harmless (see ``docs/admission.md``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Iterator, Sequence
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, unquote

import hiredis
import redis.asyncio as redis
from redis import exceptions as redis_errors
from redis.asyncio.client import Pipeline
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import ExponentialBackoff
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
#: Seconds a pooled connection may sit idle before it is checked with a ``PING`` on reuse.
HEALTH_CHECK_INTERVAL = 2.0
#: Seconds to connect to Redis or to a Sentinel before it counts as unreachable.
CONNECT_TIMEOUT = 2.0
#: One more try, on a fresh connection, for a command whose connection broke — not for a
#: timeout (a command that timed out may still be running).
RETRY = Retry(
    ExponentialBackoff(cap=0.2, base=0.02),
    retries=1,
    supported_errors=(redis_errors.ConnectionError,),
)
#: Seconds before the one more try of a round trip whose connection broke (what ``RETRY``
#: waits before its first retry).
RETRY_PAUSE = 0.04
SENTINEL_SCHEME = "redis+sentinel://"


class WaitingConnectionPool(redis.ConnectionPool):
    """A pool that, when all its connections are in use, waits up to ``timeout`` seconds for
    one — as redis-py's ``BlockingConnectionPool`` does — but takes a free one without a
    ``Condition`` and a timeout scope: ``BlockingConnectionPool`` spends ~45 µs more per
    command at 64 concurrent commands (~106 against ~62 µs, measured on this machine's core),
    and a request makes several."""

    def __init__(self, *args: Any, timeout: float = POOL_WAIT, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.timeout = timeout
        self._free = asyncio.Semaphore(self.max_connections)

    async def get_connection(self, *args: object, **kwargs: object) -> Any:
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


class WaitingSentinelPool(WaitingConnectionPool, SentinelConnectionPool):
    """:class:`WaitingConnectionPool`'s waiting for connections to the primary that
    Sentinel names (asked again on each new connection, so a failover is followed)."""


class StoreClient(redis.Redis):
    """redis-py's client, with :meth:`send_commands`: the request path's round trip."""

    async def send_commands(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Send ``commands`` (each a command's arguments) in one round trip; their replies,
        an error reply as its ``ResponseError``.

        What a redis-py pipeline does, without what the request path does not use
        (transactions, watches, response callbacks, per-command observability, the retry
        wrapper's closures): packing is hiredis's C ``pack_command``, six times faster than
        redis-py's, and the connection is used directly. As with a pipeline, a broken
        connection (Redis restarted, failed over) is replaced and the commands are sent once
        more; a round trip cut short any other way (cancelled, timed out) drops its
        connection, so no later round trip reads its replies.
        """
        packed = b"".join([hiredis.pack_command(tuple(command)) for command in commands])
        pool = self.connection_pool
        connection = await pool.get_connection()
        try:
            try:
                return await _exchange(connection, packed, len(commands))
            except redis_errors.ConnectionError:
                await connection.disconnect()
                await asyncio.sleep(RETRY_PAUSE)
                return await _exchange(connection, packed, len(commands))
        finally:
            await pool.release(connection)


async def _exchange(connection: Any, packed: bytes, count: int) -> list[Any]:
    """Write ``packed`` on ``connection`` (connecting it if it is not) and read ``count``
    replies. redis-py's connection drops itself when a write or read fails or is cancelled."""
    await connection.send_packed_command(packed)
    replies: list[Any] = []
    for _ in range(count):
        try:
            replies.append(await connection.read_response())
        except redis_errors.ResponseError as error:
            replies.append(error)
    return replies


def _connection_options() -> dict[str, Any]:
    return {
        "max_connections": POOL_SIZE,
        "timeout": POOL_WAIT,
        "decode_responses": False,
        "socket_connect_timeout": CONNECT_TIMEOUT,
        "socket_keepalive": True,
        "health_check_interval": HEALTH_CHECK_INTERVAL,
        "retry": RETRY,
        "retry_on_error": [redis_errors.ConnectionError],
    }


@dataclasses.dataclass(frozen=True)
class SentinelURL:
    """``redis+sentinel://[[user]:password@]host1:port1[,host2:port2…]/service[/db]
    [?sentinel_password=…]``: the Sentinels to ask, the service (master) name they watch,
    the database; the password is the data nodes'; the Sentinels' own, if they have one, is
    ``sentinel_password``."""

    sentinels: list[tuple[str, int]]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = None

    @classmethod
    def parse(cls, url: str) -> SentinelURL:
        if not url.startswith(SENTINEL_SCHEME):
            raise ValueError(f"not a {SENTINEL_SCHEME} URL")
        rest, _, query = url[len(SENTINEL_SCHEME) :].partition("?")
        netloc, _, path = rest.partition("/")
        auth, _, hosts = netloc.rpartition("@")
        username, _, password = auth.partition(":") if auth else ("", "", "")
        sentinels = []
        for host in hosts.split(","):
            name, _, port = host.strip().rpartition(":")
            if not name or not port.isdigit():
                raise ValueError(f"{SENTINEL_SCHEME} needs host:port pairs, not {host!r}")
            sentinels.append((name.strip("[]"), int(port)))
        parts = [unquote(p) for p in path.split("/") if p]
        if not parts or len(parts) > 2 or (len(parts) == 2 and not parts[1].isdigit()):
            raise ValueError(f"{SENTINEL_SCHEME}…/service_name[/db]: not {path!r}")
        options = parse_qs(query)
        return cls(
            sentinels=sentinels,
            service=parts[0],
            db=int(parts[1]) if len(parts) == 2 else 0,
            username=unquote(username) or None,
            password=unquote(password) or None,
            sentinel_password=options.get("sentinel_password", [None])[0],
        )


def connect_sentinel(url: str) -> redis.Redis:
    """A client of the primary that the Sentinels of ``url`` name, failover included."""
    target = SentinelURL.parse(url)
    sentinel = Sentinel(
        target.sentinels,
        sentinel_kwargs={
            "password": target.sentinel_password,
            "socket_connect_timeout": CONNECT_TIMEOUT,
            "socket_timeout": CONNECT_TIMEOUT,
        },
    )
    return sentinel.master_for(
        target.service,
        redis_class=StoreClient,
        connection_pool_class=WaitingSentinelPool,
        db=target.db,
        username=target.username,
        password=target.password,
        **_connection_options(),
    )


def connect(url: str) -> redis.Redis:
    if url.startswith(SENTINEL_SCHEME):
        return connect_sentinel(url)
    if url.startswith("memory://"):
        from fakeredis import FakeServer, aioredis

        from gateway.store.memory import MemoryConnection  # scripts compiled once

        return aioredis.FakeRedis(
            server=FakeServer(),
            connection_class=MemoryConnection,
            decode_responses=False,
            connection_pool_class=WaitingConnectionPool,
            max_connections=POOL_SIZE,
            timeout=POOL_WAIT,
        )
    pool = WaitingConnectionPool.from_url(url, **_connection_options())
    return StoreClient(connection_pool=pool)


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
    _TEXTS[str(registered.sha)] = (
        bytes(registered.script) if isinstance(registered.script, memoryview) else registered.script
    )
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
            pipe.execute_command("EVAL", _TEXTS[str(digest)], *rest)
        for i, reply in zip(unknown, await pipe.execute(raise_on_error=False), strict=True):
            replies[i] = reply
    return replies


async def send_scripts(
    client: redis.Redis, calls: Sequence[tuple[AsyncScript, Sequence[Any], Sequence[Any]]]
) -> list[Any]:
    """Run registered scripts — ``(script, keys, args)`` each — in one round trip, by
    digest; each one's reply, or the error that stood for it: its own (a script error), or
    the round trip's (Redis unreachable) for all of them, as :func:`round_trip` does. A
    script Redis does not know is sent once more by its text, as :func:`execute` does. A
    client without :meth:`StoreClient.send_commands` is sent a pipeline."""
    if not calls:
        return []
    send = getattr(client, "send_commands", None)
    if send is None:
        async with client.pipeline(transaction=False) as pipe:
            for script, keys, args in calls:
                queue_script(pipe, script, keys, args)
            return await round_trip(pipe)
    commands = [("EVALSHA", script.sha, len(keys), *keys, *args) for script, keys, args in calls]
    try:
        replies = await send(commands)
        unknown = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if unknown:
            again = [("EVAL", calls[i][0].script, *commands[i][2:]) for i in unknown]
            for i, reply in zip(unknown, await send(again), strict=True):
                replies[i] = reply
        return replies
    except redis_errors.RedisError as exc:
        return [exc] * len(calls)


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
    """Redis down, still loading, or a primary since demoted (``READONLY``: a failover the
    client has not followed yet): the client gets a 503 with ``Retry-After``, not a 500."""
    try:
        yield
    except (
        redis_errors.ConnectionError,
        redis_errors.TimeoutError,
        redis_errors.ReadOnlyError,
    ) as exc:
        raise Unavailable(
            f"The gateway's {store} is unreachable; try again shortly.", retry_after=1.0
        ) from exc
