"""Stand-ins for gateway replicas in the store tests: one :class:`Admission` each over a fixed
set of backends (backend objects with the pool's state set by hand: no runner behind them —
the admission scripts only read their names and slot counts)."""

from __future__ import annotations

import asyncio

import redis.asyncio as redis

from gateway.admission.leases import Admission, Lease, Ticket
from gateway.pool.backend import Backend, Health
from gateway.store import keys
from gateway.store.admission import AdmissionStore
from gateway.upstream.client import BackendClient

MODEL = "smollm2"


def backend(port: int, slots: int) -> Backend:
    made = Backend(f"http://127.0.0.1:{port}", BackendClient(f"http://127.0.0.1:{port}"))
    made.health, made.model_id, made.slots = Health.READY, MODEL, slots
    return made


class Replica:
    """One gateway replica's admission over a fixed set of backends."""

    def __init__(
        self,
        client: redis.Redis,
        backends: list[Backend],
        *,
        lease_ttl: float = 15,
        grant_ttl: float | None = None,
        queue_size: int = 100,
        queue_timeout: float = 10,
    ) -> None:
        self.backends = backends
        grant_ttl = lease_ttl * 2 / 3 if grant_ttl is None else grant_ttl
        self.admission = Admission(
            AdmissionStore(client, lease_ttl=lease_ttl, grant_ttl=grant_ttl),
            backends=lambda model: [b for b in self.backends if b.model_id == model],
            by_name=lambda name: next((b for b in self.backends if b.name == name), None),
            queue_size=queue_size,
            queue_timeout=queue_timeout,
            lease_ttl=lease_ttl,
        )
        self._task: asyncio.Task | None = None

    def start(self) -> Replica:
        self._task = asyncio.create_task(self.admission.run())
        return self

    async def stop(self) -> None:
        if self._task:
            await self.admission.stop()
            await asyncio.wait_for(self._task, 5)

    async def acquire(self, key: str = "k", **ticket) -> Lease:
        return await self.admission.acquire(
            MODEL, list(self.backends), ticket=Ticket(key_id=key, **ticket)
        )


async def queued(client: redis.Redis) -> int:
    """Waiters in the model's queue, all replicas'."""
    return int(await client.get(keys.model_prefix(MODEL) + "q:n") or 0)


async def until_queued(client: redis.Redis, n: int, timeout: float = 10) -> None:
    """Wait (polling) until ``n`` waiters are queued — a loaded machine may take a while to
    send a task's acquire."""
    async with asyncio.timeout(timeout):
        while await queued(client) != n:  # noqa: ASYNC110 - the state is in Redis
            await asyncio.sleep(0.01)
