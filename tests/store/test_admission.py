"""Slot leases and the fair queue, shared through the store: each test runs against a real
redis-server and against ``memory://``, with two :class:`Admission` objects standing for two
gateway replicas."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis

from gateway.admission.leases import Admission, Lease, Ticket
from gateway.errors import QueueFull, QueueTimeout
from gateway.pool.backend import Backend, Health
from gateway.store import keys
from gateway.store.admission import AdmissionStore
from gateway.upstream.client import BackendClient

MODEL = "smollm2"


def _backend(port: int, slots: int) -> Backend:
    backend = Backend(f"http://127.0.0.1:{port}", BackendClient(f"http://127.0.0.1:{port}"))
    backend.health, backend.model_id, backend.slots = Health.READY, MODEL, slots
    return backend


class Replica:
    """One gateway replica's admission over a fixed set of backends."""

    def __init__(
        self,
        client: redis.Redis,
        backends: list[Backend],
        *,
        lease_ttl: float = 15,
        queue_size: int = 100,
        queue_timeout: float = 10,
    ) -> None:
        self.backends = backends
        self.admission = Admission(
            AdmissionStore(client, lease_ttl=lease_ttl, grant_ttl=lease_ttl * 2 / 3),
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


@pytest.fixture
async def two_replicas(client: redis.Redis, other_client: redis.Redis) -> AsyncIterator[tuple]:
    # Both replicas see the same backends (names), through their own Backend objects.
    a = Replica(client, [_backend(9001, 2), _backend(9002, 2)]).start()
    b = Replica(other_client, [_backend(9001, 2), _backend(9002, 2)]).start()
    yield a, b
    await a.stop()
    await b.stop()


async def _leases(client: redis.Redis, port: int) -> int:
    return await client.zcard(keys.leases(MODEL, f"127.0.0.1:{port}"))


async def test_leases_never_exceed_slots_across_replicas(
    client: redis.Redis, two_replicas: tuple[Replica, Replica]
) -> None:
    a, b = two_replicas
    held = [await a.acquire(), await b.acquire(), await a.acquire(), await b.acquire()]
    assert sorted(lease.backend.name for lease in held) == sorted(
        ["127.0.0.1:9001", "127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9002"]
    )
    waiting = asyncio.create_task(b.acquire())
    await asyncio.sleep(0.2)
    assert not waiting.done()  # four slots, four leases: the fifth waits
    assert await _leases(client, 9001) + await _leases(client, 9002) == 4

    await a.admission.release(held[0])  # freed on replica A, handed to B's waiter
    lease = await asyncio.wait_for(waiting, 5)
    assert lease.backend.name == held[0].backend.name
    assert await _leases(client, 9001) + await _leases(client, 9002) == 4
    for x in [*held[1:], lease]:
        await (a if x in held[::2] else b).admission.release(x)
    assert await _leases(client, 9001) + await _leases(client, 9002) == 0


async def test_a_light_key_is_not_starved_by_a_flood(client: redis.Redis) -> None:
    replica = Replica(client, [_backend(9001, 1)]).start()
    try:
        first = await replica.acquire("flood")
        flood = [asyncio.create_task(replica.acquire("flood")) for _ in range(30)]
        await asyncio.sleep(0.1)
        light = asyncio.create_task(replica.acquire("light"))
        await asyncio.sleep(0.1)
        served: list[str] = []
        lease = first
        for _ in range(3):
            await replica.admission.release(lease)
            await asyncio.sleep(0.05)
            done = [t for t in [*flood, light] if t.done() and t not in served]
            (task,) = done
            served.append(task)
            lease = task.result()
        # Thirty waiting before it, yet the light key's one request is among the next two.
        assert light in served[:2]
        await replica.admission.release(lease)
        for task in flood:
            task.cancel()
    finally:
        await replica.stop()


async def test_priority_within_a_key(client: redis.Redis) -> None:
    replica = Replica(client, [_backend(9001, 1)]).start()
    try:
        held = await replica.acquire()
        low = asyncio.create_task(replica.acquire(priority=0))
        await asyncio.sleep(0.05)
        high = asyncio.create_task(replica.acquire(priority=5))
        await asyncio.sleep(0.05)
        await replica.admission.release(held)
        lease = await asyncio.wait_for(high, 5)
        assert not low.done()
        await replica.admission.release(lease)
        await replica.admission.release(await asyncio.wait_for(low, 5))
    finally:
        await replica.stop()


async def test_a_dead_replicas_leases_expire(
    client: redis.Redis, other_client: redis.Redis
) -> None:
    dead = Replica(client, [_backend(9001, 1)], lease_ttl=0.6)  # never started: no renewals
    live = Replica(other_client, [_backend(9001, 1)], lease_ttl=0.6).start()
    try:
        await dead.acquire()
        waiting = asyncio.create_task(live.acquire())
        # The dead replica's lease lapses after its TTL; the live one's pump hands it on.
        lease = await asyncio.wait_for(waiting, 5)
        assert lease.backend.name == "127.0.0.1:9001"
        await live.admission.release(lease)
    finally:
        await live.stop()


async def test_running_leases_are_renewed(client: redis.Redis) -> None:
    replica = Replica(client, [_backend(9001, 1)], lease_ttl=0.6).start()
    try:
        lease = await replica.acquire()
        await asyncio.sleep(1.5)  # well past the TTL: renewals kept it
        assert await _leases(client, 9001) == 1
        await replica.admission.release(lease)
    finally:
        await replica.stop()


async def test_full_queue_and_deadline(client: redis.Redis) -> None:
    replica = Replica(client, [_backend(9001, 1)], queue_size=1, queue_timeout=0.3).start()
    try:
        held = await replica.acquire()
        waiter = asyncio.create_task(replica.acquire())
        await asyncio.sleep(0.05)
        with pytest.raises(QueueFull) as full:
            await replica.acquire()
        assert full.value.retry_after >= 1
        with pytest.raises(QueueTimeout):
            await waiter
        await asyncio.sleep(0.1)
        assert int(await client.get(keys.model_prefix(MODEL) + "q:n") or 0) == 0
        await replica.admission.release(held)
        assert await _leases(client, 9001) == 0
    finally:
        await replica.stop()


async def test_a_cancelled_waiter_leaves_the_queue(client: redis.Redis) -> None:
    replica = Replica(client, [_backend(9001, 1)]).start()
    try:
        held = await replica.acquire()
        waiter = asyncio.create_task(replica.acquire())
        await asyncio.sleep(0.05)
        waiter.cancel()  # the client went away
        await asyncio.sleep(0.1)
        assert int(await client.get(keys.model_prefix(MODEL) + "q:n") or 0) == 0
        await replica.admission.release(held)
        await asyncio.sleep(0.1)
        assert await _leases(client, 9001) == 0  # nothing was granted to the leaver
    finally:
        await replica.stop()


async def test_excluded_backend_is_not_granted(client: redis.Redis) -> None:
    replica = Replica(client, [_backend(9001, 1), _backend(9002, 1)]).start()
    try:
        first, second = replica.backends
        lease = await replica.admission.acquire(MODEL, [first, second], exclude=frozenset({first}))
        assert lease.backend is second
        await replica.admission.release(lease)
    finally:
        await replica.stop()


async def test_a_flood_cannot_lock_other_keys_out_of_a_full_queue(client: redis.Redis) -> None:
    replica = Replica(client, [_backend(9001, 1)], queue_size=3).start()
    try:
        held = await replica.acquire("flood")
        flood = [asyncio.create_task(replica.acquire("flood")) for _ in range(3)]
        await asyncio.sleep(0.1)
        with pytest.raises(QueueFull):  # the same key cannot push its own waiters out
            await replica.acquire("flood")
        light = asyncio.create_task(replica.acquire("light"))
        await asyncio.sleep(0.1)
        # The flood's newest waiter made room; the light key's request waits in the queue.
        refused = [t for t in flood if t.done()]
        assert len(refused) == 1 and isinstance(refused[0].exception(), QueueFull)
        assert not light.done()
        # Fair order from here: the light key is served next, or after one flood request.
        lease, served = held, []
        while not light.done():
            await replica.admission.release(lease)
            await asyncio.sleep(0.1)
            done = [t for t in [*flood, light] if t.done() and t not in served and t not in refused]
            (task,) = done
            served.append(task)
            lease = task.result()
        assert len(served) <= 2
        await replica.admission.release(lease)
        for task in flood:
            task.cancel()
    finally:
        await replica.stop()
