"""API keys in the store: lifecycle, hash-only storage, validation."""

from __future__ import annotations

import hashlib

import pytest
import redis.asyncio as redis

from gateway.errors import InvalidRequest, KeyNotFound
from gateway.store.apikeys import SECRET_PREFIX, KeyStore


async def test_lifecycle_create_find_update_revoke(key_store: KeyStore) -> None:
    key, secret = await key_store.create(name="alice", rpm=60, models=["smollm2"])
    assert secret.startswith(SECRET_PREFIX)
    assert len(secret) >= len(SECRET_PREFIX) + 43  # 32 bytes, url-safe base64
    assert key.id.startswith("key_") and len(key.id) == 16
    assert (key.name, key.rpm, key.models, key.weight, key.priority) == (
        "alice",
        60,
        ("smollm2",),
        1.0,
        0,
    )
    assert key.created > 1_600_000_000 and key.revoked_at is None

    assert await key_store.find(secret) == key
    assert await key_store.get(key.id) == key

    changed = await key_store.update(key.id, rpm=None, tpm=1000, name="alice-2", weight=2)
    assert (changed.rpm, changed.tpm, changed.name, changed.weight) == (None, 1000, "alice-2", 2.0)
    assert await key_store.find(secret) == changed

    revoked = await key_store.revoke(key.id)
    assert revoked.revoked and revoked.name == "alice-2"
    assert await key_store.find(secret) is None
    # The record stays, marked revoked; revoking again changes nothing.
    assert await key_store.get(key.id) == revoked
    assert await key_store.revoke(key.id) == revoked
    with pytest.raises(InvalidRequest, match="revoked"):
        await key_store.update(key.id, rpm=5)


async def test_only_the_hash_is_stored(key_store: KeyStore, client: redis.Redis) -> None:
    _, secret = await key_store.create(name="bob", tpm=10)
    digest = hashlib.sha256(secret.encode()).hexdigest()
    token = secret.removeprefix(SECRET_PREFIX).encode()
    seen_hash = False
    async for name in client.scan_iter(count=1000):
        assert token not in name
        kind = (await client.type(name)).decode()
        if kind == "hash":
            values = [*(await client.hgetall(name)).items()]
            blobs = [part for pair in values for part in pair]
        elif kind == "string":
            blobs = [await client.get(name)]
        else:
            blobs = [member for member in await client.smembers(name)]
        assert all(token not in blob for blob in blobs)
        seen_hash = seen_hash or digest.encode() in name or any(digest.encode() in b for b in blobs)
    assert seen_hash


async def test_list_shows_every_key_oldest_first(key_store: KeyStore) -> None:
    first, _ = await key_store.create(name="one")
    second, _ = await key_store.create(name="two", disabled=True)
    await key_store.revoke(first.id)
    listed = await key_store.list()
    assert {key.id for key in listed} == {first.id, second.id}
    assert listed == sorted(listed, key=lambda key: (key.created, key.id))
    assert {key.id: key.state(0) for key in listed} == {first.id: "revoked", second.id: "disabled"}


async def test_models_are_deduplicated_and_allow_lists_apply(key_store: KeyStore) -> None:
    key, _ = await key_store.create(name="m", models=["a", "b", "a"])
    assert key.models == ("a", "b")
    assert key.allows("a") and not key.allows("c")
    everything, _ = await key_store.create(name="all")
    assert everything.allows("anything")


async def test_expiry_and_state(key_store: KeyStore) -> None:
    key, _ = await key_store.create(name="temp", expires_at=2_000_000_000)
    assert key.state(1_999_999_999) == "active"
    assert key.state(2_000_000_000) == "expired"
    cleared = await key_store.update(key.id, expires_at=None)
    assert cleared.state(3_000_000_000) == "active"


@pytest.mark.parametrize(
    ("fields", "param", "words"),
    [
        ({"name": "x", "rpm": 0}, "rpm", ">= 1"),
        ({"name": "x", "rpm": "60"}, "rpm", "Expected `int | null`"),
        ({"name": "x", "tpm": True}, "tpm", "Expected"),
        ({"name": "x", "weight": 0}, "weight", "> 0"),
        ({"name": "x", "priority": 5000}, "priority", "<= 1000"),
        ({"name": "x", "models": "smollm2"}, "models", "Expected `array`"),
        ({"name": "x", "models": [""]}, "models", "length >= 1"),
        ({"name": ""}, "name", "length >= 1"),
        ({"name": "x", "colour": "red"}, "colour", "Unknown API key field"),
        ({"rpm": 5}, "name", "Missing required field"),
        ({"name": "x", "id": "key_mine"}, "id", "Unknown API key field"),
    ],
)
async def test_create_refuses_bad_fields(
    key_store: KeyStore, fields: dict, param: str, words: str
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await key_store.create(**fields)
    assert caught.value.status == 400
    assert caught.value.param == param
    assert words in caught.value.message
    assert await key_store.list() == []


async def test_update_refuses_bad_changes(key_store: KeyStore) -> None:
    key, _ = await key_store.create(name="u")
    with pytest.raises(InvalidRequest, match="Nothing to change"):
        await key_store.update(key.id)
    with pytest.raises(InvalidRequest) as caught:
        await key_store.update(key.id, name=None)
    assert caught.value.param == "name"
    with pytest.raises(InvalidRequest) as caught:
        await key_store.update(key.id, disabled="yes")
    assert caught.value.param == "disabled"
    with pytest.raises(InvalidRequest) as caught:
        await key_store.update(key.id, created=1)
    assert caught.value.param == "created"
    assert await key_store.get(key.id) == key


async def test_unknown_ids(key_store: KeyStore) -> None:
    assert await key_store.get("key_nope") is None
    with pytest.raises(KeyNotFound) as caught:
        await key_store.update("key_nope", rpm=1)
    assert caught.value.status == 404
    with pytest.raises(KeyNotFound):
        await key_store.revoke("key_nope")
    assert await key_store.find(SECRET_PREFIX + "x" * 43) is None
