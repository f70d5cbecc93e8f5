"""The store's client: redis-py's, with one lean round trip for the request path.

A request makes two or three round trips to Redis (limits beside the affinity lookup and,
most often, the lease; the lease when it could not ride along; then the settlement beside the
release — a whole answer waits only for that last one to be written, ``sent``), each a few
scripts. Through a redis-py pipeline
each cost ~150 µs of the gateway's core; :meth:`StoreClient.send_commands` does the same
exchange on the same pooled connections for a fraction of it, and sends the round trips
that concurrent requests ask for in the same turn of the event loop as one (figures in
``loadtest/results/``). Everything else — plain commands, ``BLPOP``, Sentinel's failover
handling inside the connection — is redis-py's own.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol

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

    async def send_commands(
        self, commands: Sequence[Sequence[Any]], *, sent: asyncio.Future[None] | None = None
    ) -> list[Any]: ...


class StoreClient(redis.Redis):
    """redis-py's client, with :meth:`send_commands`: the request path's round trip."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Round trips asked for in this turn of the event loop, sent together at its end.
        self._gathering: list[_Asked] | None = None
        self._gathered_on: asyncio.AbstractEventLoop | None = None
        self._sending: set[asyncio.Task[None]] = set()

    async def send_commands(
        self, commands: Sequence[Sequence[Any]], *, sent: asyncio.Future[None] | None = None
    ) -> list[Any]:
        """Send ``commands`` (each a command's arguments) in one round trip; their replies,
        an error reply as its ``ResponseError``. ``sent``, if given, is resolved as soon as
        they are written to Redis (or the round trip failed): Redis runs what reaches it in
        the order it arrives, on whichever connection, so whatever is written after that —
        by this replica or by another — runs after them.

        Every round trip asked for in one turn of the event loop — under load, many
        requests reach the store in the same turn — goes out together, in one write on one
        connection, and each caller gets its own replies back: one send and one read for
        them all, where each cost ~70 µs of the core alone (``loadtest/results/``). A caller
        that is cancelled stops waiting; its commands, already on their way, still run, and
        the others' replies are read as ever.

        What a redis-py pipeline does, without what the request path does not use
        (transactions, watches, response callbacks, observability records, the retry
        wrapper's closures, a task per write for its timeout): packing is hiredis's C
        ``pack_command``, six times faster than redis-py's; the pooled connection is taken
        without the checkout's extras (``WaitingConnectionPool.take``) and used directly;
        one timeout, the connection's ``socket_timeout``, bounds the whole round trip. As
        with a pipeline, a broken connection (Redis restarted, failed over) is replaced and
        the commands are sent once more; a round trip cut short any other way (timed out)
        drops its connection, so no later round trip reads its replies.
        """
        packed = b"".join([hiredis.pack_command(tuple(command)) for command in commands])
        loop = asyncio.get_running_loop()
        waiting = loop.create_future()
        gathering = self._gathering
        if gathering is None or self._gathered_on is not loop:
            # (a list from another, closed loop is never sent: start one on this loop)
            gathering = self._gathering = []
            self._gathered_on = loop
            loop.call_soon(self._send_gathered, gathering)
        gathering.append(_Asked(packed, len(commands), waiting, sent))
        return await waiting

    def _send_gathered(self, gathered: list[_Asked]) -> None:
        if self._gathering is gathered:
            self._gathering = None
        sending = asyncio.ensure_future(self._round_trip(gathered))
        self._sending.add(sending)
        sending.add_done_callback(self._sending.discard)

    async def _round_trip(self, gathered: list[_Asked]) -> None:
        """One round trip for every caller in ``gathered``; each gets its replies, or the
        round trip's error."""
        packed = b"".join([asked.packed for asked in gathered])
        count = sum(asked.expected for asked in gathered)

        def written() -> None:
            for asked in gathered:
                if asked.sent is not None and not asked.sent.done():
                    asked.sent.set_result(None)

        try:
            replies = await self._send_retrying_once(packed, count, written)
        except asyncio.CancelledError:  # the loop is closing
            for asked in gathered:
                asked.waiting.cancel()
            raise
        except Exception as exc:
            for asked in gathered:
                if not asked.waiting.done():
                    asked.waiting.set_exception(_own_copy(exc))
            return
        finally:
            written()  # (failed: no one waits for a write that will not come)
        at = 0
        for asked in gathered:
            if not asked.waiting.done():  # not cancelled meanwhile
                asked.waiting.set_result(replies[at : at + asked.expected])
            at += asked.expected

    async def _send_retrying_once(
        self, packed: bytes, count: int, written: Callable[[], None]
    ) -> list[Any]:
        """``count`` replies to ``packed`` on a pooled connection; once more on a fresh one if
        that connection turns out broken."""
        pool: Any = self.connection_pool
        connection = await pool.take()
        try:
            try:
                return await _exchange(connection, packed, count, written)
            except redis_errors.ConnectionError:  # _exchange dropped the connection
                await asyncio.sleep(RETRY_PAUSE)
                return await _exchange(connection, packed, count, written)
        finally:
            pool.give_back(connection)


class _Asked(NamedTuple):
    """One caller's share of a round trip: its packed commands, the replies they make, the
    future they are handed to, and the one resolved once they are written (if it asked)."""

    packed: bytes
    expected: int
    waiting: asyncio.Future[list[Any]]
    sent: asyncio.Future[None] | None


def _own_copy(exc: Exception) -> Exception:
    """``exc`` for one of several callers: a fresh one of its kind where it can be made, so
    no two callers' tracebacks pile onto one exception."""
    try:
        copy = type(exc)(*exc.args)
    except Exception:
        return exc
    copy.__cause__ = exc.__cause__
    return copy


async def _exchange(
    connection: Any, packed: bytes, count: int, written: Callable[[], None]
) -> list[Any]:
    """Write ``packed`` on ``connection`` (connecting it first if it is not, checking it
    with a ``PING`` if it sat idle past its health-check interval), call ``written``, and
    read ``count`` replies, within the connection's ``socket_timeout``."""
    try:
        async with asyncio.timeout(connection.socket_timeout):
            if not connection.is_connected:
                await connection.connect()
            await connection.check_health()
            try:
                await connection._send_packed_command((packed,))
            except OSError as exc:
                raise redis_errors.ConnectionError(f"Error while writing to Redis: {exc}") from exc
            written()
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
