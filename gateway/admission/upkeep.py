"""The background half of a replica's admission (:class:`~gateway.admission.leases.Admission`
is made of it and of the request path's half): the loops that the app's lifespan starts, and
what they do when the store goes away and comes back.

- The grant loop takes grants from this replica's mailbox (another replica's script granted
  one of its waiters a slot) with ``BLPOP``, one connection for all its waiters.
- The upkeep loop, every tick (a second by default): pumps each model this replica has
  waiters for, so slots freed by expiry reach the queue and its record stays alive; takes
  back the grants it posted that a dead replica left unread (:mod:`.unread`). Every third of
  the lease TTL it renews the leases of running requests and heartbeats, so a replica that
  dies leaks its slots only until their TTL.
- When the store comes back after an outage (the grant loop sees it within
  :data:`MAILBOX_WAIT`), releases that failed meanwhile are sent again, waiters are queued
  again where the store lost them, and the queue is pumped at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Coroutine, Sequence
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from gateway.admission.tickets import Lease, Waiter
from gateway.admission.unread import UnreadGrants
from gateway.pool.backend import Backend
from gateway.store.admission import AdmissionStore, Grant, Reply
from gateway.store.connection import execute

log = logging.getLogger("gateway.admission.leases")  # one logger for the whole of admission

#: Seconds one ``BLPOP`` on the grant mailbox waits before looking again; also how soon the
#: grant loop sees the store go or come back.
MAILBOX_WAIT = 0.5
#: Upkeep ticks (pumps of the models this replica has waiters for) in the time a replica's
#: record stays alive (``AdmissionStore.alive_ttl``, 3 s by default): a tick every second,
#: and a record lapses only if two ticks in a row were late.
TICKS_ALIVE = 3
#: Seconds ``/ready``'s look at the store may take before it counts as unreachable.
STORE_CHECK_TIMEOUT = 0.5


class Upkeep:
    """The background loops of :class:`~gateway.admission.leases.Admission`, which holds the
    state they read and write (declared here for the type checker)."""

    store: AdmissionStore
    replica: str
    lease_ttl: float
    queue_timeout: float
    store_ok: bool
    _waiters: dict[str, Waiter]
    _held: dict[str, Lease]
    _used: set[str]
    _unreleased: list[tuple[str, str, str]]
    _unread: UnreadGrants
    _stopping: asyncio.Event

    if TYPE_CHECKING:  # the request path's half, in Admission

        def _pairs(self, model: str, first: Sequence[Backend]) -> list[tuple[str, int]]: ...
        def _observe(self, model: str, pairs: list[tuple[str, int]], reply: Reply) -> None: ...
        def _deliver(self, model: str, grant: Grant) -> None: ...
        def _spawn(self, coro: Coroutine[Any, Any, None]) -> None: ...
        async def _enqueue(
            self, waiter_id: str, waiter: Waiter, pairs: list[tuple[str, int]], timeout: float
        ) -> Reply: ...
        async def _give_back(self, model: str, backend_name: str, lease_id: str) -> None: ...

    async def run(self) -> None:
        """Take grants from this replica's mailbox; renew running leases; pump now and then.
        Ends after :meth:`stop` (at once if it came first: a replica stopped before its task
        ran); it may be run again after."""
        upkeep = asyncio.create_task(self._upkeep_loop())
        try:
            await self._grant_loop()
        finally:
            upkeep.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await upkeep
            self._stopping.clear()

    async def stop(self) -> None:
        """Let :meth:`run` end. The mailbox loop is not cancelled mid-``BLPOP`` (redis-py
        can hang releasing a connection cancelled there); it sees the flag within
        :data:`MAILBOX_WAIT` seconds."""
        self._stopping.set()

    async def _grant_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                grant = await self.store.next_grant(self.replica, timeout=MAILBOX_WAIT)
            except Exception as exc:  # Redis away: wait for it to come back
                self._store_failed()
                log.warning("grant mailbox unreachable: %s", exc)
                await asyncio.sleep(MAILBOX_WAIT)
                continue
            self._store_answered()
            if grant is not None:
                model, waiter_id, backend = grant
                self._deliver(model, Grant(self.replica, waiter_id, backend))

    async def _upkeep_loop(self) -> None:
        """Pump the models this replica has waiters for every tick, and take back the grants
        it posted that were left unread; renew leases and heartbeat every third of the lease
        TTL (or sooner, to a whole number of ticks)."""
        tick = self.store.alive_ttl / TICKS_ALIVE
        beats = max(1, int(self.lease_ttl / 3 / tick))
        n = 0
        while True:
            await asyncio.sleep(tick)
            n += 1
            try:
                if n % beats == 0:
                    await self._heartbeat()
                if self._unread:
                    await self._bury_silent()
                for model in {w.model for w in self._waiters.values()}:
                    await self._pump(model)
            except Exception as exc:
                self._store_failed()
                log.warning("admission upkeep failed: %s", exc)

    async def _bury_silent(self) -> None:
        """Take back the grants that a dead (or stalled) replica left unread in its mailbox,
        have the store skip its waiters from now on, and hand the slots on."""
        for silent in await self._unread.silent():
            log.warning(
                "replica %s left %d grants unread for %.1f s (dead, or stalled): taken back; "
                "its waiters are skipped until it runs a script again",
                silent.replica,
                sum(len(grants) for grants in silent.grants.values()),
                silent.unread_for,
            )
            for model, grants in silent.grants.items():
                pairs = self._pairs(model, [])
                reply = await self.store.bury(model, silent.replica, grants, pairs)
                self._observe(model, pairs, reply)

    async def _heartbeat(self) -> None:
        """Renew the running leases and this replica's record of each model it holds leases
        or waiters for, or asked a lease for since the last heartbeat (the renew script
        clears their expired leases out); queue again the waiters of a model whose record
        had lapsed."""
        by_model: dict[str, list[Lease]] = defaultdict(list)
        for lease in list(self._held.values()):
            by_model[lease.model].append(lease)
        used, self._used = self._used, set()
        for model in used.union(w.model for w in self._waiters.values()):
            by_model.setdefault(model, [])
        for model, leases in by_model.items():
            pairs = [(x.backend.name, x.id) for x in leases]
            candidates = self._pairs(model, [])
            held, lapsed = await self.store.renew(model, self.replica, candidates, pairs)
            if held < len(leases):
                log.warning("%d leases of %s had expired before renewal", len(leases) - held, model)
            if lapsed:
                await self._requeue(model)
        self._store_answered()
        extra = [r for lease in self._held.values() for r in lease.renewals]
        if extra:
            async with self.store.redis.pipeline(transaction=False) as pipe:
                for renewal in extra:
                    renewal(pipe)
                await execute(pipe)

    async def _requeue(self, model: str) -> None:
        """Queue this replica's waiters of ``model`` again, where the store may have lost
        them (it restarted without their state, or this replica's record lapsed and they
        were dropped as a dead replica's). The acquire script leaves a waiter it still has in
        its place, and hands back a lease it was granted meanwhile."""
        pairs = self._pairs(model, [])
        now = time.monotonic()
        for waiter_id, waiter in list(self._waiters.items()):
            if waiter.model != model or waiter.future.done() or not pairs:
                continue
            left = self.queue_timeout - (now - waiter.enqueued_at)
            if left <= 0:
                continue
            reply = await self._enqueue(waiter_id, waiter, pairs, left)
            if reply.status == "granted":
                self._deliver(model, Grant(self.replica, waiter_id, reply.backend or ""))
            elif reply.status == "full":
                self._deliver(model, Grant(self.replica, waiter_id, ""))

    # -- the store's health ---------------------------------------------------------------

    def _store_failed(self) -> None:
        self.store_ok = False

    def _store_answered(self) -> None:
        if not self.store_ok:
            self.store_ok = True
            self._spawn(self._recover())

    async def _recover(self) -> None:
        """The store is back: send the releases that failed, heartbeat (which queues again
        the waiters it lost), queue again every waiter (a store that restarted empty lost
        them all), and pump — now, not at the next upkeep tick."""
        owed, self._unreleased = self._unreleased, []
        for model, backend, lease_id in owed:
            await self._give_back(model, backend, lease_id)
        await self._heartbeat()
        for model in {w.model for w in self._waiters.values()}:
            await self._requeue(model)
            await self._pump(model)
        log.info("admission store reachable again: %d releases sent again", len(owed))

    async def check_store(self) -> bool:
        """Whether the store answers now (a ``PING``, at most :data:`STORE_CHECK_TIMEOUT`
        seconds): what ``/ready`` reports."""
        try:
            async with asyncio.timeout(STORE_CHECK_TIMEOUT):
                await self.store.redis.ping()
        except (RedisError, OSError, TimeoutError):
            self._store_failed()
            return False
        self._store_answered()
        return True

    async def _pump(self, model: str) -> None:
        pairs = self._pairs(model, [])
        if not pairs:
            return
        reply = await self.store.pump(model, self.replica, pairs)
        self._observe(model, pairs, reply)
        if reply.lapsed:  # this replica stalled: others may have dropped its waiters as dead
            await self._requeue(model)
