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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from gateway.store import keys
from gateway.store.commands import Command
from gateway.store.connection import script

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
        self.redis = redis
        self._record = redis.register_script(script("affinity_record.lua"))
        self._lookup = redis.register_script(script("affinity_lookup.lua"))

    def lookup(
        self, model: str, entries: Sequence[str], depths: Sequence[int]
    ) -> Command[dict[str, Match]]:
        """Backend → its longest recorded match of the chain ``entries`` (each covering the
        ``depths`` at the same index); empty when none, or when the store is unreachable
        (then requests are routed by load)."""
        if not entries:
            return Command.nothing(self.redis, {})
        keys_ = [keys.affinity_entry(model, e) for e in entries]
        return Command(self.redis, self._lookup, keys_, list(depths), _matches)

    def record(
        self,
        model: str,
        entries: Sequence[str],
        backend: str,
        slot: int = UNKNOWN_SLOT,
        held: int = 0,
    ) -> Command[None]:
        """``backend`` (and ``slot``, then holding ``held`` tokens) now holds every prefix of
        the chain ``entries``. Give ``max_entries`` room for whole chains: entries recorded
        together age together. A failed record is logged: the answer has been sent."""
        if not entries:
            return Command.nothing(self.redis, None)
        keys_, args = self._record_call(model, entries, backend, slot, held)
        return Command(self.redis, self._record, keys_, args, _recorded)

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


def _recorded(reply: Any) -> None:
    if isinstance(reply, Exception):
        log.warning("affinity record dropped: %s", reply)
