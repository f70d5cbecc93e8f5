"""What admission hands around: who asks (:class:`Ticket`), what it gets (:class:`Lease`),
one replica's record of a request still waiting (:class:`Waiter`), and a free slot asked for
before the request's limits are known (:class:`Attempt`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from redis.asyncio.client import Pipeline

from gateway.pool.backend import Backend


@dataclass(frozen=True, slots=True)
class Ticket:
    """Who is asking, for fair queueing: the API key, its weight and priority, the cost."""

    key_id: str = "anonymous"
    weight: float = 1.0
    priority: int = 0
    cost: int = 1


@dataclass(eq=False)
class Lease:
    backend: Backend
    model: str
    id: str
    granted_at: float = field(default_factory=time.monotonic)
    #: Seconds the request waited in the queue for this lease.
    waited: float = 0.0
    #: Commands queued on the renewal pipeline beside the lease (e.g. the key's
    #: concurrency entry in the limits store).
    renewals: list[Callable[[Pipeline], None]] = field(default_factory=list)


@dataclass(eq=False)
class Waiter:
    future: asyncio.Future[Lease]
    model: str
    ticket: Ticket
    enqueued_at: float
    #: Backends this request must not be granted (one it failed on).
    exclude: list[str] = field(default_factory=list)

    @property
    def key_id(self) -> str:
        return self.ticket.key_id


@dataclass(eq=False, slots=True)
class Attempt:
    """A lease asked for in the limits check's round trip, before its verdict: granted only
    if a slot is free and no one waits (``Admission.try_acquire``). ``lease`` once granted;
    ``answered`` once the store's reply — or the round trip's failure — was read. Unanswered
    (the client left first), whether the store granted it is unknown, and
    ``Admission.withdraw`` gives back ``waiter``'s lease on every candidate. (A lease granted
    by a round trip that then failed lapses with its TTL, as any lease of a lost reply does.)"""

    model: str
    waiter: str
    candidates: list[tuple[str, int]]
    answered: bool = False
    lease: Lease | None = None


#: The ticket of a request that names no key (``--no-auth``).
ANONYMOUS = Ticket()
