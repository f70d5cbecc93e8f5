"""Overload: offered load at twice what the pool can serve, from two API keys of equal weight
(created through the admin API), one of them flooding.

The pool is emulated so that its capacity is known exactly: ``backends`` emulators with
``slots`` slots each, every answer ``tokens`` tokens ``token_delay`` apart, so the pool serves
``backends x slots / (tokens x token_delay)`` requests/s. The light key offers half of its
equal share (a quarter of the capacity), the heavy key the rest of twice the capacity (1.75x).
Light means under its share: a key that asks for exactly its share is, in its own fair queue,
at 100% utilisation, where waits grow without bound under any scheduler; one under it is
owed near-unloaded latency however hard the other floods. Fairness is judged against the
max-min fair allocation (light: all it asks; heavy: the rest of the capacity) — Jain's index
over each key's served tokens divided by its fair share. Arrivals are open loop at constant
spacing; every request is bounded by a client timeout.

It runs once with each store — ``memory://`` (the default, one process) and ``redis://`` (a
``redis-server`` the harness starts) — as the gateway's own CPU per request differs between
them. First the light key runs alone (its unloaded latency), then both together. Every request
sent must end — success, 429 or 503; anything else (another 5xx, a connection error, a client
timeout, a lost request) is counted and reported as a failure.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import msgspec

from loadtest import load, plots
from loadtest.procs import Emulator, Gateway, RedisServer
from loadtest.progress import bar
from loadtest.report import ScenarioResult, Target, fmt
from loadtest.stats import jain, summary

ADMIN_TOKEN = "loadtest-admin"
ACCEPTED_REFUSALS = ("429", "503")


@dataclass(frozen=True)
class Size:
    backends: int
    slots: int
    tokens: int
    token_delay: float
    unloaded_seconds: float
    overload_seconds: float
    queue_size: int
    queue_timeout: float

    @classmethod
    def of(cls, smoke: bool) -> Size:
        if smoke:
            return cls(1, 2, 10, 0.01, 2.0, 3.0, 8, 2.0)
        return cls(2, 4, 32, 0.005, 20.0, 40.0, 32, 5.0)

    @property
    def capacity(self) -> float:
        """Requests/s the pool serves."""
        return self.backends * self.slots / (self.tokens * self.token_delay)


def _request(url: str, key: str, label: str, tokens: int) -> load.Request:
    body = {
        "model": "emulated",
        "max_tokens": tokens,
        "messages": [{"role": "user", "content": f"A request from {label}."}],
    }
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    return load.Request(
        f"{url}/v1/chat/completions", msgspec.json.encode(body), headers, label=label
    )


async def _offer(
    url: str, keys: dict[str, str], rates: dict[str, float], size: Size, seconds: float, desc: str
) -> dict[str, list[load.Sample]]:
    timeout = size.queue_timeout + size.tokens * size.token_delay + 20
    total = sum(int(r * seconds) for r in rates.values())
    with bar(desc, total) as tick:
        runs = await asyncio.gather(
            *(
                load.open_loop(
                    lambda i, n=name: _request(url, keys[n], n, size.tokens),
                    rate=rate,
                    duration=seconds,
                    timeout=timeout,
                    progress=tick,
                )
                for name, rate in rates.items()
            )
        )
    return dict(zip(rates, runs, strict=True))


def _key_report(samples: list[load.Sample], sent: int, seconds: float) -> dict:
    ok = [s for s in samples if s.outcome == "ok"]
    tokens = sum((s.usage or {}).get("total_tokens", 0) for s in ok)
    outcomes = Counter(s.outcome for s in samples)
    return {
        "sent": sent,
        "ended": len(samples),
        "outcomes": dict(outcomes),
        "goodput_rps": round(len(ok) / seconds, 2),
        "served_tokens": tokens,
        "latency_ms": summary([s.latency for s in ok]),
        "refusal_latency_ms": summary(
            [s.latency for s in samples if s.outcome in ACCEPTED_REFUSALS and s.latency]
        ),
    }


async def run(out: Path, *, smoke: bool) -> ScenarioResult:
    size = Size.of(smoke)
    share = size.capacity / 4  # half the light key's equal share
    rates = {"light": share, "heavy": 2 * size.capacity - share}
    fair = {"light": share / size.capacity, "heavy": 1 - share / size.capacity}
    emulators = [
        Emulator(
            alias="emulated", slots=size.slots, tokens=size.tokens, token_delay=size.token_delay
        )
        for _ in range(size.backends)
    ]
    redis = RedisServer()
    runs: dict[str, tuple[dict, dict]] = {}
    try:
        for emulator in emulators:
            emulator.start()
        redis.start()
        extra = (
            "--queue-size",
            str(size.queue_size),
            "--queue-timeout",
            str(size.queue_timeout),
            "--probe-interval",
            "1",
        )
        for store, url in (("memory://", "memory://"), ("redis://", redis.redis_url)):
            backends = [e.url for e in emulators]
            with Gateway(
                backends, admin_token=ADMIN_TOKEN, extra=(*extra, "--redis-url", url)
            ) as gw:
                keys = {name: gw.create_key(f"overload-{name}") for name in rates}
                unloaded = await _offer(
                    gw.url,
                    keys,
                    {"light": share},
                    size,
                    size.unloaded_seconds,
                    f"overload ({store}): light key alone",
                )
                loaded = await _offer(
                    gw.url, keys, rates, size, size.overload_seconds, f"overload ({store}): both"
                )
            runs[store] = (unloaded, loaded)
    finally:
        for process in (*emulators, redis):
            process.stop()

    result = ScenarioResult(
        "overload", {**size.__dict__, "capacity_rps": size.capacity}, {"stores": {}}
    )
    sections = []
    for store, (unloaded, loaded) in runs.items():
        results = _results(size, rates, fair, unloaded, loaded)
        result.results["stores"][store] = results
        latencies = {
            "light alone": [s.latency for s in unloaded["light"] if s.outcome == "ok"],
            **{
                f"{n} (overload)": [s.latency for s in loaded[n] if s.outcome == "ok"]
                for n in rates
            },
        }
        name = store.removesuffix("://")
        result.plots += plots.overload(
            out, results["keys"], latencies, suffix=f"-{name}", title=f"overload, {store}"
        )
        result.targets += _targets(results, store)
        sections.append(f"### {store}\n\n" + _markdown(results))
        light = results["keys"]["light"]["outcomes"]
        if light.get("429"):
            result.notes.append(
                f"{store}: the light key was refused {light['429']} times with 429 (queue "
                "full). A full queue refuses the newest waiter of the key holding the most "
                "(`gateway/store/admission_acquire.lua`), so these refusals come when the light "
                "key's own waiters are as many as the flood's: the pool (or the gateway's core) "
                "could not serve even the light key's demand at this rate."
            )
    result.markdown = "\n\n".join([_setup(size, rates), *sections])
    return result


def _results(size: Size, rates: dict, fair: dict, unloaded: dict, loaded: dict) -> dict:
    """One store's run: per key, how requests ended, latency, served share; fairness."""
    alone = _key_report(
        unloaded["light"], int(rates["light"] * size.unloaded_seconds), size.unloaded_seconds
    )
    per_key = {
        name: _key_report(
            loaded[name], max(1, int(rate * size.overload_seconds)), size.overload_seconds
        )
        for name, rate in rates.items()
    }
    total_served = sum(per_key[n]["served_tokens"] for n in rates) or 1
    for name in rates:
        per_key[name]["served_token_share"] = round(
            per_key[name]["served_tokens"] / total_served, 4
        )
        per_key[name]["fair_share"] = round(fair[name], 4)
    everything = [s for run in loaded.values() for s in run] + unloaded["light"]
    counts = Counter(s.outcome for s in everything)
    sent = alone["sent"] + sum(k["sent"] for k in per_key.values())
    goodput = sum(k["goodput_rps"] for k in per_key.values())
    return {
        "capacity_rps": size.capacity,
        "offered_rps": rates,
        "light_unloaded": alone,
        "keys": per_key,
        "goodput_rps": round(goodput, 2),
        "goodput_share_of_capacity": round(goodput / size.capacity, 3),
        "jain_served_tokens": jain(
            [per_key[n]["served_tokens"] / total_served / fair[n] for n in rates]
        ),
        "sent": sent,
        "ended": len(everything),
        "lost": sent - len(everything),
        "hung": counts.get("timeout", 0),
        "failed_otherwise": {
            o: n for o, n in counts.items() if o not in ("ok", *ACCEPTED_REFUSALS)
        },
    }


def _targets(r: dict, store: str) -> list[Target]:
    p99 = r["keys"]["light"]["latency_ms"]["p99"]
    base = r["light_unloaded"]["latency_ms"]["p99"]
    ratio = round(p99 / base, 2) if p99 and base else None
    j = r["jain_served_tokens"]
    broken = r["lost"] + r["hung"] + sum(r["failed_otherwise"].values())
    return [
        Target(f"lost + hung + other failures ({store})", "0", broken, broken == 0),
        Target(
            f"Jain's index over served-token shares / fair shares ({store})",
            "≥ 0.95",
            j,
            None if j is None else j >= 0.95,
        ),
        Target(
            f"light key p99 under overload / unloaded p99 ({store})",
            "≤ 2x",
            ratio,
            None if ratio is None else ratio <= 2,
        ),
    ]


def _setup(size: Size, rates: dict) -> str:
    return (
        f"Pool: {size.backends} emulated backends x {size.slots} slots, {size.tokens} tokens "
        f"x {size.token_delay * 1000:g} ms per answer → capacity {fmt(size.capacity)} req/s. "
        f"Offered {fmt(rates['light'])} req/s (light) + {fmt(rates['heavy'])} req/s (heavy) = "
        f"2x capacity, for {size.overload_seconds:g} s; gateway `--queue-size "
        f"{size.queue_size} --queue-timeout {size.queue_timeout:g}`, auth on, both keys "
        "weight 1; once with each store, one after the other, on the same emulators."
    )


def _markdown(r: dict) -> str:
    lines = [
        f"Goodput {fmt(r['goodput_rps'])} req/s ({fmt(r['goodput_share_of_capacity'])} of "
        f"capacity); sent {r['sent']}, ended {r['ended']}, lost {r['lost']}, hung {r['hung']}, "
        f"other failures {r['failed_otherwise'] or 0}; "
        f"Jain's index {fmt(r['jain_served_tokens'])}.",
        "",
        "| key | offered req/s | sent | ok | 429 | 503 | other | goodput req/s | token share | "
        "fair share | p50 | p99 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    rows = [("light alone", r["light_unloaded"], r["offered_rps"]["light"])]
    rows += [(n, k, r["offered_rps"][n]) for n, k in r["keys"].items()]
    for name, k, rate in rows:
        o = k["outcomes"]
        other = sum(v for x, v in o.items() if x not in ("ok", "429", "503"))
        lines.append(
            f"| {name} | {fmt(rate)} | {k['sent']} | {o.get('ok', 0)} | {o.get('429', 0)} | "
            f"{o.get('503', 0)} | {other} | {fmt(k['goodput_rps'])} | "
            f"{fmt(k.get('served_token_share'))} | {fmt(k.get('fair_share'))} | "
            f"{fmt(k['latency_ms']['p50'])} | "
            f"{fmt(k['latency_ms']['p99'])} |"
        )
    return "\n".join(lines)
