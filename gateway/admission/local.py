"""Slot leases and the wait queue, in this process.

A request holds a *lease* on one slot of one backend from admission to its last byte, so no
backend ever has more requests in flight than it has slots: the rest wait here, in a bounded
FIFO queue per model with a deadline — not in llama-server's unbounded internal queue.

A freed slot is handed straight to the next waiter (:meth:`Admission.offer`), with no polling.
The same ``offer`` runs when the pool finds a backend newly ready, so requests for a model that
is still loading, or whose backends are all down, wait for it until their deadline.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field

from gateway.errors import QueueFull, QueueTimeout
from gateway.pool.backend import Backend


@dataclass(eq=False)
class Lease:
    backend: Backend
    model: str
    id: int
    granted_at: float = field(default_factory=time.monotonic)
    #: Seconds the request waited in the queue for this lease.
    waited: float = 0.0


@dataclass(eq=False)
class _Waiter:
    future: asyncio.Future[Lease]
    exclude: frozenset[Backend]
    enqueued_at: float


class Admission:
    def __init__(self, *, queue_size: int, queue_timeout: float) -> None:
        self.queue_size = queue_size
        self.queue_timeout = queue_timeout
        self._inflight: defaultdict[Backend, int] = defaultdict(int)
        self._queues: defaultdict[str, deque[_Waiter]] = defaultdict(deque)
        self._ids = itertools.count(1)
        #: Moving average of how long a lease is held, per model: the basis of Retry-After.
        self._service_time: defaultdict[str, float] = defaultdict(lambda: 1.0)

    def inflight(self, backend: Backend) -> int:
        return self._inflight[backend]

    def queue_depth(self, model: str) -> int:
        return len(self._queues[model])

    async def acquire(
        self, model: str, candidates: list[Backend], *, exclude: frozenset[Backend] = frozenset()
    ) -> Lease:
        """A lease on the first candidate with a free slot, or on the first slot freed for
        ``model`` while this request waits. ``candidates`` come in the routing policy's order.
        """
        queue = self._queues[model]
        if not queue:  # waiters go first: a newcomer does not jump the queue
            for backend in candidates:
                if backend not in exclude and self._inflight[backend] < backend.slots:
                    return self._grant(backend, model)
        if len(queue) >= self.queue_size:
            raise QueueFull(
                f"The queue for model '{model}' is full ({self.queue_size} waiting)",
                retry_after=self._retry_after(model, candidates),
            )
        waiter = _Waiter(asyncio.get_running_loop().create_future(), exclude, time.monotonic())
        queue.append(waiter)
        try:
            lease = await asyncio.wait_for(asyncio.shield(waiter.future), self.queue_timeout)
        except (TimeoutError, asyncio.CancelledError) as exc:
            self._abandon(queue, waiter)
            if isinstance(exc, TimeoutError):
                raise QueueTimeout(
                    f"No slot for model '{model}' became free within {self.queue_timeout:g} s",
                    retry_after=self._retry_after(model, candidates),
                ) from None
            raise
        lease.waited = lease.granted_at - waiter.enqueued_at
        return lease

    async def release(self, lease: Lease) -> None:
        self._release(lease)

    def _release(self, lease: Lease) -> None:
        """Give the slot back; the next waiter for that backend's model gets it at once."""
        backend = lease.backend
        self._inflight[backend] -= 1
        held = time.monotonic() - lease.granted_at
        self._service_time[lease.model] = 0.8 * self._service_time[lease.model] + 0.2 * held
        self.offer(backend)

    def offer(self, backend: Backend) -> None:
        """Hand ``backend``'s free slots to the requests waiting for its model, oldest first."""
        if not backend.ready or backend.model_id is None:
            return
        queue = self._queues[backend.model_id]
        skipped: list[_Waiter] = []
        while queue and self._inflight[backend] < backend.slots:
            waiter = queue.popleft()
            if waiter.future.done():
                continue
            if backend in waiter.exclude:
                skipped.append(waiter)
                continue
            waiter.future.set_result(self._grant(backend, backend.model_id))
        queue.extendleft(reversed(skipped))

    def _grant(self, backend: Backend, model: str) -> Lease:
        self._inflight[backend] += 1
        return Lease(backend, model, next(self._ids))

    def _abandon(self, queue: deque[_Waiter], waiter: _Waiter) -> None:
        """The waiter gave up (deadline or client gone): leave the queue, or if a lease
        arrived in the same instant, give it straight back."""
        if waiter.future.done() and not waiter.future.cancelled():
            self._release(waiter.future.result())
            return
        waiter.future.cancel()
        try:
            queue.remove(waiter)
        except ValueError:
            pass

    def _retry_after(self, model: str, candidates: list[Backend]) -> float:
        slots = sum(b.slots for b in candidates) or 1
        waiting = len(self._queues[model]) + 1
        return max(1.0, math.ceil(self._service_time[model] * waiting / slots))
