"""Several gateway replicas sharing one real Redis: one view of capacity, no leaked slots and no
slots granted to the dead when a replica dies, no grants a replica cannot use when replicas
have different backends, and a Redis outage or failover answered with 503s rather than hangs
or losses — and over as soon as the store is back."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import redis

from gateway.store import keys
from tests.chaos.harness import Tally, flood, until
from tests.support.processes import Gateway, LlamaServer
from tests.support.redis_sentinel import Sentinels
from tests.support.redis_server import RedisServer

CHAT = {
    "model": "smollm2",
    "max_tokens": 16,
    "messages": [{"role": "user", "content": "Write a haiku about rain."}],
}


def _replica(redis_url: str, backends: list[LlamaServer], *extra: str) -> Gateway:
    args = [a for b in backends for a in ("--backend", b.url)]
    return Gateway(*args, "--no-auth", "--redis-url", redis_url, "--queue-timeout", "600", *extra)


@pytest.fixture
def fresh_redis(redis_server: RedisServer) -> str:
    redis.Redis(port=redis_server.port).flushdb()
    return redis_server.url


@pytest.fixture
def three_replicas(fresh_redis: str, backends: list[LlamaServer]) -> Iterator[list[Gateway]]:
    replicas = [_replica(fresh_redis, backends) for _ in range(3)]
    try:
        for replica in replicas:
            replica.start()
        yield replicas
    finally:
        for replica in replicas:
            replica.stop()


async def test_three_replicas_never_exceed_the_slots(
    three_replicas: list[Gateway], backends: list[LlamaServer]
) -> None:
    stop = threading.Event()
    peaks = [0, 0]

    def watch() -> None:
        while not stop.is_set():
            for i, backend in enumerate(backends):
                try:
                    peaks[i] = max(peaks[i], backend.busy_slots())
                except httpx.HTTPError:  # a slow answer on a loaded machine: look again
                    continue
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    async with httpx.AsyncClient(timeout=600) as client:
        answers = await asyncio.gather(
            *(
                client.post(f"{three_replicas[i % 3].url}/v1/chat/completions", json=CHAT)
                for i in range(60)
            )
        )
    stop.set()
    watcher.join()
    assert [a.status_code for a in answers] == [200] * 60
    assert all(a.json()["usage"]["completion_tokens"] > 0 for a in answers)
    assert peaks == [4, 4]  # both full at some moment, never over


def test_a_killed_replica_frees_its_lease_within_the_ttl(
    fresh_redis: str, backends: list[LlamaServer], redis_server: RedisServer
) -> None:
    ttl = 3.0
    doomed = _replica(fresh_redis, backends[:1], "--lease-ttl", str(ttl)).start()
    store = redis.Redis(port=redis_server.port)
    lease_key = keys.leases("smollm2", f"127.0.0.1:{backends[0].port}")
    body = {**CHAT, "max_tokens": 2000, "stream": True, "ignore_eos": True}
    with httpx.stream("POST", f"{doomed.url}/v1/chat/completions", json=body, timeout=60) as stream:
        lines = stream.iter_lines()
        next(lines)
        assert store.zcard(lease_key) == 1
        doomed.process.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        doomed.process.wait()
    # No replica releases it: past its TTL no script counts it, and the survivor's next
    # heartbeat (every TTL / 3) clears it out.
    survivor = _replica(fresh_redis, backends[:1], "--lease-ttl", str(ttl)).start()
    try:
        while time.monotonic() - killed_at < ttl + 1:
            time.sleep(0.2)
        answer = httpx.post(f"{survivor.url}/v1/chat/completions", json=CHAT, timeout=120)
        assert answer.status_code == 200
        assert survivor.metric("llama_gateway_slots_busy") == 0  # as its release counted them
        cleared = asyncio.run(until(lambda: store.zcard(lease_key) == 0, timeout=ttl))
        assert cleared is not None, store.zrange(lease_key, 0, -1, withscores=True)
    finally:
        survivor.stop()


def test_redis_outage_gives_503_and_recovers(tmp_path, backends: list[LlamaServer]) -> None:
    """#15 item 3: after the restart the very next request succeeds (stale pooled connections
    gave 503s for 12 s), and ``/ready`` says what the store is doing when it is asked."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    gw = _replica(server.url, backends).start()
    burst = 24  # more at once than the backends' 8 slots: many pooled store connections
    try:
        with ThreadPoolExecutor(burst) as pool:  # connections the restart will break
            assert {a.status_code for a in pool.map(lambda _: _chat(gw), range(burst))} == {200}
        body = {**CHAT, "max_tokens": 200, "stream": True, "ignore_eos": True}
        with httpx.stream(
            "POST", f"{gw.url}/v1/chat/completions", json=body, timeout=120
        ) as admitted:
            lines = admitted.iter_lines()
            next(lines)
            server.stop()
            refused = httpx.post(f"{gw.url}/v1/chat/completions", json=CHAT, timeout=30)
            assert refused.status_code == 503, refused.text
            assert refused.json()["error"]["type"] == "service_unavailable_error"
            assert int(refused.headers["retry-after"]) >= 1
            assert httpx.get(f"{gw.url}/ready").status_code == 503
            # The request admitted before the outage runs to its end.
            rest = list(lines)
        assert "data: [DONE]" in rest

        server.start()
        assert httpx.get(f"{gw.url}/ready").status_code == 200
        with ThreadPoolExecutor(burst) as pool:
            answers = list(pool.map(lambda _: _chat(gw), range(burst)))
        refused = [a.text for a in answers if a.status_code != 200]
        assert refused == []  # stale connections had given 503 "store is unreachable"
    finally:
        gw.stop()
        server.stop()


def _chat(gw: Gateway, body: dict = CHAT) -> httpx.Response:
    return httpx.post(f"{gw.url}/v1/chat/completions", json=body, timeout=120)


def _hold(gw: Gateway, stack: contextlib.ExitStack, n: int) -> list[Iterator[str]]:
    """Open ``n`` long streams through ``gw`` and read their first line: ``n`` slots held
    until ``stack`` closes them. Keep the returned iterators: a dropped one closes its
    stream."""
    body = {**CHAT, "max_tokens": 4000, "stream": True, "ignore_eos": True}
    lines = []
    for _ in range(n):
        stream = stack.enter_context(
            httpx.stream("POST", f"{gw.url}/v1/chat/completions", json=body, timeout=120)
        )
        lines.append(stream.iter_lines())
        next(lines[-1])
    return lines


def _until(check, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_replicas_with_different_backends_grant_each_other_nothing(
    fresh_redis: str, backends: list[LlamaServer], redis_server: RedisServer
) -> None:
    """#15 item 4: two replicas share a Redis and the model id, each with its own backend. A
    slot freed on B's backend was granted to A's queued request, which A could not use: it got
    503 at its deadline although A's own slots came free, and B's slot stayed taken."""
    a = _replica(fresh_redis, backends[:1], "--queue-timeout", "60").start()
    b = _replica(fresh_redis, backends[1:]).start()
    store = redis.Redis(port=redis_server.port)
    b_leases = keys.leases("smollm2", f"127.0.0.1:{backends[1].port}")
    try:
        with ThreadPoolExecutor(2) as pool, contextlib.ExitStack() as held:
            streams = _hold(a, held, 4)  # every slot of A's backend
            queued = pool.submit(_chat, a)
            assert _until(lambda: int(store.get("lg:{smollm2}:q:n") or 0) == 1)
            assert _chat(b).status_code == 200  # runs on B's backend, then frees its slot
            assert _until(lambda: store.zcard(b_leases) == 0), "B's slot stayed taken"
            assert not queued.done()
            del streams
        # A's streams closed: A's slots free, its queued request is served.
        answer = queued.result(timeout=120)
        assert answer.status_code == 200, answer.text
    finally:
        a.stop()
        b.stop()


def test_a_killed_replicas_waiters_are_not_granted_its_slots(
    fresh_redis: str, backends: list[LlamaServer], redis_server: RedisServer
) -> None:
    """#15 item 5: a replica killed with ``kill -9`` left 4 slots leased and 4 requests queued.
    When its leases expired the slots were granted to its dead waiters (posted to its mailbox,
    never taken), and the live replica's queued request waited one more grant TTL."""
    ttl = "3"
    doomed = _replica(fresh_redis, backends[:1], "--lease-ttl", ttl).start()
    store = redis.Redis(port=redis_server.port)
    with ThreadPoolExecutor(5) as pool, contextlib.ExitStack() as held:
        streams = _hold(doomed, held, 4)
        for _ in range(4):
            pool.submit(_chat, doomed)  # cut when it dies
        assert _until(lambda: int(store.get("lg:{smollm2}:q:n") or 0) == 4)
        a_waiter = store.keys("lg:{smollm2}:w:*")[0]
        mailbox = keys.grants(store.hget(a_waiter, "replica").decode())
        survivor = _replica(fresh_redis, backends[:1], "--lease-ttl", ttl).start()
        try:
            waiting = pool.submit(_chat, survivor)
            assert _until(lambda: int(store.get("lg:{smollm2}:q:n") or 0) == 5)
            doomed.process.send_signal(signal.SIGKILL)
            doomed.process.wait()
            posted = False
            while not waiting.done():
                posted = posted or bool(store.exists(mailbox))
                time.sleep(0.02)
            assert waiting.result().status_code == 200
            assert not posted, "a slot was granted to the dead replica's waiter"
            assert int(store.get("lg:{smollm2}:q:n") or 0) == 0  # its waiters were dropped
            del streams
        finally:
            survivor.stop()


ADMIN = "admin-secret-for-the-failover-test"


async def test_a_sentinel_failover_under_load_costs_only_503s(
    tmp_path, backends: list[LlamaServer]
) -> None:
    """#15 item 13: ``kill -9`` of the Redis primary under load, the gateway on
    ``redis+sentinel://``. While the Sentinels promote the replica, requests get 503 with
    ``Retry-After`` — none hangs, none is lost —, then the promoted replica serves them: the key
    still works, its monthly budget still counts what it used before, and no backend was ever
    sent more requests than it has slots (llama-server would have deferred one)."""
    sentinels = Sentinels(tmp_path / "ha")
    await asyncio.to_thread(sentinels.start)
    args = [a for b in backends for a in ("--backend", b.url)]
    gw = Gateway(
        *args, "--admin-token", ADMIN, "--redis-url", sentinels.url, "--queue-timeout", "10"
    )
    stop, deferred = threading.Event(), [0.0]

    def watch() -> None:  # a request over a backend's slots waits in llama-server: deferred
        while not stop.is_set():
            for backend in backends:
                with contextlib.suppress(httpx.HTTPError, KeyError):
                    deferred[0] = max(deferred[0], backend.metric("requests_deferred"))
            time.sleep(0.02)

    try:
        await asyncio.to_thread(gw.start)
        async with httpx.AsyncClient(timeout=60) as client:
            made = await client.post(
                f"{gw.url}/admin/keys",
                json={"name": "ha", "monthly_tokens": 10**9},
                headers={"Authorization": f"Bearer {ADMIN}"},
            )
            headers = {"Authorization": f"Bearer {made.json()['key']}"}
            before = await client.post(f"{gw.url}/v1/chat/completions", json=CHAT, headers=headers)
            assert before.status_code == 200
            left_before = int(before.headers["x-ratelimit-remaining-tokens-monthly"])
            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            tally = Tally("sentinel failover")
            load = asyncio.create_task(
                flood(tally, [gw.url], clients=10, count=200, seconds=15, headers=headers)
            )
            assert await until(lambda: tally.succeeded >= 10, timeout=30) is not None
            await asyncio.to_thread(sentinels.kill_primary)
            await load
            stop.set()
            watcher.join()
            assert tally.hung == tally.lost == tally.without_retry_after == 0, tally.line()
            assert set(tally.failed) == {503}, tally.line()  # the failover was seen, as 503s
            await asyncio.to_thread(sentinels.wait_failover)
            after = await client.post(f"{gw.url}/v1/chat/completions", json=CHAT, headers=headers)
            assert after.status_code == 200, after.text
            left_after = int(after.headers["x-ratelimit-remaining-tokens-monthly"])
            assert left_after < left_before  # the budget's use survived the failover
        assert deferred[0] == 0, "a backend got more requests than slots"
    finally:
        stop.set()
        await asyncio.to_thread(gw.stop)
        await asyncio.to_thread(sentinels.stop)
