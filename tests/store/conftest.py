"""Fixtures for the store tests: every test that takes ``client`` runs three times, against a
real ``redis-server`` (AOF on, started once on a free port) and against ``memory://`` on each
of its Lua runtimes (LuaJIT, its default, and PUC Lua 5.1, what Redis embeds)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis

from gateway.store.apikeys import KeyStore
from gateway.store.connection import connect
from gateway.store.embedded.scripting import LUA_RUNTIMES
from gateway.store.limits import Limiter

#: memory:// on each Lua runtime this lupa has.
MEMORY_URLS = {
    "memory" if runtime == next(iter(LUA_RUNTIMES)) else f"memory-{runtime}": (
        f"memory://?lua={runtime}"
    )
    for runtime in LUA_RUNTIMES
}


@pytest.fixture(params=["redis", *MEMORY_URLS])
def store_url(request: pytest.FixtureRequest) -> str:
    if request.param in MEMORY_URLS:
        return MEMORY_URLS[request.param]
    return request.getfixturevalue("redis_server").url


@pytest.fixture
async def client(store_url: str) -> AsyncIterator[redis.Redis]:
    connection = connect(store_url)
    await connection.flushdb()
    yield connection
    await connection.aclose()


@pytest.fixture
async def other_client(store_url: str, client: redis.Redis) -> AsyncIterator[redis.Redis]:
    """A second connection to the same store, as another gateway replica would hold
    (``memory://`` lives in one client, so there it is the same one)."""
    if store_url.startswith("memory://"):
        yield client
        return
    connection = connect(store_url)
    yield connection
    await connection.aclose()


@pytest.fixture
def key_store(client: redis.Redis) -> KeyStore:
    return KeyStore(client)


@pytest.fixture
def limiter(client: redis.Redis) -> Limiter:
    return Limiter(client)
