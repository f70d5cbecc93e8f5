"""``gateway/store/prefixes.py``: the prefix index on real Redis and ``memory://`` — the longest
match per backend, expiry, and the bound on entries per model."""

from __future__ import annotations

import asyncio

import redis.asyncio as redis

from gateway.pool.backend import Backend
from gateway.routing.fingerprint import chat_chain
from gateway.store import keys
from gateway.store.prefixes import AffinityStore, Match

# Only their URLs are recorded: no client is needed.
A = Backend("http://a:8080", client=None)  # type: ignore[arg-type]
B = Backend("http://b:8080", client=None)  # type: ignore[arg-type]


def _conversation(n: int, turns: int = 2) -> list[dict]:
    messages = [{"role": "system", "content": "Be brief."}]
    for t in range(turns):
        messages.append({"role": "user", "content": f"conversation {n}, question {t}"})
        messages.append({"role": "assistant", "content": f"answer {t}"})
    return messages


async def test_lookup_finds_the_longest_match_per_backend(client: redis.Redis) -> None:
    store = AffinityStore(client)
    long = chat_chain({"messages": _conversation(1)})
    await store.record("m", long.entries[:3], A.url, slot=1)
    await store.record("m", long.entries[:1], B.url)  # only the system prompt
    found = await store.lookup("m", long.entries, long.depths)
    assert found == {A.url: Match(long.depths[2], 1), B.url: Match(long.depths[0], -1)}
    other = chat_chain({"messages": _conversation(2)})
    assert set(await store.lookup("m", other.entries, other.depths)) == {A.url, B.url}
    assert await store.lookup("other-model", long.entries, long.depths) == {}
    assert await store.lookup("m", (), ()) == {}


async def test_entries_expire_after_the_ttl(client: redis.Redis) -> None:
    store = AffinityStore(client, ttl=0.3)
    chain = chat_chain({"messages": _conversation(1)})
    await store.record("m", chain.entries, A.url)
    assert await store.lookup("m", chain.entries, chain.depths)
    assert 0 < await client.pttl(keys.affinity_entry("m", chain.entries[0])) <= 300
    await asyncio.sleep(0.4)
    assert await store.lookup("m", chain.entries, chain.depths) == {}
    assert await client.keys("lg:{m}:aff:*") == []


async def test_a_model_keeps_at_most_max_entries(client: redis.Redis) -> None:
    store = AffinityStore(client, max_entries=12)
    chains = [chat_chain({"messages": _conversation(n, turns=2)}) for n in range(6)]
    for chain in chains:  # 5 entries each, the system prompt's shared: 1 + 6 * 4 = 25
        await store.record("m", chain.entries, A.url)
        await asyncio.sleep(0.002)
    assert await client.zcard(keys.affinity_index("m")) == 12
    assert len(await client.keys("lg:{m}:aff:e:*")) == 12
    # The newest conversation is whole; the oldest lost all but the shared system prompt.
    newest, oldest = chains[-1], chains[0]
    assert (await store.lookup("m", newest.entries, newest.depths))[A.url].depth == newest.depth
    assert (await store.lookup("m", oldest.entries, oldest.depths))[A.url].depth == (
        oldest.depths[0]
    )


async def test_the_index_forgets_expired_entries_when_it_grows(client: redis.Redis) -> None:
    """A record that adds no entry leaves the index as it is (its expired members point at
    entries gone on their own: a lookup finds nothing); the next one that adds some clears
    them out."""
    store = AffinityStore(client, ttl=0.3)
    old = chat_chain({"messages": _conversation(1)})
    await store.record("m", old.entries, A.url)
    index = keys.affinity_index("m")
    await asyncio.sleep(0.2)
    await store.record("m", old.entries[:1], B.url)  # the system prompt: already indexed
    assert await client.zcard(index) == len(old.entries)
    await asyncio.sleep(0.15)  # all but the system prompt's entry are past the TTL
    shallow = Match(old.depths[0], -1)
    assert await store.lookup("m", old.entries, old.depths) == {A.url: shallow, B.url: shallow}
    new = chat_chain({"messages": _conversation(2)})
    await store.record("m", new.entries, A.url)
    assert await client.zcard(index) == len(new.entries)  # the system prompt's is shared
