"""Slot leases and the fair queue in Redis: the scripts and the grant mailboxes.

Every operation on a model's admission state is one script under that model's hash tag
(``admission_*.lua``, sharing ``admission_lib.lua``), so however many gateway replicas call
them, the leases on a backend never outnumber its slots. A grant for a waiter of another
replica is posted to that replica's mailbox list (``lg:grants:<replica>``), where its grant
loop picks it up with ``BLPOP`` — one blocked connection per replica, not one per waiter.
Each replica keeps a record under the model's tag (``r:<replica>``): the backends it can use
and a heartbeat, so a grant only goes to a waiter whose replica is alive and can reach the
freed backend. The design is in ``docs/admission.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from redis.asyncio import Redis

from gateway.store import keys
from gateway.store.commands import Command
from gateway.store.connection import reachable, script

#: (backend name, slot count) in the routing policy's order.
Candidates = Sequence[tuple[str, int]]

#: Seconds a replica's record counts it alive after its last script for the model (at most
#: half the lease TTL): how long slots may still go to a replica's waiters once it has died.
#: A replica with waiters runs a script every third of it (the upkeep's pump).
ALIVE_FOR = 3.0


class Grant(NamedTuple):
    replica: str
    waiter: str
    backend: str


@dataclass(frozen=True, slots=True)
class Reply:
    """What a script saw: leases per candidate afterwards, waiters queued, grants made."""

    loads: list[int]
    grants: list[Grant]
    queued: int = 0
    status: str = ""
    #: The granted backend (status ``granted``).
    backend: str | None = None
    #: The calling replica's record had lapsed (an acquire's or a pump's): its waiters may
    #: have been dropped.
    lapsed: bool = False


def _flatten(candidates: Candidates) -> list[str | int]:
    flat: list[str | int] = [len(candidates)]
    for backend, slots in candidates:
        flat += [backend, slots]
    return flat


def _raised(reply: Any) -> Any:
    """A reply as it is, an error reply (or the round trip's failure) raised."""
    if isinstance(reply, Exception):
        raise reply
    return reply


def _parse_tail(items: list, n_loads: int) -> tuple[list[int], list[Grant]]:
    loads = [int(v) for v in items[:n_loads]]
    rest = [v.decode() if isinstance(v, bytes) else str(v) for v in items[n_loads + 1 :]]
    grants = [Grant(*rest[i : i + 3]) for i in range(0, len(rest), 3)]
    return loads, grants


class AdmissionStore:
    def __init__(self, redis: Redis, *, lease_ttl: float, grant_ttl: float) -> None:
        self.redis = redis
        self.lease_ttl_ms = int(lease_ttl * 1000)
        self.grant_ttl_ms = int(grant_ttl * 1000)
        #: Seconds a replica's record outlives its last script: half the lease TTL at most,
        #: so that it lapses before the leases the replica last renewed.
        self.alive_ttl = min(ALIVE_FOR, lease_ttl / 2)
        self.alive_ttl_ms = int(self.alive_ttl * 1000)
        lib = script("admission_lib.lua")
        self._acquire = redis.register_script(lib + script("admission_acquire.lua"))
        self._release = redis.register_script(lib + script("admission_release.lua"))
        self._leave = redis.register_script(lib + script("admission_leave.lua"))
        self._pump = redis.register_script(lib + script("admission_pump.lua"))
        self._renew = redis.register_script(lib + script("admission_renew.lua"))
        self._bury = redis.register_script(lib + script("admission_bury.lua"))
        self._take_unread = redis.register_script(script("mailbox_take_unread.lua"))

    def acquire(
        self,
        model: str,
        *,
        key_id: str,
        waiter: str,
        replica: str,
        weight: float,
        cost: int,
        priority: int,
        timeout: float,
        bound: int,
        exclude: Sequence[str],
        candidates: Candidates,
        only_free: bool = False,
    ) -> Command[Reply]:
        """Lease a slot on the first of ``candidates`` with one free, or queue ``waiter``
        for one (status ``granted``, ``queued`` or ``full``); with ``only_free``, granted
        only if a slot is free and no one waits, else status ``busy`` and nothing queued. A
        command: awaited alone, or sent beside others in one round trip; its result raises
        ``Unavailable`` when the store could not be reached."""
        args = [
            keys.model_prefix(model),
            key_id,
            waiter,
            replica,
            weight,
            cost,
            priority,
            int(timeout * 1000),
            bound,
            self.grant_ttl_ms,
            self.lease_ttl_ms,
            self.alive_ttl_ms,
            ",".join(exclude),
            1 if only_free else 0,
            *_flatten(candidates),
        ]

        def read(items: Any) -> Reply:
            with reachable("admission store"):
                _raised(items)
            status = items[0].decode()
            loads, grants = _parse_tail(items[4:], len(candidates))
            backend = items[1].decode() if status == "granted" else None
            return Reply(loads, grants, int(items[2]), status, backend, lapsed=bool(items[3]))

        return Command(self.redis, self._acquire, [keys.queue_keys(model)], args, read)

    def release(
        self, model: str, backend: str, lease: str, candidates: Candidates
    ) -> Command[Reply | Exception]:
        """Give ``lease`` back and hand its slot to the next waiter that can use it (sent
        with, e.g., the limits settlement: one round trip). Its result: the candidates'
        loads and the grants made — or the error that stood for the reply, for the caller
        to judge (the answer has been sent; a release can be owed)."""

        def read(reply: Any) -> Reply | Exception:
            if isinstance(reply, Exception):
                return reply
            loads, grants = _parse_tail(reply, len(candidates))
            return Reply(loads, grants)

        args = [keys.model_prefix(model), backend, lease, self.grant_ttl_ms, *_flatten(candidates)]
        return Command(self.redis, self._release, [keys.queue_keys(model)], args, read)

    async def leave(self, model: str, key_id: str, waiter: str) -> bool:
        with reachable("admission store"):
            left = await self._leave(
                keys=[keys.queue_keys(model)], args=[keys.model_prefix(model), key_id, waiter]
            )
        return bool(left)

    async def pump(self, model: str, replica: str, candidates: Candidates) -> Reply:
        """Hand free slots of ``candidates`` to waiters; keeps ``replica``'s record alive
        (the reply's ``lapsed``: it had lapsed, and its waiters may have been dropped)."""
        with reachable("admission store"):
            items = await self._pump(
                keys=[keys.queue_keys(model)],
                args=[
                    keys.model_prefix(model),
                    self.grant_ttl_ms,
                    replica,
                    self.alive_ttl_ms,
                    *_flatten(candidates),
                ],
            )
        loads, grants = _parse_tail(items[2:], len(candidates))
        return Reply(loads, grants, int(items[1]), lapsed=bool(items[0]))

    async def renew(
        self,
        model: str,
        replica: str,
        candidates: Candidates,
        leases: Sequence[tuple[str, str]],
    ) -> tuple[int, bool]:
        """The upkeep's heartbeat for one model: extend ``(backend, lease id)`` pairs, and keep
        ``replica``'s record (the backends it can use: ``candidates``) alive. Returns how many
        leases still existed, and whether the record had lapsed (the replica's waiters may
        have been dropped as a dead replica's)."""
        flat = [item for pair in leases for item in pair]
        with reachable("admission store"):
            held, lapsed = await self._renew(
                keys=[keys.queue_keys(model)],
                args=[
                    keys.model_prefix(model),
                    self.lease_ttl_ms,
                    self.alive_ttl_ms,
                    replica,
                    *_flatten(candidates),
                    *flat,
                ],
            )
        return int(held), bool(lapsed)

    async def post(self, model: str, grants: Sequence[Grant]) -> None:
        """Post grants to the mailboxes of the replicas whose waiters they are for."""
        with reachable("admission store"):
            async with self.redis.pipeline(transaction=False) as pipe:
                for grant in grants:
                    pipe.rpush(keys.grants(grant.replica), _entry(model, grant))
                    pipe.pexpire(keys.grants(grant.replica), self.grant_ttl_ms)
                await pipe.execute()

    async def take_unread(self, model: str, grant: Grant) -> list[tuple[str, str, str]]:
        """If ``grant`` is still unread in its replica's mailbox, every grant there, taken
        out — (model, waiter, backend) each: that replica does not read its mailbox. Empty
        if it was read."""
        with reachable("admission store"):
            taken = await self._take_unread(
                keys=[keys.grants(grant.replica)], args=[_entry(model, grant)]
            )
        return [_parse_entry(raw) for raw in taken]

    async def bury(
        self,
        model: str,
        replica: str,
        leases: Sequence[tuple[str, str]],
        candidates: Candidates,
    ) -> Reply:
        """``replica`` left grants unread: lapse its record (its waiters are dropped from now
        on), give back the ``(backend, lease id)`` grants it did not read, and hand their
        slots to the next waiters."""
        flat = [item for pair in leases for item in pair]
        with reachable("admission store"):
            items = await self._bury(
                keys=[keys.queue_keys(model)],
                args=[
                    keys.model_prefix(model),
                    replica,
                    self.grant_ttl_ms,
                    *_flatten(candidates),
                    *flat,
                ],
            )
        loads, grants = _parse_tail(items, len(candidates))
        return Reply(loads, grants)

    async def next_grant(self, replica: str, timeout: float) -> tuple[str, str, str] | None:
        """The next grant for this replica — (model, waiter, backend) — or None on timeout."""
        item = await self.redis.blpop([keys.grants(replica)], timeout=timeout)
        if item is None:
            return None
        return _parse_entry(item[1])


def _entry(model: str, grant: Grant) -> str:
    """A grant as its replica's mailbox holds it."""
    return f"{model}\t{grant.waiter}\t{grant.backend}"


def _parse_entry(raw: bytes | str) -> tuple[str, str, str]:
    model, waiter, backend = (raw.decode() if isinstance(raw, bytes) else raw).split("\t")
    return model, waiter, backend
