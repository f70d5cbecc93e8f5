"""Prefix affinity in Redis: which backends (and slots) hold which prompt prefixes, per model.

After a completion the gateway records every entry of the request's fingerprint chain (see
:mod:`gateway.routing.fingerprint`) → the backend that served it; before routing it looks up,
for each backend, the deepest entry of the new request's chain recorded for it. Both are one
script call. A prefix served by several backends (a shared system prompt that spilled over)
has several homes.

Growth is bounded twice: every entry expires ``ttl`` seconds after it was last recorded, and
a model keeps at most ``max_entries`` entries — beyond that the oldest are evicted at once.
Affinity is advice: when Redis is unreachable a lookup finds nothing and a record is dropped,
and requests are routed by load alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from gateway.store import keys
from gateway.store.connection import queue_script, script

log = logging.getLogger(__name__)

#: Slot id recorded when the gateway does not know which slot served a request.
UNKNOWN_SLOT = -1


@dataclass(frozen=True, slots=True)
class Match:
    """The longest recorded prefix of a request on one backend."""

    depth: int
    slot: int = UNKNOWN_SLOT
    #: Tokens the slot held right after the recorded request (to tell whether it still does).
    held: int = 0


class AffinityStore:
    def __init__(self, redis: Redis, *, ttl: float = 1800.0, max_entries: int = 200_000) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.ttl = ttl
        self.max_entries = max_entries
        self._record = redis.register_script(script("affinity_record.lua"))
        self._lookup = redis.register_script(script("affinity_lookup.lua"))

    async def lookup(
        self, model: str, entries: Sequence[str], depths: Sequence[int]
    ) -> dict[str, Match]:
        """Backend → its longest recorded match of the chain ``entries`` (each covering the
        ``depths`` at the same index); empty when none, or when the store is unreachable."""
        if not entries:
            return {}
        try:
            reply = await self._lookup(
                keys=[keys.affinity_entry(model, e) for e in entries], args=list(depths)
            )
        except redis_errors.RedisError as exc:
            reply = exc
        return _matches(reply)

    def lookup_command(
        self, pipe: Pipeline, model: str, entries: Sequence[str], depths: Sequence[int]
    ) -> Callable[[list[Any]], dict[str, Match]]:
        """Queue :meth:`lookup` on ``pipe`` (sent with the limits check: one round trip);
        returns what turns its replies into the matches."""
        if not entries:
            return lambda replies: {}
        queue_script(pipe, self._lookup, [keys.affinity_entry(model, e) for e in entries], depths)
        return lambda replies: _matches(replies[0])

    async def record(
        self,
        model: str,
        entries: Sequence[str],
        backend: str,
        slot: int = UNKNOWN_SLOT,
        held: int = 0,
    ) -> None:
        """``backend`` (and ``slot``, then holding ``held`` tokens) now holds every prefix of
        the chain ``entries``. Give ``max_entries`` room for whole chains: entries recorded
        together age together."""
        if not entries:
            return
        keys_, args = self._record_call(model, entries, backend, slot, held)
        try:
            await self._record(keys=keys_, args=args)
        except redis_errors.RedisError as exc:
            log.warning("affinity record dropped: %s", exc)

    def record_command(
        self,
        pipe: Pipeline,
        model: str,
        entries: Sequence[str],
        backend: str,
        slot: int = UNKNOWN_SLOT,
        held: int = 0,
    ) -> Callable[[list[Any]], None]:
        """Queue :meth:`record` on ``pipe`` (sent with the lease's release: one round trip);
        returns what to do with its replies."""
        if not entries:
            return lambda replies: None
        keys_, args = self._record_call(model, entries, backend, slot, held)
        queue_script(pipe, self._record, keys_, args)

        def handle(replies: list[Any]) -> None:
            if replies and isinstance(replies[0], Exception):
                log.warning("affinity record dropped: %s", replies[0])

        return handle

    def _record_call(
        self, model: str, entries: Sequence[str], backend: str, slot: int, held: int
    ) -> tuple[list[str], list[str | int]]:
        return (
            [keys.affinity_index(model)] + [keys.affinity_entry(model, e) for e in entries],
            [
                backend,
                f"{slot}:{held}" if slot != UNKNOWN_SLOT else str(UNKNOWN_SLOT),
                int(self.ttl * 1000),
                self.max_entries,
                keys.affinity_entry(model, ""),
                *entries,
            ],
        )


def _matches(reply: list[Any] | Exception) -> dict[str, Match]:
    """The lookup script's reply — backend, depth, ``slot:held`` per backend — as matches."""
    if isinstance(reply, Exception):
        log.warning("affinity lookup failed, routing by load: %s", reply)
        return {}
    found = {}
    for i in range(0, len(reply), 3):
        slot, _, held = reply[i + 2].decode().partition(":")
        found[reply[i].decode()] = Match(int(reply[i + 1]), int(slot), int(held or 0))
    return found
