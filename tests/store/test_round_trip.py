"""The request path's round trip to a real Redis (``StoreClient.send_commands``, through
``send_scripts``): replies in order with error replies in place; round trips asked for in
one turn of the event loop go out as one; a round trip cancelled or timed out while Redis
still works on it leaves no reply behind for the next user of its connection, and a caller
cancelled leaves the others sharing its round trip their replies; one whose connection a
restart broke is sent again on a fresh one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis import exceptions as redis_errors

from gateway.store.client import StoreClient
from gateway.store.connection import WaitingConnectionPool, connect, send_scripts
from tests.support.redis_server import RedisServer

#: A script that keeps Redis busy for ~``ARGV[1]`` ms (Redis runs one script at a time, so
#: the replies of the round trip that sent it come that much later).
SLOW = """
local t = redis.call('TIME'); local deadline = t[1] * 1000000 + t[2] + ARGV[1] * 1000
repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] >= deadline
return redis.call('INCR', KEYS[1])
"""


def _one_connection(url: str, **options: object) -> StoreClient:
    """A client whose every round trip shares one connection, so a reply left unread on
    it would be the next round trip's first."""
    return StoreClient(
        connection_pool=WaitingConnectionPool.from_url(url, max_connections=1, **options)
    )


async def test_replies_come_in_order_with_error_replies_in_place(redis_server) -> None:
    client = connect(redis_server.url)
    try:
        await client.delete("ordered")
        count = client.register_script("return redis.call('INCR', KEYS[1])")
        fail = client.register_script("return redis.error_reply('ERR refused here')")
        replies = await send_scripts(
            client, [(count, ["ordered"], []), (fail, [], []), (count, ["ordered"], [])]
        )
        assert replies[0] == 1 and replies[2] == 2
        assert isinstance(replies[1], redis_errors.ResponseError) and "refused here" in str(
            replies[1]
        )
    finally:
        await client.aclose()


async def test_a_cancelled_round_trip_leaves_no_reply_for_the_next(redis_server) -> None:
    client = _one_connection(redis_server.url)
    try:
        await client.delete("slow", "quick")
        slow = client.register_script(SLOW)
        quick = client.register_script("return 'quick:' .. redis.call('INCR', KEYS[1])")
        await send_scripts(client, [(slow, ["slow"], [1])])  # both known by their digests
        cut = asyncio.ensure_future(send_scripts(client, [(slow, ["slow"], [300])]))
        await asyncio.sleep(0.1)  # sent; Redis is still running it
        cut.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cut
        assert await send_scripts(client, [(quick, ["quick"], [])]) == [b"quick:1"]
        assert int(await client.get("slow")) == 2  # the cut one still ran, once
    finally:
        await client.aclose()


async def test_round_trips_asked_in_one_turn_go_out_together(redis_server) -> None:
    """Twenty requests reaching the store in the same turn of the event loop make one round
    trip on one connection — not twenty on twenty — and each gets its own replies."""
    client = connect(redis_server.url)
    watcher = connect(redis_server.url)
    try:
        await client.delete("together")
        count = client.register_script("return redis.call('INCR', KEYS[1])")
        echo = client.register_script("return ARGV[1]")
        await send_scripts(client, [(count, ["together"], [])])  # its connection, and the digest
        before = (await watcher.info("stats"))["total_connections_received"]
        replies = await asyncio.gather(
            *(send_scripts(client, [(echo, [], [i]), (count, ["together"], [])]) for i in range(20))
        )
        assert [r[0] for r in replies] == [str(i).encode() for i in range(20)]
        assert sorted(r[1] for r in replies) == list(range(2, 22))
        after = (await watcher.info("stats"))["total_connections_received"]
        assert after == before  # no connection was opened for them
    finally:
        await client.aclose()
        await watcher.aclose()


async def test_a_caller_cancelled_mid_round_trip_leaves_the_others_theirs(redis_server) -> None:
    client = _one_connection(redis_server.url)
    try:
        await client.delete("shared")
        slow = client.register_script(SLOW)
        await send_scripts(client, [(slow, ["shared"], [1])])
        callers = [asyncio.ensure_future(send_scripts(client, [(slow, ["shared"], [100])]))]
        callers += [asyncio.ensure_future(send_scripts(client, [(slow, ["shared"], [1])]))]
        await asyncio.sleep(0.05)  # both sent, in one round trip; Redis runs the first
        callers[0].cancel()
        assert await callers[1] == [3]  # the second ran after the first: 1, then 2, then 3
        with pytest.raises(asyncio.CancelledError):
            await callers[0]
        assert int(await client.get("shared")) == 3
    finally:
        await client.aclose()


async def test_a_round_trip_past_the_socket_timeout_fails_and_the_next_one_works(
    redis_server,
) -> None:
    client = _one_connection(redis_server.url, socket_timeout=0.1)
    try:
        await client.delete("late", "next")
        slow = client.register_script(SLOW)
        quick = client.register_script("return 'next:' .. redis.call('INCR', KEYS[1])")
        await send_scripts(client, [(quick, ["next"], [])])
        started = asyncio.get_running_loop().time()
        [late] = await send_scripts(client, [(slow, ["late"], [400])])
        assert isinstance(late, redis_errors.TimeoutError)  # the round trip's error, as its reply
        assert asyncio.get_running_loop().time() - started < 0.35  # bounded by socket_timeout
        await asyncio.sleep(0.4)  # let Redis finish the slow script
        assert await send_scripts(client, [(quick, ["next"], [])]) == [b"next:2"]
    finally:
        await client.aclose()


@pytest.fixture
async def own_redis(tmp_path) -> AsyncIterator[tuple[RedisServer, StoreClient]]:
    """A redis-server of the test's own (it restarts or stops it), and a client of it."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    client = connect(server.url)
    yield server, client
    await client.aclose()
    server.stop()


async def test_a_round_trip_on_a_connection_a_restart_broke_is_sent_again(own_redis) -> None:
    server, client = own_redis
    count = client.register_script("return redis.call('INCR', KEYS[1])")
    await asyncio.gather(*(send_scripts(client, [(count, ["n"], [])]) for _ in range(20)))
    server.restart()  # every pooled connection is now broken; the script cache is empty
    replies = await asyncio.gather(*(send_scripts(client, [(count, ["n"], [])]) for _ in range(20)))
    assert [r for [r] in replies if isinstance(r, Exception)] == []
    assert sorted(r for [r] in replies) == list(range(21, 41))  # each ran once (AOF kept 20)


async def test_a_stopped_redis_is_every_command_s_reply_not_a_hang(own_redis) -> None:
    server, client = own_redis
    count = client.register_script("return redis.call('INCR', KEYS[1])")
    await send_scripts(client, [(count, ["n"], [])])
    server.stop()
    replies = await asyncio.wait_for(
        send_scripts(client, [(count, ["n"], []), (count, ["m"], [])]), 10
    )
    assert all(isinstance(r, redis_errors.ConnectionError) for r in replies)
