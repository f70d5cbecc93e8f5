"""``python -m loadtest.timeline [--store redis|memory] [--seconds S]``: where the time of
one request goes, step by step, at one connection (``wrk -c1``) — the overhead scenario's
latency step, taken apart.

The gateway runs as ``make bench`` runs it (pinned to its core, in front of the emulator, a
real key with rpm/tpm limits, leases, affinity routing) but started through
``loadtest.timeline_marks``, which reads the clock at each step of the path (a wrapper
around the gateway's own functions: together they add ~0.06 ms to wrk's p50, read against
the plain gateway in alternating rounds). The table gives each step's median time since the
step before it. Beside it, for scale: the relay floor's median at one connection
(the HTTP stack alone: ``loadtest/floor.py``) and a bare ``PING`` to the store's Redis from
the gateway's core at the same pace — the least a round trip before the send can cost here.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from loadtest import load
from loadtest.procs import GATEWAY_CORES, Emulator, Gateway, RedisServer, RelayFloor, pin_self
from loadtest.scenarios.overhead_setup import ADMIN_TOKEN, HIGH_LIMITS, chat
from loadtest.timeline_marks import STEPS


class MarkedGateway(Gateway):
    """The gateway started through ``loadtest.timeline_marks``, writing to ``timelines``."""

    def __init__(self, timelines: Path, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        at = self.args.index("gateway")
        self.args[at] = "loadtest.timeline_marks"
        self.env["LLAMA_GATEWAY_TIMELINE"] = str(timelines)


def read_timelines(lines: list[str], *, since_ns: int = 0) -> list[dict[str, float]]:
    """The timelines (step -> µs since the start) of the requests that started after
    ``since_ns`` (``time.perf_counter_ns()``: the warm-up's are left out)."""
    timelines = []
    for line in lines:
        started, *steps = line.split()
        if int(started) >= since_ns:
            timelines.append({s: float(t) for s, _, t in (p.partition(":") for p in steps)})
    return timelines


def steps_table(timelines: list[dict[str, float]]) -> list[tuple[str, str, float, float]]:
    """(step, what ends it, median µs since the step before, median µs since the start) for
    each step every timeline has."""
    rows, previous = [], None
    for step, what in STEPS:
        if not timelines or not all(step in t for t in timelines):
            continue
        since = statistics.median(t[step] - t[previous] for t in timelines) if previous else 0.0
        rows.append((step, what, since, statistics.median(t[step] for t in timelines)))
        previous = step
    return rows


def ping_round_trip(url: str, *, count: int = 2000, pause: float = 0.0007) -> float:
    """Median µs of a redis-py ``PING`` from the gateway's core, one every ``pause`` s (about
    the pace of one connection's requests: both processes idle between them)."""
    import redis

    mine = os.sched_getaffinity(0)
    if GATEWAY_CORES is not None:
        os.sched_setaffinity(0, {int(GATEWAY_CORES)})
    client = redis.Redis.from_url(url)
    try:
        took = []
        for _ in range(count):
            started = time.perf_counter()
            client.ping()
            took.append(time.perf_counter() - started)
            time.sleep(pause)
        return statistics.median(took) * 1e6
    finally:
        client.close()
        os.sched_setaffinity(0, mine)


def _one_connection(request: load.Request, seconds: float) -> tuple[int, dict]:
    """wrk -c1 for ``seconds`` after two seconds of warm-up (connections, caches): when the
    measured run began (``time.perf_counter_ns()``), and wrk's figures."""
    load.wrk(request.url, request.body, request.headers, connections=1, duration=2)
    began = time.perf_counter_ns()
    return began, load.wrk(
        request.url, request.body, request.headers, connections=1, duration=seconds
    )


def measure(
    emulator: Emulator, redis_url: str, floor_url: str | None, *, store: str, seconds: float
) -> dict:
    """The step-by-step table of a request at one connection through a marked gateway on
    ``store`` (redis or memory), in front of ``emulator``; a bare ``PING`` to ``redis_url``
    at the same pace beside it, and the relay floor at ``floor_url`` unless the caller
    measured it already (``None``), for scale."""
    with tempfile.TemporaryDirectory() as tmp:
        timelines = Path(tmp) / "timelines"
        on_redis = ("--redis-url", redis_url) if store == "redis" else ()
        extra = ("--queue-size", "4096", "--probe-interval", "2", *on_redis)
        with MarkedGateway(timelines, [emulator.url], admin_token=ADMIN_TOKEN, extra=extra) as gw:
            key = gw.create_key("timeline", **HIGH_LIMITS)
            request = chat(gw.url, emulator.alias, stream=False, max_tokens=16, key=key, label="t")
            measured_from, marked = _one_connection(request, seconds)
        # (the gateway writes the last of its timelines as it exits)
        lines = timelines.read_text().splitlines() if timelines.exists() else []
    measured = read_timelines(lines, since_ns=measured_from)
    if not measured:
        raise RuntimeError(f"the marked gateway wrote no timelines (wrk: {marked})")
    relay: dict = {}
    if floor_url is not None:
        plain = chat(floor_url, emulator.alias, stream=False, max_tokens=16, key=None, label="f")
        _, relay = _one_connection(plain, seconds)
    return {
        "store": store,
        "requests": len(measured),
        "steps": [
            {"step": step, "ends_when": what, "since_before_us": since, "since_start_us": at}
            for step, what, since, at in steps_table(measured)
        ],
        "gateway_p50_ms": marked.get("p50_ms"),
        "floor_p50_ms": relay.get("p50_ms"),
        "ping_us": ping_round_trip(redis_url),
    }


def markdown(result: dict) -> list[str]:
    lines = [
        "| step | ends when | µs since the step before | µs since the start |",
        "|---|---|---|---|",
    ]
    for row in result["steps"]:
        lines.append(
            f"| `{row['step']}` | {row['ends_when']} | {row['since_before_us']:.0f} "
            f"| {row['since_start_us']:.0f} |"
        )
    floor = result["floor_p50_ms"]
    lines += [
        "",
        f"{result['store']}://, one connection, {result['requests']} requests. wrk's p50"
        f" through the marked gateway: {result['gateway_p50_ms']} ms;"
        + (f" through the relay floor: {floor} ms;" if floor is not None else "")
        + f" a bare PING to Redis from the gateway's core at that pace:"
        f" {result['ping_us']:.0f} µs.",
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.timeline", description=__doc__)
    parser.add_argument("--store", choices=("redis", "memory"), default="redis")
    parser.add_argument("--seconds", type=float, default=8.0, help="wrk -c1's run")
    args = parser.parse_args(argv)
    if not load.have_wrk():
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    pin_self()
    with (
        Emulator(alias="emulated", slots=128, tokens=16) as emulator,
        RedisServer() as redis_server,
        RelayFloor(emulator.url) as floor,
    ):
        try:
            result = measure(
                emulator, redis_server.redis_url, floor.url, store=args.store, seconds=args.seconds
            )
        except RuntimeError as exc:
            raise SystemExit(str(exc)) from None
    print("\n".join(markdown(result)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
