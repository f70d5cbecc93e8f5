"""``memory://``'s compiled scripts (gateway/store/memory.py) against what they replace: each
script's replies are a real Redis's over many calls, errors read as stock fakeredis words
them, Lua's memory stays bounded over 20,000 calls, a script that sets a global is still
refused — and each script text is compiled once, which fails if a fakeredis release stops
going through the seams the module relies on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as redis
from fakeredis import FakeServer, aioredis
from redis import exceptions as redis_errors

from gateway.store.admission import AdmissionStore
from gateway.store.connection import connect
from gateway.store.memory import CompiledScripts

#: Every kind of reply a script gives: integers, bulk strings, nil, nested arrays, a status
#: reply, truncated numbers, booleans — over the data types the gateway's scripts use.
MIXED = """
local n = redis.call('INCR', KEYS[1])
redis.call('HSET', KEYS[2], 'f' .. (n % 3), n)
redis.call('ZADD', KEYS[3], n * 1.5, 'm' .. (n % 4))
redis.call('PEXPIRE', KEYS[2], 60000)
local t = {}
for i = 1, 50 do t[i] = ARGV[1] .. i end
return {n, tostring(n * 2.5), redis.call('HGETALL', KEYS[2]),
        redis.call('ZRANGE', KEYS[3], 0, -1, 'WITHSCORES'), redis.call('GET', 'absent'),
        n / 3, n % 2 == 0, redis.status_reply('fine'), #t, {ARGV[2], {KEYS[1]}}}
"""
MIXED_KEYS = ["mem:n", "mem:h", "mem:z"]


@pytest.fixture
async def memory() -> AsyncIterator[redis.Redis]:
    client = connect("memory://")
    yield client
    await client.aclose()


@pytest.fixture
async def stock() -> AsyncIterator[redis.Redis]:
    """fakeredis as ``memory://`` was before: each script compiled and a full collection
    run on every call."""
    client = aioredis.FakeRedis(server=FakeServer(), decode_responses=False)
    yield client
    await client.aclose()


def _runtime(client: redis.Redis) -> Any:
    return client.connection_pool.connection_kwargs["server"]._lua_runtime


async def _lua_kb(client: redis.Redis) -> float:
    return float(await client.eval("return tostring(collectgarbage('count'))", 0))


async def test_a_script_replies_as_real_redis_over_many_calls(
    redis_server: Any, memory: redis.Redis
) -> None:
    real = connect(redis_server.url)
    try:
        await real.delete(*MIXED_KEYS, "absent")
        replies: dict[str, list[Any]] = {"redis": [], "memory": []}
        for name, client in (("redis", real), ("memory", memory)):
            mixed = client.register_script(MIXED)
            for i in range(200):
                replies[name].append(await mixed(keys=MIXED_KEYS, args=[f"a{i}", b"\x00\xff"]))
        assert replies["memory"] == replies["redis"]
        assert replies["memory"][199][0] == 200  # it ran every time, against kept state
    finally:
        await real.delete(*MIXED_KEYS)
        await real.aclose()


async def test_the_admission_scripts_reply_as_real_redis(
    redis_server: Any, memory: redis.Redis
) -> None:
    real = connect(redis_server.url)
    try:
        await real.flushdb()
        seen: dict[str, list[Any]] = {"redis": [], "memory": []}
        candidates = [("b1", 2), ("b2", 1)]
        for name, client in (("redis", real), ("memory", memory)):
            store = AdmissionStore(client, lease_ttl=15, grant_ttl=10)
            for i in range(40):
                reply = await store.acquire(
                    "m", key_id="k", waiter=f"w{i}", replica="r", weight=1.0, cost=1,
                    priority=0, timeout=1.0, bound=5, exclude=[], candidates=candidates,
                )  # fmt: skip
                seen[name].append((reply.status, reply.backend, reply.loads, reply.queued))
                if reply.backend is not None and i % 2:
                    released = await store.release("m", reply.backend, f"w{i}", candidates)
                    assert not isinstance(released, Exception)
                    seen[name].append(released.loads)
        assert seen["memory"] == seen["redis"]
        assert {"granted", "queued", "full"} <= {s[0] for s in seen["memory"] if len(s) == 4}
    finally:
        await real.flushdb()
        await real.aclose()


async def test_each_script_text_is_compiled_once(memory: redis.Redis) -> None:
    mixed = memory.register_script(MIXED)
    for _ in range(100):
        await mixed(keys=MIXED_KEYS, args=["a", "b"])
    for _ in range(100):  # EVAL with the text itself, not only EVALSHA
        await memory.eval(MIXED, len(MIXED_KEYS), *MIXED_KEYS, "a", "b")
    runtime = _runtime(memory)
    assert isinstance(runtime, CompiledScripts)
    # One text, run 200 times by digest and by text: compiled the first time only.
    assert runtime.compilations == 1


ERRORS = [
    "return 1 +",  # does not compile
    "error('boom')",  # a Lua error
    "return redis.call('NOSUCHCOMMAND')",
    "return redis.call('GET')",  # wrong number of arguments
    "redis.call('SET', KEYS[1], 'x') return redis.call('HGET', KEYS[1], 'f')",  # WRONGTYPE
    "return redis.call('SET', KEYS[1], {})",  # an argument that is no string or number
    "return redis.error_reply('MY refusal')",
    "return redis.pcall('GET')",  # pcall's error table, as a reply
    "local t = nil; return t.x",
]


@pytest.mark.parametrize("text", ERRORS)
async def test_a_script_error_reads_as_before(
    memory: redis.Redis, stock: redis.Redis, text: str
) -> None:
    raised = []
    for client in (stock, memory):
        for _ in range(2):  # the second run is the compiled one (or the cached error)
            with pytest.raises(redis_errors.ResponseError) as info:
                await client.eval(text, 1, "err:key")
            raised.append((type(info.value), str(info.value)))
            await client.delete("err:key")
    assert raised[2:] == raised[:2]
    assert raised[0][1]  # a message, not an empty error


GLOBALS = [
    "leaked = 1 return redis.call('SET', KEYS[1], 'written')",  # refused before the SET
    "leaked = 1 return 1",  # refused after the script, which made no call
    "_G['leaked'] = 1 return redis.call('SET', KEYS[1], 'written')",
    "rawset(_G, 'leaked', 1) return redis.pcall('SET', KEYS[1], 'written')",
]


@pytest.mark.parametrize("text", GLOBALS)
async def test_a_script_that_sets_a_global_is_still_refused(
    memory: redis.Redis, stock: redis.Redis, text: str
) -> None:
    messages = []
    for client in (stock, memory):
        with pytest.raises(redis_errors.ResponseError) as info:
            await client.eval(text, 1, "g:key")
        messages.append(str(info.value))
        # The write was not made (for pcall: the refusal is its reply), the global was dropped,
        # and the next script runs as usual.
        assert await client.get("g:key") is None
        assert await client.eval("return leaked", 0) is None
        assert await client.eval("return redis.call('SET', KEYS[1], 'ok')", 1, "g:key") == b"OK"
        await client.delete("g:key")
    assert "leaked" in messages[0]
    assert messages[1] == messages[0]


async def test_lua_memory_stays_bounded_over_20000_calls(memory: redis.Redis) -> None:
    # Each call leaves garbage behind: its KEYS/ARGV tables and a 50-entry table of strings.
    garbage = memory.register_script(
        "local t = {} for i = 1, 50 do t[i] = ARGV[1] .. i end "
        "return redis.call('INCR', KEYS[1]) + #t"
    )
    await garbage(keys=["gc:n"], args=["x"])
    samples = []
    for _ in range(40):
        async with memory.pipeline(transaction=False) as pipe:
            for i in range(500):
                await garbage(keys=["gc:n"], args=[f"arg{i}"], client=pipe)
            await pipe.execute()
        samples.append(await _lua_kb(memory))
    assert await memory.get("gc:n") == b"20001"  # every call ran
    # Garbage that was never collected would grow by ~2 KB a call (~40 MB here).
    assert max(samples[20:]) < 2 * max(samples[:5])
    assert max(samples) < 2048
