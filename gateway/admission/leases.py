"""Slot leases and the fair wait queue, shared by every gateway replica through the store.

A request holds a *lease* on one slot of one backend from admission to its last byte, so no
backend ever has more requests in flight than it has slots, however many replicas admit
them: the rest wait in the model's queue — bounded, with a deadline, and fair across API keys
by weight — not in llama-server's unbounded internal queue.

This module is one replica's side of it, the request path's half: a future per local
waiter, resolved when a grant names it (returned by a script this replica ran, or posted to
its mailbox by another replica), and the release that hands a slot on. The background half —
the grant loop, lease renewals, pumps, taking back grants a dead replica left unread, and
recovery after a store outage — is :mod:`gateway.admission.upkeep`. ``memory://`` runs the
very same scripts in-process.
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

from gateway.admission.tickets import ANONYMOUS, Attempt, Lease, Ticket, Waiter
from gateway.admission.unread import UnreadGrants
from gateway.admission.upkeep import Upkeep
from gateway.errors import GatewayError, QueueFull, QueueTimeout, Unavailable
from gateway.pool.backend import Backend
from gateway.store.admission import AdmissionStore, Grant, Reply
from gateway.store.commands import Command

__all__ = ["Admission", "Attempt", "Lease", "Ticket"]

log = logging.getLogger(__name__)


class Admission(Upkeep):
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
        #: Grants posted to other replicas, watched until read: one left unread means its
        #: replica is dead or stalled, and its grants are taken back.
        self._unread = UnreadGrants(store)
        #: Models asked for a lease since the last heartbeat: it runs for them too, which
        #: clears their backends' expired leases out (a dead replica's) while they are used.
        self._used: set[str] = set()

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
        self._used.add(model)
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
            self._waiters.pop(waiter_id, None)
            if _holds_lease(waiter):  # handed one meanwhile (below): it goes back
                self._spawn(self._abandon(waiter_id, waiter))
            raise
        if reply.status == "granted":
            self._waiters.pop(waiter_id, None)
            return self._hold(waiter_id, model, reply.backend)
        if waiter.future.done():
            # While this script was on its way the store came back and the replica queued
            # its waiters again (_requeue), this one too, and that answer came first: it
            # handed the waiter its lease (the same one: the waiter's id is the lease's).
            self._waiters.pop(waiter_id, None)
            return waiter.future.result()
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

    def try_acquire(
        self, model: str, candidates: list[Backend], *, ticket: Ticket = ANONYMOUS
    ) -> tuple[Attempt, Command[Lease | None]]:
        """A lease on the first candidate with a free slot if no one waits, to ask for in the
        round trip that checks the request's limits: the command's result is the lease, or
        ``None`` (no free slot, or someone waits: :meth:`acquire` then queues the request).
        A request its limits refuse gives the lease back (:meth:`withdraw` the attempt)."""
        self._used.add(model)
        attempt = Attempt(model, secrets.token_hex(8), self._pairs(model, candidates))

        def taken(reply: Reply) -> Lease | None:
            self._store_answered()
            attempt.answered = True
            self._observe(model, attempt.candidates, reply)
            if reply.lapsed and self._others_waiting(model):
                self._spawn(self._requeue(model))
            if reply.status != "granted":
                return None
            attempt.lease = self._hold(attempt.waiter, model, reply.backend)
            return attempt.lease

        asked = self._acquiring(
            model, attempt.waiter, ticket, attempt.candidates, self.queue_timeout, only_free=True
        )

        def failed(exc: Exception) -> None:
            attempt.answered = True  # (nothing to give back by id to a store that is away)
            if isinstance(exc, Unavailable):
                self._store_failed()

        return attempt, asked.then(taken, failed=failed)

    async def withdraw(self, attempt: Attempt) -> None:
        """The request of ``attempt`` goes no further (its limits refused it, its client left):
        its lease goes back — by the lease's id on every candidate when the client left before
        the store's reply came, as the store may have granted it all the same."""
        if attempt.lease is not None:
            await self.release(attempt.lease)
        elif not attempt.answered:
            for name, _ in attempt.candidates:
                await self._give_back(attempt.model, name, attempt.waiter)

    async def _enqueue(
        self, waiter_id: str, waiter: Waiter, pairs: list[tuple[str, int]], timeout: float
    ) -> Reply:
        """Run the acquire script for ``waiter`` (again, after the store lost it: the script
        leaves a waiter it still has where it is) and take in what it saw."""
        ticket = waiter.ticket
        try:
            reply = await self._acquiring(
                waiter.model, waiter_id, ticket, pairs, timeout, exclude=waiter.exclude
            )
        except Unavailable:
            self._store_failed()
            raise
        self._store_answered()
        self._observe(waiter.model, pairs, reply)
        if reply.lapsed and self._others_waiting(waiter.model, waiter):
            # This replica's record had lapsed (it stalled, or was taken for dead): the
            # store may have dropped its other waiters.
            self._spawn(self._requeue(waiter.model))
        return reply

    def _acquiring(
        self,
        model: str,
        waiter_id: str,
        ticket: Ticket,
        pairs: list[tuple[str, int]],
        timeout: float,
        *,
        exclude: Sequence[str] = (),
        only_free: bool = False,
    ) -> Command[Reply]:
        """The acquire script for ``waiter_id``, as this replica runs it."""
        return self.store.acquire(
            model,
            key_id=ticket.key_id,
            waiter=waiter_id,
            replica=self.replica,
            weight=ticket.weight,
            cost=ticket.cost,
            priority=ticket.priority,
            timeout=timeout,
            bound=self.queue_size,
            exclude=exclude,
            candidates=pairs,
            only_free=only_free,
        )

    def _others_waiting(self, model: str, waiter: Waiter | None = None) -> bool:
        return any(
            other is not waiter and other.model == model and not other.future.done()
            for other in self._waiters.values()
        )

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
            self._unread.posted(model, foreign)
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


def _holds_lease(waiter: Waiter) -> bool:
    future = waiter.future
    return future.done() and not future.cancelled() and future.exception() is None
