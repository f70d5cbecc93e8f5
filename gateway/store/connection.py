"""Open the store: ``redis://`` (or ``rediss://``, ``unix://``) for a shared Redis,
``redis+sentinel://`` for one watched by Redis Sentinel (a failover is followed without a
restart), or ``memory://`` for one process — the embedded store
(:mod:`gateway.store.embedded`), running the very same Lua scripts in-process with
``redis.call`` bound straight to Python data.

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
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

import redis.asyncio as redis
from redis import exceptions as redis_errors
from redis.asyncio.client import Pipeline
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import ExponentialBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from gateway.errors import Unavailable
from gateway.store.client import CommandSender, StoreClient

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

    async def _permit(self) -> None:
        if self._free.locked():
            try:
                async with asyncio.timeout(self.timeout):
                    await self._free.acquire()
            except TimeoutError as exc:
                raise redis_errors.ConnectionError("No connection available.") from exc
        else:
            await self._free.acquire()  # returns at once: a permit is free

    async def get_connection(self, *args: object, **kwargs: object) -> Any:
        await self._permit()
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

    async def take(self) -> Any:
        """:meth:`get_connection` for the request path's round trips
        (:meth:`StoreClient.send_commands`), without what redis-py 8 adds to each checkout:
        a lock around two list operations, four awaited observability records, and a check
        that the connection has no unread replies — which this path cannot leave, as it
        reads every reply or drops the connection. Give it back with :meth:`give_back`."""
        await self._permit()
        try:
            connection = self.get_available_connection()
        except BaseException:
            self._free.release()
            raise
        return connection

    def give_back(self, connection: Any) -> None:
        """:meth:`release` for a connection from :meth:`take`."""
        self._in_use_connections.discard(connection)
        self._available_connections.append(connection)
        self._free.release()


class WaitingSentinelPool(WaitingConnectionPool, SentinelConnectionPool):
    """:class:`WaitingConnectionPool`'s waiting for connections to the primary that
    Sentinel names (asked again on each new connection, so a failover is followed)."""


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
        from gateway.store.embedded import EmbeddedRedis, Server

        # The redis-py client subset the gateway uses, answered in this process: callers
        # see the same replies and exceptions as from redis.asyncio.Redis.
        return EmbeddedRedis(Server(**embedded_options(url)))
    pool = WaitingConnectionPool.from_url(url, **_connection_options())
    return StoreClient(connection_pool=pool)


def check_url(url: str) -> None:
    """Raise ``ValueError`` for a store URL whose own parts :func:`connect` would refuse (a
    Sentinel URL's, ``memory://``'s); Redis URLs are redis-py's to read."""
    if url.startswith(SENTINEL_SCHEME):
        SentinelURL.parse(url)
    elif url.startswith("memory://"):
        embedded_options(url)


def embedded_options(url: str) -> dict[str, str]:
    """``memory://``'s one option: ``?lua=lua51`` runs the scripts on PUC Lua 5.1, as Redis
    does, instead of LuaJIT (the default where lupa has it)."""
    from gateway.store.embedded.scripting import LUA_RUNTIMES

    parsed = urlsplit(url)
    options = parse_qs(parsed.query)
    unknown = set(options) - {"lua"}
    if parsed.netloc or parsed.path.strip("/") or unknown:
        raise ValueError(f"memory:// takes no host, path or option but ?lua=: {url!r}")
    if "lua" not in options:
        return {}
    runtime = options["lua"][-1]
    if runtime not in LUA_RUNTIMES:
        raise ValueError(f"memory://?lua= is one of {', '.join(LUA_RUNTIMES)}, not {runtime!r}")
    return {"runtime": runtime}


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
    client: redis.Redis,
    calls: Sequence[tuple[AsyncScript, Sequence[Any], Sequence[Any]]],
    *,
    sent: asyncio.Future[None] | None = None,
) -> list[Any]:
    """Run registered scripts — ``(script, keys, args)`` each — in one round trip, by
    digest; each one's reply, or the error that stood for it: its own (a script error), or
    the round trip's (Redis unreachable) for all of them, as :func:`round_trip` does. A
    script Redis does not know is sent once more by its text, as :func:`execute` does.
    ``client`` is one :func:`connect` made: both stores send commands the same way.
    ``sent``: see ``StoreClient.send_commands`` (a script sent again by its text, after a
    Redis restart, goes out after ``sent`` was resolved)."""
    if not calls:
        return []
    send = cast(CommandSender, client).send_commands
    commands = [("EVALSHA", script.sha, len(keys), *keys, *args) for script, keys, args in calls]
    try:
        replies = await send(commands, sent=sent)
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
