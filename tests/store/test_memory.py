"""``memory://``'s own workings (gateway/store/embedded/): each script compiled once and known
by its digest, keys that expire — looked at or not — and memory that stays bounded, the
grant mailbox's ``BLPOP`` woken by a push from another task (no polling) and cancelled
cleanly, Redis's reply conversions, an unknown command, and the round trips the request path
uses. ``test_embedded_differential.py`` holds it against a real Redis."""

from __future__ import annotations

import asyncio
import importlib.util
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as redis
from redis import exceptions as redis_errors

from gateway.store.connection import connect, send_scripts
from gateway.store.embedded import EmbeddedRedis
from gateway.store.embedded.scripting import LUA_RUNTIMES

INCR = "return redis.call('INCR', KEYS[1])"


@pytest.fixture(params=list(LUA_RUNTIMES))
async def memory(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    client = connect(f"memory://?lua={request.param}")
    assert isinstance(client, EmbeddedRedis)
    assert client.server.scripts.runtime == request.param
    yield client
    await client.aclose()


def test_scripts_run_on_luajit_where_lupa_has_it() -> None:
    """LuaJIT runs the scripts in ~20% less of the core than Lua 5.1 (memory-store.md); the
    lupa wheels of the gateway's platforms carry it, so a missing one is a build to look at."""
    assert importlib.util.find_spec("lupa.luajit21") is not None
    assert connect("memory://").server.scripts.runtime == "luajit"
    assert connect("memory://?lua=lua51").server.scripts.runtime == "lua51"


async def test_each_script_is_compiled_once_and_known_by_its_digest(memory: Any) -> None:
    count = memory.register_script(INCR)
    for _ in range(50):
        await count(keys=["n"])
    for _ in range(50):  # EVAL with the text, and the request path's round trip by digest
        await memory.eval(INCR, 1, "n")
    assert await send_scripts(memory, [(count, ["n"], [])] * 3) == [101, 102, 103]
    assert memory.server.scripts.compilations == 1
    assert await memory.script_exists(count.sha) == [True]


async def test_a_scripts_time_is_the_clock_as_it_started(memory: Any) -> None:
    """TIME inside a script is answered in Lua (no crossing into Python): the clock read as
    the script started, in Redis's shape — seconds and microseconds, as digits."""
    before = time.time_ns() // 1000
    seconds, micros = await memory.eval("return redis.call('TIME')", 0)
    after = time.time_ns() // 1000
    assert seconds.isdigit() and micros.isdigit() and int(micros) < 1_000_000
    assert before <= int(seconds) * 1_000_000 + int(micros) <= after
    first, second = await memory.eval(
        "local a = redis.call('TIME') local b = redis.call('TIME') return {a[2], b[2]}", 0
    )
    assert first == second  # one reading per script


async def test_a_forgotten_script_is_noscript_and_is_sent_again_by_its_text(memory: Any) -> None:
    count = memory.register_script(INCR)
    await count(keys=["n"])
    await memory.script_flush()
    with pytest.raises(redis_errors.NoScriptError):
        await memory.evalsha(count.sha, 1, "n")
    assert await count(keys=["n"]) == 2  # AsyncScript loads it again
    await memory.script_flush()
    assert await send_scripts(memory, [(count, ["n"], [])]) == [3]  # EVAL after NOSCRIPT
    assert memory.server.scripts.compilations == 3


async def test_keys_expire_when_read_and_when_nobody_reads_them(memory: Any) -> None:
    await memory.set("short", "v", px=30)
    await memory.hset("h", "f", "v")
    await memory.pexpire("h", 30)
    assert 0 < await memory.pttl("short") <= 30
    await asyncio.sleep(0.05)
    assert await memory.get("short") is None
    assert await memory.hgetall("h") == {}
    assert await memory.pttl("h") == -2
    # 5,000 keys that expire and are never looked at again go all the same.
    async with memory.pipeline(transaction=False) as pipe:
        for i in range(5000):
            pipe.set(f"k{i}", "v", px=20)
        await pipe.execute()
    await memory.set("kept", "v")
    keyspace = memory.server.keyspace
    assert len(keyspace.data) == 5001
    await asyncio.sleep(0.05)
    deadline = time.monotonic() + 5
    while len(keyspace.data) > 1 and time.monotonic() < deadline:
        await memory.ping()  # any command lets the sweep take its next slice
        await asyncio.sleep(0.11)
    assert list(keyspace.data) == [b"kept"] and keyspace.expires == {}


async def test_blpop_wakes_on_a_push_from_another_task_without_polling(memory: Any) -> None:
    waiting = asyncio.create_task(memory.blpop(["mailbox"], timeout=10))
    await asyncio.sleep(0.05)
    assert not waiting.done() and len(memory.server.blocked[b"mailbox"]) == 1
    started = time.monotonic()
    await memory.eval("return redis.call('RPUSH', KEYS[1], 'grant')", 1, "mailbox")
    assert await waiting == (b"mailbox", b"grant")
    assert time.monotonic() - started < 0.05  # woken by the push, not by a timer
    assert memory.server.blocked == {} and await memory.llen("mailbox") == 0


async def test_blpop_times_out_and_serves_waiters_in_order(memory: Any) -> None:
    started = time.monotonic()
    assert await memory.blpop(["empty"], timeout=0.1) is None
    assert 0.09 < time.monotonic() - started < 0.5
    first = asyncio.create_task(memory.blpop(["q"], timeout=5))
    await asyncio.sleep(0.01)
    second = asyncio.create_task(memory.blpop(["q"], timeout=5))
    await asyncio.sleep(0.01)
    await memory.rpush("q", "a", "b")
    assert [await first, await second] == [(b"q", b"a"), (b"q", b"b")]


async def test_a_cancelled_blpop_leaves_no_waiter_and_loses_no_element(memory: Any) -> None:
    waiting = asyncio.create_task(memory.blpop(["mailbox"], timeout=10))
    await asyncio.sleep(0.01)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert memory.server.blocked == {}
    await memory.rpush("mailbox", "kept")
    assert await memory.lrange("mailbox", 0, -1) == [b"kept"]
    # Handed an element, then cancelled before it ran: the element goes back, in front.
    waiting = asyncio.create_task(memory.blpop(["mailbox2"], timeout=10))
    await asyncio.sleep(0.01)
    await memory.rpush("mailbox2", "first", "second")  # "first" is handed to the waiter
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert await memory.lrange("mailbox2", 0, -1) == [b"first", b"second"]


@pytest.mark.parametrize(
    ("text", "reply"),
    [
        ("return {1, 2.7, -2.7, true, false, nil, 3}", [1, 2, -2, 1, None]),
        ("return 1e20", -(2**63)),
        ("return {ok = 'fine'}", b"fine"),
        ("return {'a', {'b', {}}, redis.status_reply('S')}", [b"a", [b"b", []], b"S"]),
        ("return redis.call('HMGET', 'absent', 'f', 'g')", [None, None]),
        ("return redis.call('GET', 'absent') == false", 1),
        ("local t = {} for i = 1, 9000 do t[i] = i end return t", list(range(1, 9001))),
        ("return #ARGV", 6000),
    ],
)
async def test_replies_convert_as_in_redis(memory: Any, text: str, reply: Any) -> None:
    args = [f"a{i}" for i in range(6000)] if "ARGV" in text else []
    assert await memory.eval(text, 0, *args) == reply


async def test_an_unknown_command_is_an_error_not_a_crash(memory: Any) -> None:
    with pytest.raises(redis_errors.ResponseError, match="unknown command 'NOSUCH'"):
        await memory.execute_command("NOSUCH", "x")
    with pytest.raises(redis_errors.ResponseError, match="Unknown Redis command called from"):
        await memory.eval("local r = redis.call('NOSUCH') return r", 0)
    (error,) = await memory.eval("return {redis.pcall('NOSUCH')}", 0)
    assert isinstance(error, redis_errors.ResponseError)
    assert await memory.ping() is True  # the store goes on


@pytest.mark.parametrize(
    "text",
    [
        "leaked = 1 return redis.call('SET', KEYS[1], 'written')",
        "_G['leaked'] = 1 return 1",
        "rawset(_G, 'leaked', 1) return 1",
    ],
)
async def test_a_script_that_sets_a_global_is_refused(memory: Any, text: str) -> None:
    with pytest.raises(redis_errors.ResponseError, match="readonly table"):
        await memory.eval(text, 1, "g")
    assert await memory.get("g") is None  # refused before the write (or made none)
    with pytest.raises(redis_errors.ResponseError, match="nonexistent global variable"):
        await memory.eval("return leaked", 0)


async def test_pipelines_put_errors_in_place_or_raise_the_first(memory: Any) -> None:
    await memory.set("s", "text")
    async with memory.pipeline(transaction=False) as pipe:
        pipe.incr("n").incr("s").hgetall("s").get("s")
        assert len(pipe) == 4
        replies = await pipe.execute(raise_on_error=False)
    assert replies[0] == 1 and replies[3] == b"text"
    assert [type(r) for r in replies[1:3]] == [redis_errors.ResponseError] * 2
    assert "WRONGTYPE" in str(replies[2])
    async with memory.pipeline(transaction=False) as pipe:
        pipe.incr("s")
        with pytest.raises(redis_errors.ResponseError, match=r"Command # 1 .* of pipeline"):
            await pipe.execute()
        assert len(pipe) == 0


async def test_lua_memory_stays_bounded_over_20000_calls(memory: Any) -> None:
    garbage = memory.register_script(
        "local t = {} for i = 1, 50 do t[i] = ARGV[1] .. i end "
        "return redis.call('INCR', KEYS[1]) + #t"
    )
    samples = []
    for _ in range(40):
        await send_scripts(memory, [(garbage, ["gc:n"], [f"arg{i}"]) for i in range(500)])
        samples.append(memory.server.scripts.lua.eval("collectgarbage('count')"))
    assert await memory.get("gc:n") == b"20000"
    # Garbage never collected would grow by ~2 KB a call (~40 MB here).
    assert max(samples[20:]) < 2 * max(samples[:5])
    assert max(samples) < 4096


async def test_a_store_call_lets_other_tasks_run_first(memory: Any) -> None:
    """As over a socket: a task started just before a store call has run by its reply."""
    ran = []

    async def note() -> None:
        ran.append(True)

    task = asyncio.create_task(note())
    await memory.get("x")
    assert ran == [True] and task.done()


def test_memory_is_one_store_per_connect() -> None:
    first, second = connect("memory://"), connect("memory://")
    assert isinstance(first, redis.Redis)  # what code checking for a Redis client takes
    assert first.server is not second.server  # type: ignore[attr-defined]
