"""Fixtures for the store tests: every test that takes ``client`` runs twice, against a real
``redis-server`` (AOF on, started once on a free port) and against ``memory://``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis

from gateway.store.apikeys import KeyStore
from gateway.store.connection import connect
from gateway.store.limits import Limiter


@pytest.fixture(params=["redis", "memory"])
def store_url(request: pytest.FixtureRequest) -> str:
    if request.param == "memory":
        return "memory://"
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
