"""The authenticator: bearer parsing, refusals, the short cache, and no secret in the open."""

from __future__ import annotations

import asyncio
import logging

import pytest
import redis.asyncio as redis

from gateway.auth import Authenticator
from gateway.errors import AuthenticationFailed, PermissionDenied
from gateway.store.apikeys import KeyStore


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class CountingStore(KeyStore):
    """The real store, counting how often the authenticator reaches Redis."""

    lookups = 0

    async def lookup(self, sha256_hex: str):  # type: ignore[override]
        self.lookups += 1
        return await super().lookup(sha256_hex)


async def test_a_valid_key_authenticates(key_store: KeyStore) -> None:
    key, secret = await key_store.create(name="alice")
    auth = Authenticator(key_store)
    assert await auth.authenticate(f"Bearer {secret}") == key
    assert await auth.authenticate(f"bearer   {secret} ") == key


@pytest.mark.parametrize(
    ("header", "words"),
    [
        (None, "didn't provide an API key"),
        ("", "didn't provide an API key"),
        ("Bearer", "didn't provide an API key"),
        ("Basic dXNlcjpwYXNz", "didn't provide an API key"),
        ("Bearer sk-lg-unknownunknownunknownunknownunknownunknown", "Incorrect API key"),
        ("Bearer sk-proj-somebodyelse", "Incorrect API key"),
        ("Bearer sk-lg-" + "a" * 300, "Incorrect API key"),
    ],
)
async def test_missing_malformed_and_unknown_keys_are_refused(
    key_store: KeyStore, header: str | None, words: str
) -> None:
    auth = Authenticator(key_store)
    with pytest.raises(AuthenticationFailed) as caught:
        await auth.authenticate(header)
    assert caught.value.status == 401 and caught.value.code == "invalid_api_key"
    assert words in caught.value.message
    if header and len(header) > 7:
        assert header[7:] not in str(caught.value)


async def test_expired_disabled_and_revoked_keys_are_refused(key_store: KeyStore) -> None:
    wall = Clock(1_900_000_000)
    auth = Authenticator(key_store, cache_ttl=0, miss_ttl=0, wall_clock=wall)
    expiring, expiring_secret = await key_store.create(name="e", expires_at=1_900_000_100)
    assert await auth.authenticate(f"Bearer {expiring_secret}") == expiring
    wall.now = 1_900_000_100
    with pytest.raises(AuthenticationFailed, match="expired"):
        await auth.authenticate(f"Bearer {expiring_secret}")

    disabled, disabled_secret = await key_store.create(name="d", disabled=True)
    with pytest.raises(AuthenticationFailed, match="disabled"):
        await auth.authenticate(f"Bearer {disabled_secret}")
    await key_store.update(disabled.id, disabled=False)
    assert (await auth.authenticate(f"Bearer {disabled_secret}")).id == disabled.id

    revoked, revoked_secret = await key_store.create(name="r")
    await key_store.revoke(revoked.id)
    with pytest.raises(AuthenticationFailed, match="Incorrect API key"):
        await auth.authenticate(f"Bearer {revoked_secret}")


async def test_a_revoke_lands_within_the_cache_ttl(client: redis.Redis) -> None:
    clock = Clock()
    store = CountingStore(client)
    auth = Authenticator(store, cache_ttl=2.0, clock=clock)
    key, secret = await store.create(name="alice")
    assert await auth.authenticate(f"Bearer {secret}") == key
    await store.revoke(key.id)  # as another replica's admin would

    clock.now += 1.9  # still cached: the same answer, no Redis call
    assert await auth.authenticate(f"Bearer {secret}") == key
    assert store.lookups == 1

    clock.now += 0.2  # past the TTL: asked again, refused
    with pytest.raises(AuthenticationFailed):
        await auth.authenticate(f"Bearer {secret}")
    assert store.lookups == 2


async def test_a_disable_lands_within_the_cache_ttl(key_store: KeyStore) -> None:
    clock = Clock()
    auth = Authenticator(key_store, cache_ttl=1.0, clock=clock)
    key, secret = await key_store.create(name="alice")
    await auth.authenticate(f"Bearer {secret}")
    await key_store.update(key.id, disabled=True)
    clock.now += 1.01
    with pytest.raises(AuthenticationFailed, match="disabled"):
        await auth.authenticate(f"Bearer {secret}")


async def test_misses_are_cached_briefly_and_the_cache_is_bounded(client: redis.Redis) -> None:
    clock = Clock()
    store = CountingStore(client)
    auth = Authenticator(store, cache_ttl=2.0, miss_ttl=0.5, cache_size=2, clock=clock)
    unknown = "Bearer sk-lg-" + "u" * 43
    for _ in range(3):
        with pytest.raises(AuthenticationFailed):
            await auth.authenticate(unknown)
    assert store.lookups == 1
    clock.now += 0.6
    with pytest.raises(AuthenticationFailed):
        await auth.authenticate(unknown)
    assert store.lookups == 2

    secrets = [(await store.create(name=f"k{i}"))[1] for i in range(3)]
    for secret in [*secrets, secrets[2], secrets[1], secrets[0]]:
        await auth.authenticate(f"Bearer {secret}")
    # Size 2: each new key pushed the oldest entry out, so only the first is looked up again.
    assert store.lookups == 2 + 3 + 1


async def test_concurrent_misses_share_one_lookup(client: redis.Redis) -> None:
    store = CountingStore(client)
    auth = Authenticator(store)
    key, secret = await store.create(name="burst")
    found = await asyncio.gather(*(auth.authenticate(f"Bearer {secret}") for _ in range(20)))
    assert found == [key] * 20
    assert store.lookups == 1


async def test_model_allow_list(key_store: KeyStore) -> None:
    auth = Authenticator(key_store)
    limited, _ = await key_store.create(name="l", models=["smollm2"])
    auth.check_model(limited, "smollm2")
    with pytest.raises(PermissionDenied) as caught:
        auth.check_model(limited, "llama-70b")
    assert caught.value.status == 403 and caught.value.param == "model"
    assert "llama-70b" in caught.value.message
    everything, _ = await key_store.create(name="all")
    auth.check_model(everything, "llama-70b")


async def test_logs_name_the_key_never_the_secret(
    key_store: KeyStore, caplog: pytest.LogCaptureFixture
) -> None:
    auth = Authenticator(key_store)
    key, secret = await key_store.create(name="carol", disabled=True)
    with caplog.at_level(logging.DEBUG), pytest.raises(AuthenticationFailed) as caught:
        await auth.authenticate(f"Bearer {secret}")
    assert key.id in caplog.text
    assert secret not in caplog.text and secret not in str(caught.value)
    assert secret[6:] not in caplog.text
