"""``python -m loadtest.ab [--rounds N] [--seconds S] [--store redis|memory] TREE[:FLAGS]…``:
which of several gateway trees spends less of its core per request.

Each contender is a source tree (a ``git worktree`` of another commit, or this checkout),
started as ``make bench`` starts a gateway (``loadtest.procs.Gateway``, pinned to its core,
with this venv's Python and the tree's own ``gateway`` package) in front of one emulator
(128 slots, 16 tokens) and, for ``redis://``, one Redis. ``wrk`` loads one contender at a
time; the contenders take turns, in alternating order, for ``--rounds`` rounds. The figure
is the gateway process's CPU time per request answered (``/proc/PID/stat``), median over the
rounds: on a shared VM it moves far less than requests/s do. ``FLAGS``, comma-separated:
``nolimits`` (a key without limits: no limits script), ``leastbusy`` (``--routing
least-busy``: no affinity lookup), to see what a part of the path costs::

    git worktree add /tmp/base HEAD~1
    python -m loadtest.ab --rounds 5 /tmp/base . .:nolimits,leastbusy

For changes worth a few percent, put both trees under ``/tmp`` (``git worktree add /tmp/new
HEAD`` too): on a noisy VM, a tree there against this checkout read up to 20% apart for code
that differed by microseconds (``loadtest/results/ab-2026-12-03-edge.md``).

``--one-connection`` measures latency instead: ``wrk -c1``, the median time a request takes
through each tree (the overhead scenario's one-connection step), median over the rounds.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from loadtest import load
from loadtest.procs import Emulator, Gateway, RedisServer, pin_self
from loadtest.scenarios.overhead_setup import ADMIN_TOKEN, HIGH_LIMITS, chat, cpu_seconds

FLAGS = {"nolimits", "leastbusy"}


@dataclass
class Contender:
    tree: Path
    flags: frozenset[str]
    label: str
    #: (requests/s, CPU ms per request, p50 latency ms) per round.
    rounds: list[tuple[float, float, float]] = field(default_factory=list)

    @classmethod
    def parse(cls, spec: str) -> Contender:
        tree, _, flags = spec.partition(":")
        named = frozenset(f for f in flags.split(",") if f)
        if named - FLAGS:
            raise SystemExit(f"unknown flags {sorted(named - FLAGS)}; known: {sorted(FLAGS)}")
        if not (Path(tree) / "gateway" / "__init__.py").exists():
            raise SystemExit(f"{tree} is no gateway source tree")
        return cls(Path(tree).resolve(), named, spec)


class TreeGateway(Gateway):
    """A gateway started from another source tree (its ``gateway`` package comes first on
    the path: ``python -m`` puts the working directory there)."""

    def __init__(self, tree: Path, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.cwd = tree


def measure(
    contender: Contender, emulator: str, store: list[str], seconds: float, connections: int
) -> None:
    extra = ("--queue-size", "4096", "--probe-interval", "2", *store)
    if "leastbusy" in contender.flags:
        extra += ("--routing", "least-busy")
    with TreeGateway(contender.tree, [emulator], admin_token=ADMIN_TOKEN, extra=extra) as gateway:
        limits = {} if "nolimits" in contender.flags else HIGH_LIMITS
        key = gateway.create_key("ab", **limits)
        request = chat(gateway.url, "emulated", stream=False, max_tokens=16, key=key, label="ab")
        load.wrk(request.url, request.body, request.headers, connections=64, duration=2)  # warm
        cpu, started = cpu_seconds(gateway.pid), time.perf_counter()
        result = load.wrk(
            request.url, request.body, request.headers, connections=connections, duration=seconds
        )
        used, elapsed = cpu_seconds(gateway.pid) - cpu, time.perf_counter() - started
    rate = result["requests_per_s"] or 0.0
    answered = rate * elapsed - result["non_2xx"]
    if answered <= 0:
        raise SystemExit(f"{contender.label} answered nothing; its log: {gateway.log_tail()}")
    cost = 1000 * used / answered
    contender.rounds.append((rate, cost, result.get("p50_ms", math.nan)))
    print(
        f"  {contender.label}: {rate:,.0f} req/s, {cost:.3f} ms a request, "
        f"p50 {result.get('p50_ms', math.nan):.3f} ms"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.ab", description=__doc__)
    parser.add_argument("trees", nargs="+", metavar="TREE[:FLAGS]")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0, help="wrk's run per contender")
    parser.add_argument("--store", choices=("redis", "memory"), default="redis")
    parser.add_argument(
        "--one-connection", action="store_true", help="wrk -c1: compare latency (p50)"
    )
    args = parser.parse_args(argv)
    contenders = [Contender.parse(spec) for spec in args.trees]
    if not load.have_wrk():
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    connections = 1 if args.one_connection else 64
    pin_self()
    with Emulator(alias="emulated", slots=128, tokens=16) as emulator, RedisServer() as redis:
        store = ["--redis-url", redis.redis_url] if args.store == "redis" else []
        for n in range(args.rounds):
            print(f"round {n + 1} of {args.rounds}")
            for contender in contenders if n % 2 == 0 else contenders[::-1]:
                measure(contender, emulator.url, store, args.seconds, connections)
    print(f"\nmedians over {args.rounds} rounds, {args.store}://, {connections} connection(s)")
    for c in contenders:
        rate = statistics.median(r for r, _, _ in c.rounds)
        cost = statistics.median(ms for _, ms, _ in c.rounds)
        p50 = statistics.median(p for _, _, p in c.rounds)
        print(f"  {c.label}: {cost:.3f} ms a request, {rate:,.0f} req/s, p50 {p50:.3f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
