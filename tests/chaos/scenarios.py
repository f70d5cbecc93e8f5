"""The chaos scenarios: each breaks one thing under load, on loopback, and counts how every
request ended (see :mod:`tests.chaos.harness`).

Adding a scenario is one function here (or in a module imported by ``tests/chaos/__main__``)::

    @scenario("runner-kill")
    async def runner_kill(lab: Lab) -> list[Tally]:
        backends = [lab.runner(), lab.runner()]        # its own runners: it kills one
        gw = lab.gateway(backends, "--no-auth")
        tally = Tally("runner kill -9")
        load = asyncio.create_task(flood(tally, [gw.url], clients=8, count=200, seconds=15))
        await asyncio.sleep(3)
        backends[0].kill()
        await load
        tally.expect_clean(503)                         # what it must hold, as problems
        return [tally]

Bound it in time and count (a ``flood`` stops at whichever comes first; ``make chaos`` also
stops a scenario at :data:`tests.chaos.__main__.SCENARIO_LIMIT` seconds), start every process
through ``lab`` (so it is stopped however the scenario ends), and return one
:class:`~tests.chaos.harness.Tally` per kind of request whose outcome it reports. A tally's
``notes`` carry what it measured beside the counts; its ``problems`` make ``make chaos`` fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Awaitable, Callable

import httpx
import redis

from gateway.store.admission import ALIVE_FOR
from tests.chaos.harness import Tally, flood, ready, until
from tests.chaos.lab import ADMIN, Lab

Scenario = Callable[[Lab], Awaitable[list[Tally]]]
SCENARIOS: dict[str, Scenario] = {}


def scenario(name: str) -> Callable[[Scenario], Scenario]:
    def register(fn: Scenario) -> Scenario:
        SCENARIOS[name] = fn
        return fn

    return register


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.2f} s"


async def _store_outage(lab: Lab, *, kill: bool) -> list[Tally]:
    """A burst fills the gateway's pool of store connections; Redis is restarted (at once, as
    ``systemctl restart`` does) or killed with ``kill -9`` under load and started again from its
    AOF after ~2 s; then another burst, which must be served in full while ``/ready`` turns 200
    within a second (#15 item 3: 503s for seconds after the store was back, and ``/ready`` 200
    only at the next upkeep tick). The stale-connection 503s themselves are replayed by
    ``tests/integration/test_replicas.py``, whose outage outlasts redis-py's health-check
    interval."""
    server = lab.redis()
    gw = lab.gateway(lab.backends(), "--no-auth", "--redis-url", server.url)
    how = "kill -9" if kill else "restart"
    during, after = Tally(f"redis {how}: before, during"), Tally(f"redis {how}: after")
    await flood(during, [gw.url], clients=48, count=48, seconds=60)  # many pooled connections
    over = asyncio.Event()
    load = asyncio.create_task(
        flood(during, [gw.url], clients=4, count=400, seconds=60, stop=over, pause=0.05)
        if kill
        else asyncio.sleep(0)
    )
    await asyncio.to_thread(server.kill if kill else server.stop)
    down_at = time.monotonic()
    if kill:
        during.notes["/ready 503 after the store went"] = _seconds(
            await until(lambda: _not(ready(gw.url)), timeout=5)
        )
        await asyncio.sleep(2)
    await asyncio.to_thread(server.start)
    back_at = time.monotonic()
    burst = asyncio.create_task(flood(after, [gw.url], clients=48, count=96, seconds=60))
    ready_again = await until(lambda: ready(gw.url), timeout=10)
    over.set()
    await asyncio.gather(load, burst)
    after.notes["/ready 200 after the store was back"] = _seconds(ready_again)
    after.notes["outage"] = f"{back_at - down_at:.1f} s"
    during.expect_clean(503)
    after.expect_clean()
    after.expect(ready_again is not None and ready_again < 1, "/ready late after the restart")
    return [during, after]


async def _not(check: Awaitable[bool]) -> bool:
    return not await check


@scenario("redis-restart")
async def redis_restart(lab: Lab) -> list[Tally]:
    """#15 item 3: Redis restarted under load."""
    return await _store_outage(lab, kill=False)


@scenario("redis-kill")
async def redis_kill(lab: Lab) -> list[Tally]:
    """Redis killed with ``kill -9`` under load and started again from its AOF."""
    return await _store_outage(lab, kill=True)


@scenario("split-backends")
async def split_backends(lab: Lab) -> list[Tally]:
    """#15 item 4: two replicas share a Redis and the model id, each with its own backend."""
    server = lab.redis()
    first, second = lab.backends()
    store = ("--no-auth", "--redis-url", server.url, "--queue-timeout", "30")
    a, b = lab.gateway([first], *store), lab.gateway([second], *store)
    tally = Tally("split backends, 2 replicas")
    await flood(tally, [a.url, b.url], clients=16, count=240, seconds=20)
    client = redis.Redis(port=server.port)
    leftover = sum(client.zcard(k) for k in client.keys("lg:{smollm2}:leases:*"))
    tally.notes["leases left after"] = str(leftover)
    tally.expect_clean()
    tally.expect(leftover == 0, f"{leftover} leases left taken")
    return [tally]


@scenario("replica-kill")
async def replica_kill(lab: Lab) -> list[Tally]:
    """#15 item 5: one of two replicas killed with ``kill -9`` while both have waiters queued;
    its in-flight requests are cut (lost, as the client sees them), the survivor's requests
    must all end well — served once the dead replica's slots lapse (lease TTL 5 s here). Slots
    the survivor frees may go to the dead replica's waiters (queued first) only until its
    record lapses, half the lease TTL after its last script; none may go to them later."""
    server = lab.redis()
    ttl = 5.0
    store = ("--no-auth", "--redis-url", server.url, "--lease-ttl", f"{ttl:g}")
    store += ("--queue-timeout", "30")
    long = {"model": "smollm2", "max_tokens": 48, "messages": [{"role": "user", "content": "Hi"}]}
    doomed = lab.gateway(lab.backends(), *store)
    client = redis.Redis(port=server.port)
    warm = asyncio.create_task(
        flood(Tally("warm-up"), [doomed.url], clients=12, count=12, seconds=60, body=long)
    )
    # The doomed replica's id, from one of its queued waiters (the only replica so far).
    await until(lambda: bool(client.keys("lg:{smollm2}:w:*")), timeout=60)
    (waiter, *_) = client.keys("lg:{smollm2}:w:*")
    mailbox = f"lg:grants:{client.hget(waiter, 'replica').decode()}"
    await warm
    survivor = lab.gateway(lab.backends(), *store)
    killed, kept = Tally("replica kill -9: killed one"), Tally("replica kill -9: survivor")
    dead = asyncio.Event()  # its clients stop sending once it is gone; those in flight are cut
    loads = [
        asyncio.create_task(
            flood(killed, [doomed.url], clients=10, count=60, seconds=30, body=long, stop=dead)
        ),
        asyncio.create_task(
            flood(kept, [survivor.url], clients=10, count=80, seconds=30, body=long)
        ),
    ]
    await until(lambda: killed.succeeded >= 4 and kept.succeeded >= 4, timeout=60)
    assert doomed.process is not None
    doomed.process.kill()  # kill -9: its leases and its queued waiters stay in Redis
    killed_at = time.monotonic()
    dead.set()
    # Grants posted to the dead replica's mailbox (#15 item 5), and when the last one came;
    # the survivor takes unread ones back (the mailbox empties), so count each rise.
    to_the_dead, last_at, seen = 0, killed_at, 0
    while not loads[1].done():
        posted = int(client.llen(mailbox))
        if posted > seen:
            to_the_dead, last_at = to_the_dead + posted - seen, time.monotonic()
        seen = posted
        await asyncio.sleep(0.02)
    await asyncio.gather(*loads)
    alive = min(ALIVE_FOR, ttl / 2)  # how long its record outlives its last script
    late = last_at - killed_at
    taken_back = sum(int(n) for n in re.findall(r"left (\d+) grants unread", survivor.log()))
    kept.notes["grants posted to the dead replica"] = f"{to_the_dead}" + (
        f", the last {late:.1f} s after the kill; taken back by the survivor: {taken_back}"
        if to_the_dead
        else ""
    )
    kept.notes["survivor's slowest request"] = f"{kept.slowest:.1f} s (lease TTL {ttl:g} s)"
    killed.notes["lost"] = "its requests in flight at the kill (cut, as expected)"
    kept.expect_clean()
    kept.expect(
        late <= alive + 0.3,
        f"a slot was granted to the dead replica's waiters {late:.1f} s after the kill, "
        f"though its record lapses {alive:g} s after its last script",
    )
    kept.expect(
        taken_back >= to_the_dead,
        f"{to_the_dead - taken_back} grants to the dead replica were left to lapse, not taken back",
    )
    return [killed, kept]


@scenario("sentinel-failover")
async def sentinel_failover(lab: Lab) -> list[Tally]:
    """#15 item 13: ``kill -9`` of the Redis primary under load, the gateway on
    ``redis+sentinel://``: only 503s with Retry-After while the Sentinels promote the replica;
    the key and its budget intact after; no backend sent more requests than its slots."""
    deployment = lab.sentinels()
    backends = lab.backends()
    store = ("--redis-url", deployment.url, "--queue-timeout", "10", "--admin-token", ADMIN)
    gw = lab.gateway(backends, *store)
    headers = {"Authorization": f"Bearer {lab.create_key(gw, name='ha', monthly_tokens=10**9)}"}
    tally = Tally("sentinel failover")
    deferred = 0.0
    stop = asyncio.Event()

    async def watch() -> None:
        nonlocal deferred
        while not stop.is_set():
            for backend in backends:
                with contextlib.suppress(httpx.HTTPError, KeyError):
                    reading = await asyncio.to_thread(backend.metric, "requests_deferred")
                    deferred = max(deferred, reading)
            await asyncio.sleep(0.02)

    watcher = asyncio.create_task(watch())
    load = asyncio.create_task(
        flood(tally, [gw.url], clients=12, count=300, seconds=15, headers=headers, pause=0.05)
    )
    await until(lambda: tally.succeeded >= 20, timeout=30)
    left_before = await _budget_left(gw.url, headers)
    await asyncio.to_thread(deployment.kill_primary)
    killed_at = time.monotonic()
    await asyncio.to_thread(deployment.wait_failover)
    tally.notes["promoted after"] = f"{time.monotonic() - killed_at:.1f} s"
    await load
    stop.set()
    await watcher
    left_after = await _budget_left(gw.url, headers)
    tally.notes["budget left before/after"] = f"{left_before}/{left_after}"
    tally.notes["requests deferred by llama-server (peak)"] = f"{deferred:g}"
    tally.expect_clean(503)
    tally.expect(
        left_after is not None and left_before is not None and left_after < left_before,
        "the key's budget use did not survive",
    )
    tally.expect(deferred == 0, "a backend was sent more requests than slots")
    return [tally]


async def _budget_left(url: str, headers: dict[str, str]) -> int | None:
    async with httpx.AsyncClient(timeout=60) as client:
        for _ in range(50):
            answer = await client.post(
                f"{url}/v1/chat/completions",
                json={
                    "model": "smollm2",
                    "max_tokens": 2,
                    "messages": [{"role": "user", "content": "Hi"}],
                },
                headers=headers,
            )
            if answer.status_code == 200:
                return int(answer.headers["x-ratelimit-remaining-tokens-monthly"])
            await asyncio.sleep(0.2)
    return None
