"""The store's share of a request, in process: what one request's script calls cost the
gateway's core on ``memory://`` (the embedded store, ``gateway/store/embedded/``) against
``redis://`` — and, where fakeredis is installed (it is no dependency any more), against
stock fakeredis as ``memory://`` was before either (``--stores fakeredis,memory,redis``).

One *request* here is the store traffic of one request through the gateway, made with the
gateway's own store classes: the limits admit script, the lease's acquire script, then the
limits settlement and the lease's release in one pipeline — four scripts, three round trips
(the request path now sends the first two in one when a slot is free: the scripts' cost, what
this measures, is the same).
Each round runs every store for ``--requests`` requests, ``--concurrency`` at a time, the
stores in a rotated order, so the machine's load (other processes share it) falls on all of
them alike; the figures are the medians over the rounds.

- ``cpu µs``: this process's CPU time per request — the gateway's core. For ``redis://`` the
  scripts themselves run in ``redis-server``, on the other core (as in ``make bench``); its
  CPU per request is ``server µs``, from ``INFO cpu``.
- ``wall µs``: elapsed time per request (at concurrency 1, one request's store latency).

``python -m loadtest.store_bench [--rounds 5] [--requests 2000] [--concurrency 1]
[--stores memory,redis]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as redis

from gateway.store.admission import AdmissionStore
from gateway.store.apikeys import ApiKey
from gateway.store.commands import run
from gateway.store.connection import POOL_SIZE, POOL_WAIT, WaitingConnectionPool, connect
from gateway.store.limits import Limiter
from loadtest.procs import GATEWAY_CORES, RedisServer

#: Limits that never refuse: every script runs its whole course.
KEY = ApiKey(
    id="bench",
    name="bench",
    created=0,
    rpm=10**9,
    tpm=10**9,
    max_concurrency=10**6,
    daily_tokens=10**12,
    monthly_tokens=10**12,
)
CANDIDATES = [("127.0.0.1:9001", 10**6), ("127.0.0.1:9002", 10**6)]


class Store:
    """One store under test: a client and the gateway's scripts registered on it."""

    def __init__(self, name: str, client: redis.Redis, server_cpu: Callable[[], Any]) -> None:
        self.name = name
        self.client = client
        self.server_cpu = server_cpu
        self.limiter = Limiter(client)
        self.admission = AdmissionStore(client, lease_ttl=60, grant_ttl=40)
        self.serial = 0

    async def request(self) -> None:
        self.serial += 1
        waiter = f"w{self.serial}"
        state = await self.limiter.admit(KEY, 100)
        reply = await self.admission.acquire(
            "bench",
            key_id=KEY.id,
            waiter=waiter,
            replica="bench",
            weight=1.0,
            cost=1,
            priority=0,
            timeout=10.0,
            bound=10**6,
            exclude=[],
            candidates=CANDIDATES,
        )
        if reply.backend is None:
            raise RuntimeError(f"no lease granted: {reply.status}")
        # The settlement and the release in one round trip, as the request path sends them.
        _settled, released = await run(
            self.client,
            self.limiter.settle(KEY, 100, 80, request_id=state.request_id),
            self.admission.release("bench", reply.backend, waiter, CANDIDATES),
        )
        if isinstance(released, Exception):
            raise released


def stock_fakeredis() -> redis.Redis:
    """``memory://`` as ``connect`` made it before the embedded store: stock fakeredis."""
    from fakeredis import FakeServer, aioredis  # installed by hand: no dependency

    return aioredis.FakeRedis(
        server=FakeServer(),
        decode_responses=False,
        connection_pool_class=WaitingConnectionPool,
        max_connections=POOL_SIZE,
        timeout=POOL_WAIT,
    )


async def no_server_cpu() -> float:
    return 0.0


def redis_cpu(client: redis.Redis) -> Callable[[], Any]:
    async def used() -> float:
        info = await client.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    return used


async def measure(store: Store, requests: int, concurrency: int) -> dict[str, float]:
    async def worker(count: int) -> None:
        for _ in range(count):
            await store.request()

    shares = [requests // concurrency + (i < requests % concurrency) for i in range(concurrency)]
    server_before = await store.server_cpu()
    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker(n) for n in shares))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    server = await store.server_cpu() - server_before
    return {
        "cpu_us": cpu / requests * 1e6,
        "wall_us": wall / requests * 1e6,
        "server_us": server / requests * 1e6,
        "req_s": requests / wall,
    }


async def bench(rounds: int, requests: int, concurrency: int, names: list[str]) -> None:
    server = RedisServer().start() if "redis" in names else None
    try:
        made: dict[str, Callable[[], Store]] = {
            "fakeredis": lambda: Store("fakeredis", stock_fakeredis(), no_server_cpu),
            "memory": lambda: Store("memory", connect("memory://"), no_server_cpu),
        }
        if server is not None:
            url = server.redis_url
            made["redis"] = lambda: Store("redis", c := connect(url), redis_cpu(c))
        stores = [made[name]() for name in names]
        for store in stores:  # warm: scripts loaded, compiled, connections open
            await measure(store, min(200, requests), concurrency)
        results: dict[str, list[dict[str, float]]] = {s.name: [] for s in stores}
        for i in range(rounds):
            order = stores[i % len(stores) :] + stores[: i % len(stores)]
            for store in order:
                results[store.name].append(await measure(store, requests, concurrency))
            print(
                f"round {i + 1}: "
                + ", ".join(f"{n} {r[-1]['cpu_us']:.0f} µs cpu" for n, r in results.items()),
                flush=True,
            )
        report(results, concurrency)
        for store in stores:
            await store.client.aclose()
    finally:
        if server is not None:
            server.stop()


def report(results: dict[str, list[dict[str, float]]], concurrency: int) -> None:
    median = {
        name: {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        for name, runs in results.items()
    }
    print(f"\nconcurrency {concurrency}, medians of {len(next(iter(results.values())))} rounds")
    print("| store | cpu µs/request | server µs/request | wall µs/request | requests/s |")
    print("|---|---:|---:|---:|---:|")
    for name, m in median.items():
        print(
            f"| {name} | {m['cpu_us']:.0f} | {m['server_us']:.0f} | {m['wall_us']:.0f} "
            f"| {m['req_s']:.0f} |"
        )
    if "redis" in median:
        for name in ("fakeredis", "memory"):
            if name in median:
                ratio = median[name]["cpu_us"] / median["redis"]["cpu_us"]
                print(f"{name}/redis cpu per request on the gateway's core: {ratio:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--stores", default="memory,redis")
    args = parser.parse_args()
    if GATEWAY_CORES is not None:
        os.sched_setaffinity(0, {int(GATEWAY_CORES)})  # the gateway's core, as in make bench
    asyncio.run(bench(args.rounds, args.requests, args.concurrency, args.stores.split(",")))


if __name__ == "__main__":
    main()
