"""``python -m loadtest.store_app_cpu``: the whole gateway's CPU per request on ``memory://``
against ``redis://`` — what ``loadtest/results/memory-store.md`` quotes "through the app".

Each run starts ``llama-gateway serve`` as a user would, pinned to its own core, in front of
the emulator (128 slots, 16 tokens an answer), with a key whose rpm/tpm limits never refuse
(so every limits and lease script runs), warms it for 3 s, then drives it with a closed loop
of ``--connections`` clients for ``--seconds``; the gateway's CPU time is read from
``/proc/PID/stat`` before and after. The stores alternate run by run (``--runs`` each), so the
machine's other load falls on both alike; the medians are printed.

``python -m loadtest.store_app_cpu [--runs 3] [--seconds 12] [--connections 16]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics

from loadtest.procs import Emulator, Gateway, RedisServer, pin_self
from loadtest.profile_closed_loop import closed_loop

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of ``pid`` so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def one_run(emulator: Emulator, store_url: str, seconds: float, connections: int) -> dict:
    extra = ("--redis-url", store_url, "--queue-size", "4096", "--probe-interval", "2")
    with Gateway([emulator.url], admin_token="bench", extra=extra) as gateway:
        key = gateway.create_key("bench", rpm=10**6, tpm=10**9)
        asyncio.run(closed_loop(gateway.url, key, 3, connections))  # warm
        before = cpu_seconds(gateway.pid)
        rate = asyncio.run(closed_loop(gateway.url, key, seconds, connections))
        used = cpu_seconds(gateway.pid) - before
    return {"req_s": rate, "cpu_ms": used / (rate * seconds) * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    pin_self()
    results: dict[str, list[dict]] = {"memory://": [], "redis://": []}
    with Emulator(slots=128) as emulator, RedisServer() as redis:
        urls = {"memory://": "memory://", "redis://": redis.redis_url}
        for i in range(args.runs):
            order = list(urls) if i % 2 == 0 else list(reversed(urls))
            for store in order:
                run = one_run(emulator, urls[store], args.seconds, args.connections)
                results[store].append(run)
                print(f"run {i + 1} {store}: {run['cpu_ms']:.2f} ms CPU/request, "
                      f"{run['req_s']:.0f} req/s", flush=True)  # fmt: skip
    print("\n| gateway | CPU ms/request, runs | median | req/s, runs | median |")
    print("|---|---|---:|---|---:|")
    medians = {}
    for store, runs in results.items():
        cpu = [r["cpu_ms"] for r in runs]
        rate = [r["req_s"] for r in runs]
        medians[store] = statistics.median(cpu)
        print(
            f"| {store} | {', '.join(f'{c:.2f}' for c in cpu)} | {statistics.median(cpu):.2f} "
            f"| {', '.join(f'{r:.0f}' for r in rate)} | {statistics.median(rate):.0f} |"
        )
    print(
        f"memory:// / redis:// CPU per request: {medians['memory://'] / medians['redis://']:.2f}x"
    )


if __name__ == "__main__":
    main()
