"""The store's client: redis-py's, with one lean round trip for the request path.

A request makes three round trips to Redis (limits beside the affinity lookup, the lease,
then the settlement beside the release), each a few scripts. Through a redis-py pipeline
each cost ~150 µs of the gateway's core; :meth:`StoreClient.send_commands` does the same
exchange on the same pooled connections for a fraction of it (figures in
``loadtest/results/``). Everything else — plain commands, ``BLPOP``, Sentinel's failover
handling inside the connection — is redis-py's own.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from typing import Any, Protocol

import hiredis
import redis.asyncio as redis
from redis import exceptions as redis_errors

__all__ = ["RETRY_PAUSE", "CommandSender", "StoreClient"]

#: Seconds before the one more try of a round trip whose connection broke (what the
#: connections' own ``Retry`` waits before its first retry).
RETRY_PAUSE = 0.04


class CommandSender(Protocol):
    """What the request path's round trip needs of a store client: :class:`StoreClient`,
    or ``memory://``'s ``EmbeddedRedis``."""

    async def send_commands(self, commands: Sequence[Sequence[Any]]) -> list[Any]: ...


class StoreClient(redis.Redis):
    """redis-py's client, with :meth:`send_commands`: the request path's round trip."""

    async def send_commands(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Send ``commands`` (each a command's arguments) in one round trip; their replies,
        an error reply as its ``ResponseError``.

        What a redis-py pipeline does, without what the request path does not use
        (transactions, watches, response callbacks, observability records, the retry
        wrapper's closures, a task per write for its timeout): packing is hiredis's C
        ``pack_command``, six times faster than redis-py's; the pooled connection is taken
        without the checkout's extras (``WaitingConnectionPool.take``) and used directly;
        one timeout, the connection's ``socket_timeout``, bounds the whole round trip. As
        with a pipeline, a broken connection (Redis restarted, failed over) is replaced and
        the commands are sent once more; a round trip cut short any other way (cancelled,
        timed out) drops its connection, so no later round trip reads its replies.
        """
        packed = b"".join([hiredis.pack_command(tuple(command)) for command in commands])
        pool: Any = self.connection_pool
        connection = await pool.take()
        try:
            try:
                return await _exchange(connection, packed, len(commands))
            except redis_errors.ConnectionError:  # _exchange dropped the connection
                await asyncio.sleep(RETRY_PAUSE)
                return await _exchange(connection, packed, len(commands))
        finally:
            pool.give_back(connection)


async def _exchange(connection: Any, packed: bytes, count: int) -> list[Any]:
    """Write ``packed`` on ``connection`` (connecting it first if it is not, checking it
    with a ``PING`` if it sat idle past its health-check interval) and read ``count``
    replies, within the connection's ``socket_timeout``."""
    try:
        async with asyncio.timeout(connection.socket_timeout):
            if not connection.is_connected:
                await connection.connect()
            await connection.check_health()
            try:
                await connection._send_packed_command((packed,))
            except OSError as exc:
                raise redis_errors.ConnectionError(f"Error while writing to Redis: {exc}") from exc
            replies: list[Any] = []
            for _ in range(count):
                try:
                    # No timeout of its own: the round trip's bounds it.
                    replies.append(await connection.read_response(timeout=math.inf))
                except redis_errors.ResponseError as error:
                    replies.append(error)
            return replies
    except TimeoutError as exc:
        await connection.disconnect(nowait=True)
        raise redis_errors.TimeoutError("Timeout in a round trip to Redis") from exc
    except redis_errors.ResponseError:
        raise
    except BaseException:
        # Replies may be left unread on it (cancelled, a write failed): never reused as is.
        await connection.disconnect(nowait=True)
        raise
