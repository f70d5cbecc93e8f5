"""Slot leases and the fair queue, shared through the store: each test runs against a real
redis-server and against ``memory://``, with two :class:`Admission` objects standing for two
gateway replicas."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis

from gateway.errors import QueueFull, QueueTimeout
from gateway.store import keys
from gateway.store.connection import send_scripts
from tests.store.replicas import MODEL, Replica, backend, queued, until_queued


@pytest.fixture
async def two_replicas(client: redis.Redis, other_client: redis.Redis) -> AsyncIterator[tuple]:
    # Both replicas see the same backends (names), through their own Backend objects.
    a = Replica(client, [backend(9001, 2), backend(9002, 2)]).start()
    b = Replica(other_client, [backend(9001, 2), backend(9002, 2)]).start()
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
    replica = Replica(client, [backend(9001, 1)]).start()
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
    replica = Replica(client, [backend(9001, 1)]).start()
    try:
        held = await replica.acquire()
        low = asyncio.create_task(replica.acquire(priority=0))
        await until_queued(client, 1)
        high = asyncio.create_task(replica.acquire(priority=5))
        await until_queued(client, 2)
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
    dead = Replica(client, [backend(9001, 1)], lease_ttl=0.6)  # never started: no renewals
    live = Replica(other_client, [backend(9001, 1)], lease_ttl=0.6).start()
    try:
        await dead.acquire()
        waiting = asyncio.create_task(live.acquire())
        # The dead replica's lease lapses after its TTL; the live one's pump hands it on.
        lease = await asyncio.wait_for(waiting, 5)
        assert lease.backend.name == "127.0.0.1:9001"
        await live.admission.release(lease)
    finally:
        await live.stop()


async def test_a_dead_replicas_expired_lease_is_not_counted_and_is_cleared_out(
    client: redis.Redis, other_client: redis.Redis
) -> None:
    """The scripts count only leases not past their expiry, before anything clears them out;
    a live replica's heartbeat then clears them out of the backend's lease set."""
    dead = Replica(client, [backend(9001, 1)], lease_ttl=0.3)  # never started: no renewals
    await dead.acquire()
    await asyncio.sleep(0.5)
    assert await _leases(client, 9001) == 1  # still there, past its expiry
    live = Replica(other_client, [backend(9001, 2)], lease_ttl=0.6).start()
    try:
        first = await asyncio.wait_for(live.acquire(), 0.5)
        second = await asyncio.wait_for(live.acquire(), 0.5)  # both slots: the dead one's too
        for _ in range(40):  # the heartbeat comes every lease TTL / 3
            if await _leases(client, 9001) == 2:
                break
            await asyncio.sleep(0.05)
        assert await _leases(client, 9001) == 2  # the two live leases, renewed; the dead gone
        await live.admission.release(first)
        await live.admission.release(second)
    finally:
        await live.stop()


async def test_running_leases_are_renewed(client: redis.Redis) -> None:
    replica = Replica(client, [backend(9001, 1)], lease_ttl=0.6).start()
    try:
        lease = await replica.acquire()
        await asyncio.sleep(1.5)  # well past the TTL: renewals kept it
        assert await _leases(client, 9001) == 1
        await replica.admission.release(lease)
    finally:
        await replica.stop()


async def test_full_queue_and_deadline(
    client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    replica = Replica(client, [backend(9001, 1)], queue_size=1, queue_timeout=0.3).start()
    try:
        held = await replica.acquire()
        waiter = asyncio.create_task(replica.acquire())
        await asyncio.sleep(0.05)
        with pytest.raises(QueueFull) as full:
            await replica.acquire()
        assert full.value.retry_after >= 1
        with caplog.at_level("WARNING", logger="gateway.admission.leases"):
            with pytest.raises(QueueTimeout):
                await waiter
        # The operator's line says the backend was full: capacity, not a stall.
        assert "no slot for smollm2 within 0.3 s: 1 waiting, 1 of 1 slots leased" in caplog.text
        assert "127.0.0.1:9001 1/1" in caplog.text
        await asyncio.sleep(0.1)
        assert int(await client.get(keys.model_prefix(MODEL) + "q:n") or 0) == 0
        await replica.admission.release(held)
        assert await _leases(client, 9001) == 0
    finally:
        await replica.stop()


async def test_a_cancelled_waiter_leaves_the_queue(client: redis.Redis) -> None:
    replica = Replica(client, [backend(9001, 1)]).start()
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


async def test_a_grant_with_no_one_waiting_moves_the_fair_queue_on_as_queueing_would(
    client: redis.Redis,
) -> None:
    """With nobody waiting, a free slot is granted without joining the queue (the acquire
    script's short way), and the store ends as if the request had been queued and pumped:
    the first candidate with room is granted, the key's finish tag and the virtual time move
    on by cost / weight, and nothing is left in the queue."""
    replica = Replica(client, [backend(9001, 1), backend(9002, 1)]).start()
    prefix = keys.model_prefix(MODEL)
    try:
        first = await replica.acquire("fast", weight=2.0, cost=10)
        second = await replica.acquire("fast", weight=2.0, cost=10)
        assert [first.backend.name, second.backend.name] == ["127.0.0.1:9001", "127.0.0.1:9002"]
        assert float(await client.hget(prefix + "ft", "fast")) == 10.0  # 5 + 5
        assert float(await client.hget(prefix + "ft", "#vt")) == 10.0
        assert await queued(client) == 0 and await client.zcard(prefix + "q:keys") == 0
        assert not await client.exists(prefix + "w:" + first.id, prefix + "w:" + second.id)

        # Both slots taken: the third is queued and pumped, and its tag follows on from theirs.
        waiting = asyncio.create_task(replica.acquire("fast", weight=2.0, cost=10))
        await until_queued(client, 1)
        await replica.admission.release(first)
        third = await asyncio.wait_for(waiting, 5)
        assert third.backend.name == "127.0.0.1:9001"
        assert float(await client.hget(prefix + "ft", "fast")) == 15.0
        assert float(await client.hget(prefix + "ft", "#vt")) == 15.0
        for lease in (second, third):
            await replica.admission.release(lease)
    finally:
        await replica.stop()


async def test_excluded_backend_is_not_granted(client: redis.Redis) -> None:
    replica = Replica(client, [backend(9001, 1), backend(9002, 1)]).start()
    try:
        first, second = replica.backends
        lease = await replica.admission.acquire(MODEL, [first, second], exclude=frozenset({first}))
        assert lease.backend is second
        await replica.admission.release(lease)
    finally:
        await replica.stop()


async def test_a_flood_cannot_lock_other_keys_out_of_a_full_queue(client: redis.Redis) -> None:
    replica = Replica(client, [backend(9001, 1)], queue_size=3).start()
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


async def test_a_slot_is_granted_only_to_a_waiter_whose_replica_has_thatbackend(
    client: redis.Redis, other_client: redis.Redis
) -> None:
    """#15 item 4: replicas share a Redis and a model id, not their backends. A slot freed on
    B's backend must not go to A's waiter (A cannot use it: the grant was dropped, the waiter
    got 503 and the slot stayed taken); it stays free for B, and A's waiter gets A's slot."""
    a = Replica(client, [backend(9001, 1)]).start()
    b = Replica(other_client, [backend(9002, 1)]).start()
    try:
        on_a, on_b = await a.acquire(), await b.acquire()
        waiting_on_a = asyncio.create_task(a.acquire())
        await asyncio.sleep(0.1)
        await b.admission.release(on_b)  # frees 9002, which A's waiter cannot use
        again_on_b = await asyncio.wait_for(b.acquire(), 5)  # free, not held by a lost grant
        assert again_on_b.backend.name == "127.0.0.1:9002"
        assert not waiting_on_a.done()
        await a.admission.release(on_a)
        lease = await asyncio.wait_for(waiting_on_a, 5)
        assert lease.backend.name == "127.0.0.1:9001"
        await a.admission.release(lease)
        await b.admission.release(again_on_b)
        assert await _leases(client, 9001) + await _leases(client, 9002) == 0
    finally:
        await a.stop()
        await b.stop()


async def test_a_waiter_behind_one_that_cannot_use_the_free_slot_gets_it(
    client: redis.Redis, other_client: redis.Redis
) -> None:
    """One key (``--no-auth``: every request is "anonymous") queued on two replicas with
    different backends: the head waiter (A's) does not hold B's waiter off B's free slot."""
    a = Replica(client, [backend(9001, 1)]).start()
    b = Replica(other_client, [backend(9002, 1)]).start()
    try:
        on_a, on_b = await a.acquire(), await b.acquire()
        first = asyncio.create_task(a.acquire())
        await asyncio.sleep(0.1)
        second = asyncio.create_task(b.acquire())
        await asyncio.sleep(0.1)
        await b.admission.release(on_b)
        lease = await asyncio.wait_for(second, 5)
        assert lease.backend.name == "127.0.0.1:9002" and not first.done()
        await a.admission.release(on_a)
        await a.admission.release(await asyncio.wait_for(first, 5))
        await b.admission.release(lease)
    finally:
        await a.stop()
        await b.stop()


async def test_a_dead_replicas_waiters_are_skipped_when_its_slots_expire(
    client: redis.Redis, other_client: redis.Redis
) -> None:
    """#15 item 5: a replica killed with ``kill -9`` leaves a lease and a waiter queued ahead of
    a live replica's. Once its lease expires the slot goes to the live waiter — not to the
    dead one, whose grant would hold the slot for one more grant TTL (here 30 s)."""
    dead = Replica(client, [backend(9001, 1)], lease_ttl=0.6, grant_ttl=30)  # no upkeep
    live = Replica(other_client, [backend(9001, 1)], lease_ttl=0.6, grant_ttl=30).start()
    try:
        await dead.acquire()
        queued_dead = asyncio.create_task(dead.acquire())
        await asyncio.sleep(0.1)
        waiting = asyncio.create_task(live.acquire())
        lease = await asyncio.wait_for(waiting, 10)
        assert lease.backend.name == "127.0.0.1:9001"
        assert not queued_dead.done()  # nothing was granted to it: its replica is dead
        assert await client.exists(keys.grants(dead.admission.replica)) == 0
        assert int(await client.get(keys.model_prefix(MODEL) + "q:n") or 0) == 0
        await live.admission.release(lease)
        queued_dead.cancel()
    finally:
        await live.stop()


async def test_a_dead_replicas_waiters_stop_taking_freed_slots_before_its_leases_expire(
    client: redis.Redis, other_client: redis.Redis
) -> None:
    """A replica killed with waiters queued ahead of a survivor's: the survivor frees its slot
    once the dead replica's record has lapsed (half the lease TTL here, 3 s by default) —
    before any lease of the dead one could have — and the slot goes to its own waiter, not to
    the dead one's, which would have held it for a grant TTL (here 30 s)."""
    dead = Replica(client, [backend(9001, 1)], lease_ttl=3, grant_ttl=30)  # no upkeep
    live = Replica(other_client, [backend(9001, 1)], lease_ttl=3, grant_ttl=30).start()
    try:
        held = await live.acquire()
        queued_dead = asyncio.create_task(dead.acquire())
        await until_queued(client, 1)
        waiting = asyncio.create_task(live.acquire())
        await until_queued(client, 2)
        await asyncio.sleep(dead.admission.store.alive_ttl + 0.2)  # 1.7 s: its record lapsed
        await live.admission.release(held)
        lease = await asyncio.wait_for(waiting, 5)
        assert not queued_dead.done()
        assert await client.exists(keys.grants(dead.admission.replica)) == 0
        assert await queued(client) == 0  # the dead replica's waiter was dropped
        await live.admission.release(lease)
        queued_dead.cancel()
    finally:
        await live.stop()


async def test_grants_a_dead_replica_leaves_unread_are_taken_back_within_seconds(
    client: redis.Redis, other_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """A replica killed with two waiters queued ahead of a survivor's, its record still alive
    (3 s here): the slot the survivor frees goes to the dead replica's first waiter, posted to
    its mailbox. Nobody reads it: a second later the survivor takes it back, the store counts
    the dead replica as such (its second waiter is dropped, not granted), and the slot goes to
    the survivor's waiter — not after the grant TTL (here 30 s)."""
    dead = Replica(client, [backend(9001, 1)], grant_ttl=30)  # no loops: no mailbox read
    live = Replica(other_client, [backend(9001, 1)], grant_ttl=30).start()
    try:
        held = await live.acquire()
        queued_dead = [asyncio.create_task(dead.acquire()) for _ in range(2)]
        await until_queued(client, 2)
        waiting = asyncio.create_task(live.acquire())
        await until_queued(client, 3)
        with caplog.at_level("WARNING", logger="gateway.admission.leases"):
            await live.admission.release(held)  # granted to the dead replica's first waiter
            lease = await asyncio.wait_for(waiting, 5)
        assert f"replica {dead.admission.replica} left 1 grants unread" in caplog.text
        assert not any(task.done() for task in queued_dead)
        assert await client.exists(keys.grants(dead.admission.replica)) == 0
        assert await queued(client) == 0  # its second waiter was dropped, not granted
        await live.admission.release(lease)
        for task in queued_dead:
            task.cancel()
    finally:
        await live.stop()


async def test_a_stalled_replica_whose_grant_was_taken_back_queues_its_waiter_again(
    client: redis.Redis, other_client: redis.Redis
) -> None:
    """The replica that left a grant unread was only stalled (its loops start late here): its
    grant went to the next waiter. Its next script — here a new request's acquire, before its
    loops run — learns that its record had lapsed, and it queues its first waiter again: both
    are served, nothing lost, only a place in the queue."""
    stalled = Replica(client, [backend(9001, 1)], grant_ttl=30)
    live = Replica(other_client, [backend(9001, 1)], grant_ttl=30).start()
    try:
        held = await live.acquire()
        waiting_stalled = asyncio.create_task(stalled.acquire())
        await until_queued(client, 1)
        waiting_live = asyncio.create_task(live.acquire())
        await until_queued(client, 2)
        await live.admission.release(held)  # to the stalled replica's waiter, left unread
        lease = await asyncio.wait_for(waiting_live, 5)  # taken back, granted here
        assert await queued(client) == 0
        second = asyncio.create_task(stalled.acquire())
        await until_queued(client, 2)  # the new one, and the first queued again
        stalled.start()
        await live.admission.release(lease)
        pending = {waiting_stalled, second}
        while pending:  # one after the other, in whichever order the queue has them
            done, pending = await asyncio.wait(pending, timeout=5, return_when="FIRST_COMPLETED")
            assert done, "a waiter of the stalled replica was never served"
            for task in done:
                await stalled.admission.release(task.result())
    finally:
        await live.stop()
        await stalled.stop()


async def test_a_replica_that_stalled_past_its_record_queues_its_waiters_again(
    client: redis.Redis, other_client: redis.Redis
) -> None:
    """A replica whose loops stalled (not started here) until its record lapsed: the slot
    another replica frees meanwhile drops its waiter as a dead replica's. When its loops run
    again, its first pump learns that the record had lapsed and queues the waiter again,
    which is served."""
    stalled = Replica(client, [backend(9001, 1)], lease_ttl=2)
    other = Replica(other_client, [backend(9001, 1)], lease_ttl=2)
    held = await other.acquire()
    waiting = asyncio.create_task(stalled.acquire())
    await until_queued(client, 1)
    await asyncio.sleep(stalled.admission.store.alive_ttl + 0.2)
    await other.admission.release(held)  # its pump drops the waiter: its record lapsed
    assert await queued(client) == 0
    assert not waiting.done()
    stalled.start()
    try:
        lease = await asyncio.wait_for(waiting, 5)
        await stalled.admission.release(lease)
    finally:
        await stalled.stop()


class _HeldUpAcquire:
    """The replica's first acquire script runs in the store at once, and its reply is held
    up until :meth:`let_through` — a slow round trip, of the kind a store coming back
    after an outage gives; the store itself answers every call (no stand-in)."""

    def __init__(self, replica: Replica, monkeypatch: pytest.MonkeyPatch) -> None:
        self._acquire = replica.admission.store.acquire
        self._gate = asyncio.Event()
        self.answered = asyncio.Event()  # the held-up script has run in the store
        self._first = True
        monkeypatch.setattr(replica.admission.store, "acquire", self._held_up)

    async def _held_up(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        first, self._first = self._first, False
        reply = await self._acquire(*args, **kwargs)
        if first:
            self.answered.set()
            await self._gate.wait()
        return reply

    def let_through(self) -> None:
        self._gate.set()


async def _queued_again_meanwhile(
    replica: Replica, monkeypatch: pytest.MonkeyPatch
) -> tuple[asyncio.Task, _HeldUpAcquire]:
    """A request's acquire, its answer held up; meanwhile the replica queues its waiters
    again (what it does on seeing the store back), and that second answer is read first."""
    held_up = _HeldUpAcquire(replica, monkeypatch)
    acquiring = asyncio.create_task(replica.acquire())
    await asyncio.wait_for(held_up.answered.wait(), 5)
    await replica.admission._requeue(MODEL)
    return acquiring, held_up


async def test_a_waiter_queued_again_while_its_acquire_is_answered_gets_its_lease_once(
    client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store came back while a request's acquire was on its way: the replica queues its
    waiters again (what it does on seeing the store back), that one too, and that second
    answer comes first and hands it its lease. The first answer then finds the waiter
    served: the request gets the one lease (it once failed with a 500 here, the lease left
    held and renewed by nobody's request)."""
    replica = Replica(client, [backend(9001, 1)])
    acquiring, held_up = await _queued_again_meanwhile(replica, monkeypatch)
    held_up.let_through()
    lease = await asyncio.wait_for(acquiring, 5)
    assert lease.backend.name == "127.0.0.1:9001"
    assert await _leases(client, 9001) == 1
    await replica.admission.release(lease)
    assert await _leases(client, 9001) == 0
    assert replica.admission._held == {} and replica.admission._waiters == {}


async def test_a_request_gone_while_its_acquire_was_answered_gives_back_the_lease(
    client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As above, but the client leaves before the first answer is read: the lease the second
    answer handed its waiter goes back to the store, not held until the replica stops."""
    replica = Replica(client, [backend(9001, 1)])
    acquiring, _ = await _queued_again_meanwhile(replica, monkeypatch)
    acquiring.cancel()
    with pytest.raises(asyncio.CancelledError):
        await acquiring
    async with asyncio.timeout(5):
        while await _leases(client, 9001):  # noqa: ASYNC110 - the state is in Redis
            await asyncio.sleep(0.01)
    assert replica.admission._held == {} and replica.admission._waiters == {}


async def test_a_live_replica_keeps_its_waiters_past_the_lease_ttl(client: redis.Redis) -> None:
    """The heartbeat keeps a live replica's waiters queued however long they wait."""
    replica = Replica(client, [backend(9001, 1)], lease_ttl=0.6).start()
    try:
        held = await replica.acquire()
        waiting = asyncio.create_task(replica.acquire())
        await asyncio.sleep(1.5)  # more than two lease TTLs
        assert int(await client.get(keys.model_prefix(MODEL) + "q:n") or 0) == 1
        await replica.admission.release(held)
        await replica.admission.release(await asyncio.wait_for(waiting, 5))
    finally:
        await replica.stop()


async def test_waiters_the_store_lost_are_queued_again(client: redis.Redis) -> None:
    """A store that comes back empty (no persistence) lost the queue: the replica queues its
    waiters again when it sees the store back, and they are served."""
    replica = Replica(client, [backend(9001, 1)]).start()
    try:
        held = await replica.acquire()
        waiting = asyncio.create_task(replica.acquire())
        await asyncio.sleep(0.1)
        await client.flushdb()  # the store "restarted" empty: lease and queue gone
        replica.admission.store_ok = False  # as the grant loop marks an outage
        assert await replica.admission.check_store()
        lease = await asyncio.wait_for(waiting, 5)  # the slot was free: granted at once
        assert int(await client.get(keys.model_prefix(MODEL) + "q:n") or 0) == 0
        await replica.admission.release(lease)
        await replica.admission.release(held)
    finally:
        await replica.stop()


async def test_a_replica_stopped_before_its_loops_ran_ends_them_at_once(client) -> None:
    """``stop()`` before ``run()``'s task first ran (an app whose startup failed right after
    starting it) still ends it; and it runs again after."""
    replica = Replica(client, [backend(9001, 1)])
    await replica.admission.stop()
    await asyncio.wait_for(replica.admission.run(), 5)
    again = asyncio.create_task(replica.admission.run())
    await asyncio.sleep(0.2)
    assert not again.done()  # running: the earlier stop was used up
    await replica.admission.stop()
    await asyncio.wait_for(again, 5)


async def test_a_try_is_granted_a_free_slot_and_never_queued(client: redis.Redis) -> None:
    """``try_acquire`` (asked beside the limits check): a free slot with no one waiting is
    granted; a full backend, or anyone waiting, answers busy with nothing queued."""
    replica = Replica(client, [backend(9001, 1)]).start()
    try:
        attempt, asked = replica.admission.try_acquire(MODEL, replica.backends)
        lease = await asked
        assert lease is not None and lease is attempt.lease
        assert await _leases(client, 9001) == 1

        busy, asked = replica.admission.try_acquire(MODEL, replica.backends)
        assert await asked is None and busy.answered
        waiting = asyncio.create_task(replica.acquire())
        await until_queued(client, 1)
        await replica.admission.release(lease)  # the waiter takes the slot
        second = await asyncio.wait_for(waiting, 5)
        behind, asked = replica.admission.try_acquire(MODEL, replica.backends)
        assert await asked is None
        assert await queued(client) == 0 and await _leases(client, 9001) == 1
        await replica.admission.withdraw(behind)  # answered, nothing held: nothing to do
        assert await _leases(client, 9001) == 1
        await replica.admission.release(second)
    finally:
        await replica.stop()


async def test_a_withdrawn_try_gives_its_slot_back_even_unanswered(client: redis.Redis) -> None:
    """A request refused by its limits gives back the lease it was granted beside them; one
    whose reply never came (its client left) gives back whatever the store granted it."""
    replica = Replica(client, [backend(9001, 1), backend(9002, 1)]).start()
    try:
        granted, asked = replica.admission.try_acquire(MODEL, replica.backends)
        assert await asked is not None
        await replica.admission.withdraw(granted)
        assert await _leases(client, 9001) + await _leases(client, 9002) == 0

        unheard, asked = replica.admission.try_acquire(MODEL, replica.backends[::-1])
        # Sent, its reply never read: as a client that left before it came leaves it.
        await send_scripts(client, [(asked.script, asked.keys, asked.args)])
        assert await _leases(client, 9002) == 1 and not unheard.answered
        await replica.admission.withdraw(unheard)
        assert await _leases(client, 9001) + await _leases(client, 9002) == 0
    finally:
        await replica.stop()
