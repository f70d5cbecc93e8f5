"""A Redis failover under Sentinel, through ``redis+sentinel://``: a real primary, a replica and
three Sentinels on loopback. Killing the primary (``kill -9``) costs only refusals while the
Sentinels promote the replica — none hangs — and keys, limits and leases are all still there
after it (#15 item 13)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.auth import Authenticator
from gateway.errors import QueueTimeout, Unavailable
from gateway.store.apikeys import KeyStore
from gateway.store.connection import connect
from gateway.store.limits import Limiter
from tests.store.replicas import Replica, backend
from tests.support.redis_sentinel import Sentinels


@pytest.fixture
async def sentinels(tmp_path: Path) -> AsyncIterator[Sentinels]:
    deployment = Sentinels(tmp_path / "ha")
    await asyncio.to_thread(deployment.start)
    yield deployment
    await asyncio.to_thread(deployment.stop)


async def test_a_failover_is_followed_and_keys_limits_and_leases_survive_it(
    sentinels: Sentinels,
) -> None:
    client = connect(sentinels.url)
    keys, limiter = KeyStore(client), Limiter(client)
    key, secret = await keys.create(name="ha", rpm=3)
    await limiter.admit(key, 1)
    replica = Replica(client, [backend(9001, 2)], queue_timeout=0.5).start()
    try:
        held = await replica.acquire()
        await client.execute_command("WAIT", 1, 5000)  # on the replica before the kill
        old = sentinels.primary.port
        sentinels.kill_primary()
        refused = 0
        while True:  # each attempt is answered (a refusal or a lease), none hangs
            try:
                lease = await asyncio.wait_for(replica.acquire(), 15)
                break
            except Unavailable:
                refused += 1
                await asyncio.sleep(0.1)
        assert sentinels.primary_port() != old
        assert refused > 0  # the failover was seen, as refusals
        # Two slots: the lease held across the failover and the new one. No third.
        with pytest.raises(QueueTimeout):
            await replica.acquire()
        assert await Authenticator(keys).authenticate(f"Bearer {secret}") == key
        state = await limiter.admit(key, 1)  # rpm 3: the one before the failover counted
        assert state.requests is not None and state.requests.remaining == 1
        await replica.admission.release(held)
        await replica.admission.release(lease)
    finally:
        await replica.stop()
        await client.aclose()
