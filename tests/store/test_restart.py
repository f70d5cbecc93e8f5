"""Keys and limits survive a Redis restart (AOF), and the scripts come back by themselves."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.auth import Authenticator
from gateway.errors import RateLimited
from gateway.store.apikeys import KeyStore
from gateway.store.connection import connect
from gateway.store.limits import Limiter
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
