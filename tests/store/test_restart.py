"""Keys and limits survive a Redis restart (AOF), the scripts come back by themselves, and
queued requests go on as soon as the store is back."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.auth import Authenticator
from gateway.errors import RateLimited
from gateway.store.apikeys import KeyStore
from gateway.store.connection import connect
from gateway.store.limits import Limiter
from tests.store.replicas import Replica, backend
from tests.support.redis_server import RedisServer


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


async def test_keys_and_usage_survive_a_restart(own_server: RedisServer) -> None:
    client = connect(own_server.url)
    store, limiter = KeyStore(client), Limiter(client)
    kept, kept_secret = await store.create(name="kept", rpm=2, models=["smollm2"])
    gone, gone_secret = await store.create(name="gone")
    await store.revoke(gone.id)
    await limiter.admit(kept, 1)
    await client.aclose()

    own_server.restart()  # SCRIPT cache emptied, data back from the AOF

    client = connect(own_server.url)
    store, limiter = KeyStore(client), Limiter(client)
    auth = Authenticator(store)
    assert await auth.authenticate(f"Bearer {kept_secret}") == kept
    assert await store.find(gone_secret) is None
    assert (await store.get(gone.id)).revoked
    assert {key.id for key in await store.list()} == {kept.id, gone.id}

    state = await limiter.admit(kept, 1)  # EVALSHA reloads the script after NOSCRIPT
    assert state.requests is not None and state.requests.remaining == 0  # the first one counted
    with pytest.raises(RateLimited):
        await limiter.admit(kept, 1)
    await client.script_flush()  # a pipelined script Redis forgot is sent again by its text
    assert await limiter.settle(kept, 1, 1, request_id=state.request_id) is True
    await client.aclose()


async def test_queued_requests_resume_as_soon_as_the_store_is_back(
    own_server: RedisServer,
) -> None:
    """#15 item 3: a lease given back while Redis was down stayed taken until its TTL (here 60
    s, past the waiter's 20 s deadline); the release is sent again when the store is back, so
    the request queued before the outage gets the slot then."""
    replica = Replica(connect(own_server.url), [backend(9001, 1)], lease_ttl=60, queue_timeout=20)
    replica.start()
    try:
        held = await replica.acquire()
        waiting = asyncio.create_task(replica.acquire())
        await asyncio.sleep(0.1)
        own_server.stop()
        await replica.admission.release(held)  # fails: logged, owed
        assert not await replica.admission.check_store()
        own_server.start()  # the AOF kept the lease and the queue
        lease = await asyncio.wait_for(waiting, 10)
        assert lease.backend.name == "127.0.0.1:9001"
        assert await replica.admission.check_store()
        await replica.admission.release(lease)
    finally:
        await replica.stop()
        await replica.admission.store.redis.aclose()
