"""One value for a scripted store operation, and one way to send several in one round trip.

A :class:`Command` is a script, its keys and arguments, and how its reply reads. Awaiting it
sends it alone; :func:`run` sends several on one pipeline — how the request path checks
limits beside the affinity lookup, and gives a lease back beside the settlement — and each
command reads its own reply, so no caller slices a pipeline's replies by position::

    state = await limiter.admit(key, 120)                       # one round trip
    state, matches = await run(redis, limiter.admit(key, 120),  # one round trip for both
                               affinity.lookup(model, chain))

A command's reader is handed its reply, or the exception that stood for it (a script error,
or the whole round trip failing: Redis unreachable) — each decides what that means for its
operation: a refusal, a warning, nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator, Sequence
from typing import Any, Generic, TypeVar

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.commands.core import AsyncScript

from gateway.store.connection import queue_script, round_trip, send_scripts

__all__ = ["Command", "run"]

T = TypeVar("T")
U = TypeVar("U")


class Command(Generic[T]):
    """One scripted operation; ``script=None`` is an operation with nothing to send (a key
    without limits), whose reader gets ``None``."""

    __slots__ = ("args", "keys", "queue", "read", "redis", "script")

    def __init__(
        self,
        redis: Redis,
        script: AsyncScript | None,
        keys: Sequence[Any],
        args: Sequence[Any],
        read: Callable[[Any], T],
        *,
        queue: Callable[[Pipeline], None] | None = None,
    ) -> None:
        self.redis = redis
        self.script = script
        self.keys = keys
        self.args = args
        self.read = read
        #: Queues the one Redis command itself, for an operation that is no lone script.
        self.queue = queue

    @property
    def sends(self) -> bool:
        return self.script is not None or self.queue is not None

    @classmethod
    def queued(
        cls, redis: Redis, queue: Callable[[Pipeline], None], read: Callable[[Any], T]
    ) -> Command[T]:
        """An operation that ``queue`` puts on the pipeline as one command."""
        return cls(redis, None, (), (), read, queue=queue)

    @classmethod
    def nothing(cls, redis: Redis, value: T) -> Command[T]:
        """An operation that needs no store call and yields ``value``."""
        return cls(redis, None, (), (), lambda _reply: value)

    def queue_on(self, pipe: Pipeline) -> None:
        """Put the operation on ``pipe`` (nothing for one with nothing to send)."""
        if self.queue is not None:
            self.queue(pipe)
        elif self.script is not None:
            queue_script(pipe, self.script, self.keys, self.args)

    def then(
        self, convert: Callable[[T], U], *, failed: Callable[[Exception], None] | None = None
    ) -> Command[U]:
        """The same operation, its result passed through ``convert``; ``failed`` is told of
        an exception its reading raised (before it propagates)."""
        read = self.read

        def reading(reply: Any) -> U:
            try:
                value = read(reply)
            except Exception as exc:
                if failed is not None:
                    failed(exc)
                raise
            return convert(value)

        return Command(self.redis, self.script, self.keys, self.args, reading, queue=self.queue)

    def __await__(self) -> Generator[Any, None, T]:
        results = yield from run(self.redis, self).__await__()
        return results[0]  # type: ignore[no-any-return]


async def run(
    redis: Redis, *commands: Command[Any], sent: asyncio.Future[None] | None = None
) -> list[Any]:
    """Send ``commands`` in one round trip (none when none of them has a script); their
    results in order. A reader's exception propagates after every reader has run.

    ``sent`` goes to the scripts' round trip, which resolves it once they are written to the
    store (``StoreClient.send_commands``); a round trip with other commands leaves it to the
    caller, who resolves it once ``run`` returns."""
    if any(command.queue is not None for command in commands):
        async with redis.pipeline(transaction=False) as pipe:
            for command in commands:
                command.queue_on(pipe)
            replies = iter(await round_trip(pipe))
    else:  # scripts only: the request path's lean round trip
        calls = [(c.script, c.keys, c.args) for c in commands if c.script is not None]
        replies = iter(await send_scripts(redis, calls, sent=sent))
    results: list[Any] = []
    raised: BaseException | None = None
    for command in commands:
        reply = next(replies) if command.sends else None
        try:
            results.append(command.read(reply))
        except Exception as exc:  # the first refusal wins; the others still read theirs
            raised = raised or exc
            results.append(None)
    if raised is not None:
        raise raised
    return results
