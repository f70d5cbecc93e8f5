"""``memory://`` against a real Redis, asked the same things: every command the embedded store
implements, its options and its errors, sent as plain commands and from Lua scripts, must
get the same reply — bytes for bytes, the same ``int``/``None``/list shapes, the same
exception classes and messages — and the gateway's own scripts, driven through the gateway's
store classes, must leave the same answers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as redis

from gateway.store.admission import AdmissionStore
from gateway.store.apikeys import KeyStore
from gateway.store.connection import connect
from gateway.store.embedded.scripting import LUA_RUNTIMES
from gateway.store.prefixes import AffinityStore

#: Plain commands, in order, over one keyspace: each type, its options, its errors.
COMMANDS: list[tuple[Any, ...]] = [
    ("SET", "s", "v"),
    ("GET", "s"),
    ("GET", "absent"),
    ("SET", "s", "w", "NX"),
    ("SET", "s", "w", "XX"),
    ("SET", "n2", "1", "XX"),
    ("SET", "s", "x", "GET"),
    ("SET", "s", "y", "NX", "XX"),
    ("SET", "s", "y", "EX", "0"),
    ("SET", "s", "y", "PX"),
    ("SET", "s", "y", "PX", "100000", "KEEPTTL"),
    ("SET", "t", "1", "PX", "100000"),
    ("SET", "t", "2", "KEEPTTL"),
    ("PERSIST", "t"),
    ("PERSIST", "t"),
    ("SETNX", "t", "3"),
    ("MSET", "a", "1", "b", "2"),
    ("MSET", "a"),
    ("MGET", "a", "b", "absent"),
    ("INCR", "c"),
    ("INCRBY", "c", "41"),
    ("DECR", "c"),
    ("DECRBY", "c", "-3"),
    ("GET", "c"),
    ("INCR", "s"),
    ("SET", "z7", "007"),
    ("INCR", "z7"),
    ("SET", "big", "9223372036854775807"),
    ("INCR", "big"),
    ("INCRBY", "c", "1.5"),
    ("GET", "s", "extra"),
    ("HSET", "h", "f1", "a", "f2", "b"),
    ("HSET", "h", "f1", "c", "f3", "d"),
    ("HSET", "h", "x"),
    ("HGET", "h", "f1"),
    ("HGET", "h", "nope"),
    ("HGET", "absent", "f"),
    ("HMGET", "h", "f2", "no"),
    ("HMGET", "absent", "a", "b"),
    ("HGETALL", "h"),
    ("HGETALL", "absent"),
    ("HLEN", "h"),
    ("HEXISTS", "h", "f3"),
    ("HKEYS", "h"),
    ("HVALS", "h"),
    ("HDEL", "h", "f2", "no"),
    ("HINCRBY", "h", "n", "5"),
    ("HINCRBY", "h", "f1", "1"),
    ("HSETNX", "h", "f1", "z"),
    ("HSETNX", "h", "new", "z"),
    ("HGETALL", "h"),
    ("HMSET", "h2", "a", "1"),
    ("HGET", "s", "f"),
    ("HDEL", "h2", "a"),
    ("EXISTS", "h2"),
    ("ZADD", "z", "1", "a", "2", "b", "3", "c"),
    ("ZADD", "z", "NX", "5", "a", "4", "d"),
    ("ZADD", "z", "XX", "CH", "6", "a", "9", "e"),
    ("ZADD", "z", "GT", "CH", "1", "b", "7", "c"),
    ("ZADD", "z", "LT", "0.5", "b"),
    ("ZADD", "z", "INCR", "2.25", "b"),
    ("ZADD", "z", "XX", "INCR", "1", "nobody"),
    ("ZADD", "z", "NX", "XX", "1", "a"),
    ("ZADD", "z", "GT", "LT", "1", "a"),
    ("ZADD", "z", "INCR", "1", "a", "2", "b"),
    ("ZADD", "z", "1"),
    ("ZADD", "z", "nan", "a"),
    ("ZADD", "z", "x", "a"),
    ("ZADD", "z", "-inf", "lo", "+inf", "hi", "1e300", "huge", "1.5e-7", "tiny"),
    ("ZADD", "z", "0.30000000000000004", "p"),
    ("ZADD", "z", "1764000000000", "ms"),
    ("ZCARD", "z"),
    ("ZCARD", "absent"),
    ("ZSCORE", "z", "b"),
    ("ZSCORE", "z", "tiny"),
    ("ZSCORE", "z", "hi"),
    ("ZSCORE", "z", "no"),
    ("ZMSCORE", "z", "a", "no", "huge"),
    ("ZRANGE", "z", "0", "-1"),
    ("ZRANGE", "z", "0", "-1", "WITHSCORES"),
    ("ZRANGE", "z", "-3", "-2"),
    ("ZRANGE", "z", "5", "2"),
    ("ZRANGE", "z", "0", "100"),
    ("ZRANGE", "z", "1", "3", "REV", "WITHSCORES"),
    ("ZRANGE", "z", "(1", "7", "BYSCORE"),
    ("ZRANGE", "z", "-inf", "+inf", "BYSCORE", "LIMIT", "1", "3"),
    ("ZRANGE", "z", "+inf", "(2", "BYSCORE", "REV", "LIMIT", "0", "2", "WITHSCORES"),
    ("ZRANGE", "z", "7", "1", "BYSCORE"),
    ("ZRANGE", "z", "0", "-1", "LIMIT", "0", "1"),
    ("ZRANGE", "z", "a", "b"),
    ("ZRANGE", "z", "a", "b", "BYSCORE"),
    ("ZRANGE", "z", "0", "1", "X"),
    ("ZRANGE", "z", "-inf", "inf", "BYSCORE", "LIMIT", "2", "-1"),
    ("ZRANGE", "z", "-inf", "inf", "BYSCORE", "LIMIT", "-1", "2"),
    ("ZRANGEBYSCORE", "z", "2", "7", "WITHSCORES"),
    ("ZRANGEBYSCORE", "z", "-inf", "(3"),
    ("ZRANGEBYSCORE", "z", "0", "10", "LIMIT", "1", "2"),
    ("ZREVRANGEBYSCORE", "z", "7", "2"),
    ("ZREVRANGE", "z", "0", "2", "WITHSCORES"),
    ("ZRANK", "z", "c"),
    ("ZREVRANK", "z", "c"),
    ("ZRANK", "z", "no"),
    ("ZCOUNT", "z", "(1", "7"),
    ("ZCOUNT", "z", "-inf", "+inf"),
    ("ZINCRBY", "z", "-2", "c"),
    ("ZINCRBY", "z", "1", "fresh"),
    ("ZREM", "z", "fresh", "no"),
    ("ZREMRANGEBYSCORE", "z", "-inf", "(0"),
    ("ZREMRANGEBYRANK", "z", "-2", "-1"),
    ("ZRANGE", "z", "0", "-1", "WITHSCORES"),
    ("ZPOPMIN", "z"),
    ("ZPOPMAX", "z", "2"),
    ("ZREMRANGEBYSCORE", "z", "-inf", "+inf"),
    ("EXISTS", "z"),
    ("ZCARD", "h"),
    ("SADD", "set", "a", "b", "a"),
    ("SADD", "set", "c"),
    ("SCARD", "set"),
    ("SISMEMBER", "set", "a"),
    ("SISMEMBER", "set", "z"),
    ("SMISMEMBER", "set", "a", "z"),
    ("SREM", "set", "a", "z"),
    ("SREM", "absent", "a"),
    ("SADD", "s", "x"),
    ("RPUSH", "l", "a", "b", "c"),
    ("LPUSH", "l", "z"),
    ("LLEN", "l"),
    ("LRANGE", "l", "0", "-1"),
    ("LRANGE", "l", "1", "-2"),
    ("LRANGE", "l", "-100", "100"),
    ("LINDEX", "l", "-1"),
    ("LINDEX", "l", "9"),
    ("LPOP", "l"),
    ("RPOP", "l", "2"),
    ("LPOP", "l", "5"),
    ("LPOP", "l"),
    ("RPOP", "absent"),
    ("LPOP", "absent", "2"),
    ("LLEN", "absent"),
    ("LPUSH", "h", "x"),
    ("TYPE", "s"),
    ("TYPE", "h"),
    ("TYPE", "z"),
    ("TYPE", "set"),
    ("TYPE", "absent"),
    ("EXISTS", "s", "s", "absent"),
    ("DEL", "a", "b", "absent"),
    ("UNLINK", "c"),
    ("PEXPIRE", "s", "100000"),
    ("PEXPIRE", "s", "200000", "NX"),
    ("PEXPIRE", "s", "50000", "GT"),
    ("PEXPIRE", "s", "500000", "GT"),
    ("PEXPIRE", "s", "400000", "LT"),
    ("PEXPIRE", "absent", "1"),
    ("PEXPIRE", "s", "1", "NX", "XX"),
    ("PEXPIRE", "s", "1", "GT", "LT"),
    ("PEXPIRE", "s", "x"),
    ("PEXPIRE", "set", "100000", "XX"),
    ("EXPIRE", "h", "1000"),
    ("TTL", "h"),
    ("PTTL", "absent"),
    ("PTTL", "set"),
    ("TTL", "set"),
    ("PEXPIRE", "h", "0"),
    ("EXISTS", "h"),
    ("EXPIREAT", "set", "1"),
    ("EXISTS", "set"),
    ("NOSUCH", "a", "b"),
    ("GET",),
    ("ECHO", "hi"),
    ("PING",),
    ("PING", "x"),
    ("SCRIPT", "EXISTS", "0" * 40),
    ("SCRIPT", "NOPE"),
    ("SCRIPT", "LOAD"),
    ("EVALSHA", "0" * 40, "0"),
    ("EVAL", "return 1", "-1"),
    ("EVAL", "return 1", "2", "a"),
    ("EVAL", "return 1", "x"),
]

#: Scripts and what they are run with: Redis's Lua↔reply conversions and its errors.
SCRIPTS: list[tuple[str, list[str], list[Any]]] = [
    ("return {1, 2.7, -2.7, true, false, nil, 3}", [], []),
    ("return {ok = 'fine'}", [], []),
    ("return redis.status_reply('x')", [], []),
    ("return {err = 'My bad'}", [], []),
    ("return redis.error_reply('MY refusal')", [], []),
    ("return redis.error_reply('boom')", [], []),
    ("return 1e20", [], []),
    ("return -0.5", [], []),
    ("return 'text'", [], []),
    ("return nil", [], []),
    ("return true", [], []),
    ("return false", [], []),
    ("return {1, {2, {'x', redis.error_reply('E1')}}, redis.status_reply('S')}", [], []),
    ("return {KEYS[1], KEYS[2], ARGV[1], ARGV[2], #KEYS, #ARGV}", ["k1", "k2"], ["a", 7]),
    ("return redis.call('TYPE', KEYS[1])", ["k1"], []),
    ("redis.call('SET', KEYS[1], 1.5e-7) return redis.call('GET', KEYS[1])", ["n"], []),
    ("redis.call('SET', KEYS[1], 123456789012345678) return redis.call('GET', KEYS[1])", ["n"], []),
    ("redis.call('SET', KEYS[1], 1/0) return redis.call('GET', KEYS[1])", ["n"], []),
    ("redis.call('SET', KEYS[1], 0.1 + 0.2) return redis.call('GET', KEYS[1])", ["n"], []),
    (
        "redis.call('ZADD', KEYS[1], 1.5e-7, 'a', 1e15, 'b', -1e12 + 7, 'c') "
        "return redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')",
        ["zs"],
        [],
    ),
    ("return redis.call('ZSCORE', KEYS[1], 'b')", ["zs"], []),
    ("return {redis.call('GET', 'absent'), 1}", [], []),
    ("return type(redis.call('GET', 'absent'))", [], []),
    ("return redis.call('HMGET', 'absent', 'a', 'b')", [], []),
    ("local r = redis.call('SET', KEYS[1], 'v') return type(r) .. r.ok", ["k"], []),
    ("return redis.call('SET', KEYS[1], 'v', 'NX')", ["k"], []),
    ("return redis.call('PING')", [], []),
    ("return redis.pcall('GET')", [], []),
    ("return redis.pcall('INCR', KEYS[1])", ["k"], []),
    ("local t = redis.pcall('NOSUCH') return t.err", [], []),
    ("return redis.call('get', KEYS[1])", ["k"], []),
    ("return #redis.call('TIME')", [], []),
    ("local t = redis.call('TIME') return {type(t[1]), type(t[2]), #t[2] <= 6}", [], []),
    ("return redis.pcall('TIME', 'now')", [], []),
    ("return #redis.call('time')", [], []),
    ("return redis.sha1hex('abc')", [], []),
    ("return tostring(1e15) .. ' ' .. tostring(0.1)", [], []),
    ("error('boom')", [], []),
    ("return 1 +", [], []),
    ("local a = 1\nlocal b = nil\nreturn b.x", [], []),
    ("local r = redis.call('NOSUCH') return r", [], []),
    ("local r = redis.call('GET') return r", [], []),
    ("local r = redis.call('SET', KEYS[1], {}) return r", ["k"], []),
    ("local r = redis.call('SET', KEYS[1], true) return r", ["k"], []),
    (
        "redis.call('SET', KEYS[1], 'v')\nlocal r = redis.call('HGET', KEYS[1], 'f') return r",
        ["k"],
        [],
    ),
    ("local r = redis.call('INCR', KEYS[1]) return r", ["k"], []),
    ("local r = redis.call('EVAL', 'return 1', 0) return r", [], []),
    ("local r = redis.call() return r", [], []),
    ("leaked = 1", [], []),
    ("_G['leaked'] = 1 return 1", [], []),
    ("return leaked", [], []),
    ("return jit", [], []),
    ("return string.format('%d %s %.3f', 7.9, 1e15, 2 / 3)", [], []),
    ("return tostring(2 ^ 53) .. ' ' .. tostring(0.1) .. ' ' .. tostring(-0)", [], []),
    ("return redis.call('INCR', 'nosuch:x') + redis.call('GET', 'absent')", [], []),
]


@pytest.fixture(params=list(LUA_RUNTIMES))
async def both(
    redis_server: Any, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[redis.Redis, redis.Redis]]:
    """A real Redis, and memory:// on one of its Lua runtimes."""
    real, memory = connect(redis_server.url), connect(f"memory://?lua={request.param}")
    await real.flushdb()
    yield real, memory
    await real.flushdb()
    await real.aclose()
    await memory.aclose()


async def _answer(call: Any) -> Any:
    try:
        return await call
    except Exception as exc:  # an error is an answer too: its class and its words
        return (type(exc), str(exc))


async def test_every_command_answers_as_real_redis(both: tuple[redis.Redis, redis.Redis]) -> None:
    real, memory = both
    answers: dict[str, list[Any]] = {"redis": [], "memory": []}
    for name, client in (("redis", real), ("memory", memory)):
        for command in COMMANDS:
            answers[name].append(await _answer(client.execute_command(*command)))
    for command, want, got in zip(COMMANDS, answers["redis"], answers["memory"], strict=True):
        assert (command, got) == (command, want)
    assert len({repr(a) for a in answers["memory"]}) > 60  # they are not all alike


async def test_the_client_methods_answer_as_real_redis(
    both: tuple[redis.Redis, redis.Redis],
) -> None:
    """redis-py's response callbacks (``True`` for ``SET``, a dict for ``HGETALL``, a set for
    ``SMEMBERS``, a tuple for ``BLPOP``…) see the same replies."""
    real, memory = both
    answers: dict[str, list[Any]] = {"redis": [], "memory": []}
    for name, c in (("redis", real), ("memory", memory)):
        answers[name] = [
            await c.set("k", "v"), await c.set("k", "v", nx=True), await c.get("k"),
            await c.set("e", 1, px=100_000), 0 < await c.pttl("e") <= 100_000,
            await c.hset("h", mapping={"a": 1, "b": b"\xff"}), await c.hgetall("h"),
            await c.hmget("h", "a", "z"), await c.hget("h", "b"), await c.sadd("s", "x", "y"),
            await c.smembers("s"), await c.zadd("z", {"m": 1.5, "n": 2}), await c.zscore("z", "m"),
            await c.zrange("z", 0, -1, withscores=True), await c.zcard("z"), await c.incr("i"),
            await c.rpush("l", "a", "b"), await c.llen("l"), await c.blpop(["l"], timeout=1),
            await c.lpop("l"), await c.pexpire("h", 100_000), await c.exists("h", "nope"),
            await c.type("z"), await c.delete("s", "nope"), sorted(await c.keys("*")),
            sorted([k async for k in c.scan_iter(match="[hz]*", count=1000)]),
            await c.ping(), await c.script_exists("0" * 40), await c.flushdb(), await c.keys(),
        ]  # fmt: skip
    assert answers["memory"] == answers["redis"]


async def test_scripts_answer_as_real_redis(both: tuple[redis.Redis, redis.Redis]) -> None:
    real, memory = both
    answers: dict[str, list[Any]] = {"redis": [], "memory": []}
    for name, client in (("redis", real), ("memory", memory)):
        for text, keys_, args in SCRIPTS:
            reply = await _answer(client.eval(text, len(keys_), *keys_, *args))
            if isinstance(reply, list):  # an error inside an array: compare its words
                reply = repr(reply)
            answers[name].append(reply)
    for script, want, got in zip(SCRIPTS, answers["redis"], answers["memory"], strict=True):
        assert (script[0], got) == (script[0], want)


async def test_the_gateways_scripts_answer_as_real_redis(
    both: tuple[redis.Redis, redis.Redis],
) -> None:
    """The admission, key and affinity scripts through the gateway's own store classes: the
    same statuses, loads and records on both (what depends on the clock left out)."""
    seen: dict[str, list[Any]] = {"redis": [], "memory": []}
    candidates = [("b1", 2), ("b2", 1)]
    for name, client in zip(("redis", "memory"), both, strict=True):
        store = AdmissionStore(client, lease_ttl=15, grant_ttl=10)
        for i in range(40):
            reply = await store.acquire(
                "m", key_id=f"k{i % 3}", waiter=f"w{i}", replica="r", weight=1.0 + i % 2,
                cost=1, priority=i % 2, timeout=1.0, bound=5, exclude=[], candidates=candidates,
            )  # fmt: skip
            seen[name].append((reply.status, reply.backend, reply.loads, reply.queued))
            if reply.backend is not None and i % 2:
                released = await store.release("m", reply.backend, f"w{i}", candidates)
                assert not isinstance(released, Exception)
                seen[name].append(released.loads)
        keystore = KeyStore(client)
        made, _secret = await keystore.create(name="diff", rpm=5, models=["m"])
        updated = await keystore.update(made.id, tpm=100)
        revoked = await keystore.revoke(made.id)
        seen[name].append((updated.tpm, updated.models, revoked.revoked, made.rpm))
        affinity = AffinityStore(client, ttl=60, max_entries=3)
        for n in range(5):
            await affinity.record("m", [f"e{n}", f"e{n + 1}"], f"b{n % 2}", n)
        found = await affinity.lookup("m", ["e3", "e4", "e5"], [1, 2, 3])
        seen[name].append((sorted(await client.keys("lg:{m}:aff:*")), found))
    assert seen["memory"] == seen["redis"]
    assert {"granted", "queued", "full"} <= {s[0] for s in seen["memory"] if len(s) == 4}


async def test_a_large_sorted_set_answers_as_real_redis(
    both: tuple[redis.Redis, redis.Redis],
) -> None:
    """Past 512 entries the embedded store keeps a sorted set in another structure (a
    ``SortedList``, as Redis moves from a listpack to a skiplist): the same answers."""
    script = """
    for i = 1, 3000 do redis.call('ZADD', KEYS[1], (i * 7919) % 1000, 'm' .. i) end
    for i = 1, 3000, 3 do redis.call('ZADD', KEYS[1], 'XX', i / 4, 'm' .. i) end
    for i = 2, 3000, 5 do redis.call('ZREM', KEYS[1], 'm' .. i) end
    local out = {redis.call('ZCARD', KEYS[1]), redis.call('ZRANK', KEYS[1], 'm10'),
                 redis.call('ZCOUNT', KEYS[1], '(100', 500)}
    out[#out + 1] = redis.call('ZRANGE', KEYS[1], 100, 140, 'WITHSCORES')
    out[#out + 1] = redis.call('ZRANGE', KEYS[1], '(250', 260, 'BYSCORE', 'LIMIT', 3, 20)
    out[#out + 1] = redis.call('ZRANGE', KEYS[1], 900, '(880', 'BYSCORE', 'REV')
    out[#out + 1] = redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', 200)
    out[#out + 1] = redis.call('ZREMRANGEBYRANK', KEYS[1], -100, -1)
    out[#out + 1] = redis.call('ZRANGE', KEYS[1], 0, 30)
    out[#out + 1] = redis.call('ZREVRANGE', KEYS[1], 0, 5, 'WITHSCORES')
    out[#out + 1] = redis.call('ZCARD', KEYS[1])
    return out
    """
    replies = [await client.eval(script, 1, "big") for client in both]
    assert replies[0] == replies[1]
    assert replies[1][0] > 2000  # it did grow past the small structure
    real, memory = both
    assert await memory.zrange("big", 0, -1, withscores=True) == (
        await real.zrange("big", 0, -1, withscores=True)
    )
