"""Slot leases and the fair wait queue, shared by every gateway replica through the store.

A request holds a *lease* on one slot of one backend from admission to its last byte, so no
backend ever has more requests in flight than it has slots, however many replicas admit
them: the rest wait in the model's queue — bounded, with a deadline, and fair across API keys
by weight — not in llama-server's unbounded internal queue.

This module is one replica's side of it: a future per local waiter, resolved when a grant
names it (returned by a script this replica ran, or posted to its mailbox by another
replica); a loop that renews the leases of running requests, so a replica that dies leaks
its slots only until their TTL; and a pump every upkeep tick while this replica has waiters,
so slots freed by expiry reach the queue — and its record stays alive, so a replica that dies
has its waiters skipped instead of granted within a few seconds. When the store comes back
after an outage (the grant loop sees it within :data:`MAILBOX_WAIT`), releases that failed
meanwhile are sent again, waiters are queued again where the store lost them, and the queue
is pumped at once. ``memory://`` runs the very same scripts in-process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import time
from collections import defaultdict
from collections.abc import Callable, Sequence

from redis.exceptions import RedisError

from gateway.admission.tickets import ANONYMOUS, Lease, Ticket, Waiter
from gateway.errors import GatewayError, QueueFull, QueueTimeout, Unavailable
from gateway.pool.backend import Backend
from gateway.store.admission import AdmissionStore, Grant, Reply
from gateway.store.commands import Command
from gateway.store.connection import execute

__all__ = ["Admission", "Lease", "Ticket"]

log = logging.getLogger(__name__)

#: Seconds one ``BLPOP`` on the grant mailbox waits before looking again; also how soon the
#: grant loop sees the store go or come back.
MAILBOX_WAIT = 0.5
#: Upkeep ticks (pumps of the models this replica has waiters for) in the time a replica's
#: record stays alive (``AdmissionStore.alive_ttl``, 3 s by default): a tick every second,
#: and a record lapses only if two ticks in a row were late.
TICKS_ALIVE = 3
#: Seconds ``/ready``'s look at the store may take before it counts as unreachable.
STORE_CHECK_TIMEOUT = 0.5


class Admission:
    def __init__(
        self,
        store: AdmissionStore,
        *,
        backends: Callable[[str], Sequence[Backend]],
        by_name: Callable[[str], Backend | None],
        queue_size: int,
        queue_timeout: float,
        lease_ttl: float = 15.0,
    ) -> None:
        self.store = store
        self._backends = backends  # ready backends serving a model
        self._by_name = by_name
        self.queue_size = queue_size
        self.queue_timeout = queue_timeout
        self.lease_ttl = lease_ttl
        self.replica = secrets.token_hex(6)
        self._waiters: dict[str, Waiter] = {}
        self._held: dict[str, Lease] = {}
        #: Leases per backend and waiters per model, as the last script saw them (all
        #: replicas'): the routing snapshot and the gauges read these.
        self._loads: dict[Backend, int] = defaultdict(int)
        self._queued: dict[str, int] = defaultdict(int)
        self._service_time: dict[str, float] = defaultdict(lambda: 1.0)
        self._tasks: set[asyncio.Task] = set()
        self._stopping = asyncio.Event()
        #: Whether the store answered the last command this replica sent it.
        self.store_ok = True
        #: Releases that failed (store away), ``(model, backend, lease id)``: sent again
        #: once the store is back, so their slots do not wait out the lease TTL.
        self._unreleased: list[tuple[str, str, str]] = []

    # -- what the request path and the gauges read ----------------------------------------

    def inflight(self, backend: Backend) -> int:
        return self._loads[backend]

    def queue_depth(self, model: str) -> int:
        return self._queued[model]

    # -- acquire and release --------------------------------------------------------------

    async def acquire(
        self,
        model: str,
        candidates: list[Backend],
        *,
        exclude: frozenset[Backend] = frozenset(),
        ticket: Ticket = ANONYMOUS,
    ) -> Lease:
        """A lease on the first candidate with a free slot (``candidates`` in the routing
        policy's order), or on the first slot handed to this request while it waits."""
        waiter_id = secrets.token_hex(8)
        waiter = Waiter(
            asyncio.get_running_loop().create_future(),
            model,
            ticket,
            time.monotonic(),
            [b.name for b in exclude],
        )
        self._waiters[waiter_id] = waiter
        pairs = self._pairs(model, candidates)
        try:
            reply = await self._enqueue(waiter_id, waiter, pairs, self.queue_timeout)
        except BaseException:
            del self._waiters[waiter_id]
            raise
        if reply.status == "granted":
            del self._waiters[waiter_id]
            return self._hold(waiter_id, model, reply.backend)
        if reply.status == "full":
            del self._waiters[waiter_id]
            raise QueueFull(
                f"The queue for model '{model}' is full ({self.queue_size} waiting)",
                retry_after=self._retry_after(model, candidates),
            )
        try:
            lease = await asyncio.wait_for(asyncio.shield(waiter.future), self.queue_timeout)
        except (TimeoutError, asyncio.CancelledError) as exc:
            self._spawn(self._abandon(waiter_id, waiter))
            if isinstance(exc, TimeoutError):
                self._log_timeout(model)
                raise QueueTimeout(
                    f"No slot for model '{model}' became free within {self.queue_timeout:g} s",
                    retry_after=self._retry_after(model, candidates),
                ) from None
            raise
        lease.waited = lease.granted_at - waiter.enqueued_at
        return lease

    async def _enqueue(
        self, waiter_id: str, waiter: Waiter, pairs: list[tuple[str, int]], timeout: float
    ) -> Reply:
        """Run the acquire script for ``waiter`` (again, after the store lost it: the script
        leaves a waiter it still has where it is) and take in what it saw."""
        ticket = waiter.ticket
        try:
            reply = await self.store.acquire(
                waiter.model,
                key_id=ticket.key_id,
                waiter=waiter_id,
                replica=self.replica,
                weight=ticket.weight,
                cost=ticket.cost,
                priority=ticket.priority,
                timeout=timeout,
                bound=self.queue_size,
                exclude=waiter.exclude,
                candidates=pairs,
            )
        except Unavailable:
            self._store_failed()
            raise
        self._store_answered()
        self._observe(waiter.model, pairs, reply)
        return reply

    def release(self, lease: Lease) -> Command[None]:
        """Give ``lease`` back: awaited alone, or sent in one round trip with the caller's
        own commands (the accountant's settlement). A release the store could not take is
        logged and sent again when the store is back."""
        self._held.pop(lease.id, None)
        held = time.monotonic() - lease.granted_at
        self._service_time[lease.model] = 0.8 * self._service_time[lease.model] + 0.2 * held
        pairs = self._pairs(lease.model, [lease.backend])

        def handle(reply: Reply | Exception) -> None:
            if isinstance(reply, Exception):
                log.warning(
                    "releasing a lease on %s failed (sent again when the store is back): %s",
                    lease.backend.name,
                    reply,
                )
                if isinstance(reply, RedisError):
                    self._store_failed()
                    self._unreleased.append((lease.model, lease.backend.name, lease.id))
                return
            self._store_answered()
            self._observe(lease.model, pairs, reply)

        release = self.store.release(lease.model, lease.backend.name, lease.id, pairs)
        return release.then(handle)

    def offer(self, backend: Backend) -> None:
        """A backend became ready or gained slots: hand them to the model's waiters."""
        if backend.model_id is not None:
            self._spawn(self._pump(backend.model_id))

    # -- background loops (started by the app's lifespan) --------------------------------

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
        """Pump the models this replica has waiters for every tick; renew leases and
        heartbeat every third of the lease TTL (or sooner, to a whole number of ticks)."""
        tick = self.store.alive_ttl / TICKS_ALIVE
        beats = max(1, int(self.lease_ttl / 3 / tick))
        n = 0
        while True:
            await asyncio.sleep(tick)
            n += 1
            try:
                if n % beats == 0:
                    await self._heartbeat()
                for model in {w.model for w in self._waiters.values()}:
                    await self._pump(model)
            except Exception as exc:
                self._store_failed()
                log.warning("admission upkeep failed: %s", exc)

    async def _heartbeat(self) -> None:
        """Renew the running leases and this replica's record of each model it holds leases
        or waiters for; queue again the waiters of a model whose record had lapsed."""
        by_model: dict[str, list[Lease]] = defaultdict(list)
        for lease in list(self._held.values()):
            by_model[lease.model].append(lease)
        for model in {w.model for w in self._waiters.values()}:
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

    # -- steps ----------------------------------------------------------------------------

    def _pairs(self, model: str, first: Sequence[Backend]) -> list[tuple[str, int]]:
        """Candidates for a script: ``first`` in order, then the model's other ready
        backends, so a freed slot anywhere reaches waiters."""
        ordered = list(first)
        ordered += [b for b in self._backends(model) if b not in ordered]
        return [(b.name, b.slots) for b in ordered if b.ready]

    def _observe(self, model: str, pairs: list[tuple[str, int]], reply: Reply) -> None:
        for (name, _), load in zip(pairs, reply.loads, strict=False):
            backend = self._by_name(name)
            if backend is not None:
                self._loads[backend] = load
        if reply.status or reply.queued:
            self._queued[model] = reply.queued
        local = [g for g in reply.grants if g.replica == self.replica]
        for grant in local:
            self._deliver(model, grant)
        foreign = [g for g in reply.grants if g.replica != self.replica]
        if foreign:
            self._spawn(self.store.post(model, foreign))

    def _deliver(self, model: str, grant: Grant) -> None:
        if grant.waiter in self._held:
            return  # a second word of a grant already taken (the waiter was queued again)
        waiter = self._waiters.pop(grant.waiter, None)
        if not grant.backend:  # displaced from a full queue by a key with fewer waiting
            if waiter is not None and not waiter.future.done():
                waiter.future.set_exception(
                    QueueFull(
                        f"The queue for model '{model}' is full; this key has the most requests "
                        "waiting, so its newest one made room for another key's",
                        retry_after=self._retry_after(model, self._backends(model)),
                    )
                )
            return
        backend = self._by_name(grant.backend)
        if waiter is None or waiter.future.done() or backend is None:
            # Its request has gone (deadline, client left), or the backend is not one this
            # replica knows (the scripts grant only backends in its record, so only when it
            # left the pool meanwhile): give the slot straight back.
            self._spawn(self._give_back(model, grant.backend, grant.waiter))
            return
        waiter.future.set_result(self._hold(grant.waiter, model, grant.backend))

    def _hold(self, lease_id: str, model: str, backend_name: str | None) -> Lease:
        backend = self._by_name(backend_name or "")
        if backend is None:
            raise GatewayError(f"granted a lease on unknown backend {backend_name}")
        lease = Lease(backend, model, lease_id)
        self._held[lease_id] = lease
        return lease

    async def _give_back(self, model: str, backend_name: str, lease_id: str) -> None:
        """Release a lease no request of this replica holds, by the backend's name (which
        may be one this replica does not know), and hand its slot on."""
        backend = self._by_name(backend_name)
        if backend is not None:
            await self.release(Lease(backend, model, lease_id))
            return
        await self.store.release(model, backend_name, lease_id, [])

    async def _abandon(self, waiter_id: str, waiter: Waiter) -> None:
        """The waiter gave up: leave the queue, or give back a lease that came meanwhile."""
        self._waiters.pop(waiter_id, None)
        if waiter.future.done() and not waiter.future.cancelled():
            await self.release(waiter.future.result())
            return
        waiter.future.cancel()
        with contextlib.suppress(GatewayError):
            await self.store.leave(waiter.model, waiter.key_id, waiter_id)
        # If it was granted meanwhile, the grant reaches _deliver, which releases it.

    async def _pump(self, model: str) -> None:
        pairs = self._pairs(model, [])
        if not pairs:
            return
        reply = await self.store.pump(model, self.replica, pairs)
        self._observe(model, pairs, reply)
        if reply.lapsed:  # this replica stalled: others may have dropped its waiters as dead
            await self._requeue(model)

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("admission task failed: %s", task.exception())

    def _log_timeout(self, model: str) -> None:
        """Say, for the operator, whether a waiter that timed out met full backends (too
        little capacity for the load) or free slots (a stall worth a bug report): the leases
        per backend as the last script saw them, all replicas'. At most one line per waiter
        that reached its deadline: the queue's bound over its timeout, per second."""
        backends = [b for b in self._backends(model) if b.ready]
        held = sum(self._loads[b] for b in backends)
        slots = sum(b.slots for b in backends)
        log.warning(
            "no slot for %s within %g s: %d waiting, %d of %d slots leased (%s)",
            model,
            self.queue_timeout,
            self._queued[model],
            held,
            slots,
            ", ".join(f"{b.name} {self._loads[b]}/{b.slots}" for b in backends) or "no backend",
        )

    def _retry_after(self, model: str, candidates: Sequence[Backend]) -> float:
        slots = sum(b.slots for b in candidates) or 1
        waiting = self._queued[model] + 1
        return max(1.0, math.ceil(self._service_time[model] * waiting / slots))
