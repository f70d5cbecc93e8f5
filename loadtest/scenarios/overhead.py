"""Overhead: the gateway against the same upstream reached directly.

Contenders, measured back to back per step: ``direct`` (the upstream itself),
``gateway-memory`` (auth with a real key, rpm/tpm limits set high on it, slot leases, the
default ``memory://`` store) and ``gateway-redis`` (the same on a ``redis-server`` the harness
starts). The gateways are pinned to one core; the emulator, Redis and the load generator share
the other(s).

Steps: added latency at fixed open-loop rates (streamed and not, and TTFT for streams); the
maximum sustained requests/s with ``wrk`` (closed loop), whose own ceiling is measured
against the emulator directly; the latency at one connection, and one such request taken
apart step by step (``loadtest/timeline.py``); streamed chunks/s relayed by the gateway's
one core; and the added latency over a real llama-server (requests alternated, one at a
time).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from loadtest import load, plots, timeline
from loadtest.procs import Emulator, Gateway, LlamaServer, RedisServer, RelayFloor, asset
from loadtest.progress import bar
from loadtest.report import ScenarioResult
from loadtest.scenarios import overhead_report, overhead_wrk
from loadtest.scenarios.overhead_setup import (
    ADMIN_TOKEN,
    HIGH_LIMITS,
    Contender,
    Size,
    answered,
    chat,
    cpu_seconds,
    failures,
    warm_up,
)
from loadtest.stats import added, summary

#: Enough slots that no request waits for one (the gateway's leases are measured, not its
#: queue), and as few as a big server has: the gateway scans a backend's slots per request.
EMULATOR_SLOTS = 128
#: The HTTP stack relaying with nothing else (``loadtest/floor.py``), measured beside.
FLOOR = "relay-floor"


async def _fixed_rates(contenders: list[Contender], model: str, size: Size, raw: dict) -> list:
    await warm_up(contenders, model, count=size.warm_up)
    rows = []
    total = sum(int(r * size.rate_seconds) for r in size.rates) * 2 * len(contenders)
    with bar("overhead: fixed rates", total) as tick:
        for stream in (False, True):
            for rate in size.rates:
                row: dict = {
                    "rate": rate,
                    "stream": stream,
                    "latency_ms": {},
                    "ttft_ms": {},
                    "not_ok": {},
                    "generator_late_p99_ms": {},
                }
                for c in contenders:

                    def make(i: int, c: Contender = c, stream: bool = stream) -> load.Request:
                        return chat(
                            c.url, model, stream=stream, max_tokens=16, key=c.key, label=c.name
                        )

                    samples = await load.open_loop(
                        make, rate=rate, duration=size.rate_seconds, timeout=30, progress=tick
                    )
                    ok = answered(samples)
                    row["latency_ms"][c.name] = summary([s.latency for s in ok])
                    if stream:
                        row["ttft_ms"][c.name] = summary([s.ttft for s in ok if s.ttft])
                    row["not_ok"][c.name] = failures(samples)
                    row.setdefault("outcomes", {})[c.name] = dict(
                        Counter(x.outcome for x in samples if x.outcome != "ok")
                    )
                    row["generator_late_p99_ms"][c.name] = summary([s.late for s in samples])["p99"]
                    raw[f"{'stream' if stream else 'whole'}-{rate}-{c.name}"] = [
                        s.latency for s in ok
                    ]
                direct = row["latency_ms"]["direct"]
                row["added_ms"] = {
                    c.name: added(row["latency_ms"][c.name], direct) for c in contenders[1:]
                }
                if stream:
                    row["ttft_added_ms"] = {
                        c.name: added(row["ttft_ms"][c.name], row["ttft_ms"]["direct"])
                        for c in contenders[1:]
                    }
                rows.append(row)
    return rows


async def _max_rps_aiohttp(contenders: list[Contender], model: str, size: Size) -> dict:
    """Without wrk: the aiohttp closed loop (a lower ceiling; reported as such)."""
    out: dict = {}
    for c in contenders:

        def make(i: int, c: Contender = c) -> load.Request:
            return chat(c.url, model, stream=False, max_tokens=16, key=c.key, label=c.name)

        samples, seconds = await load.closed_loop(
            make, concurrency=size.wrk_connections, duration=size.wrk_seconds
        )
        ok = answered(samples)
        lat = summary([s.latency for s in ok])
        out[c.name] = {
            "requests_per_s": round(len(ok) / seconds, 1),
            "requests": len(samples),
            "non_2xx": failures(samples),
            "p50_ms": lat["p50"],
            "p99_ms": lat["p99"],
        }
    return out


async def _relay(contenders: list[Contender], model: str, size: Size) -> dict:
    out: dict = {}
    with bar("overhead: stream relay", len(contenders), unit="run") as tick:
        for c in contenders:

            def make(i: int, c: Contender = c) -> load.Request:
                return chat(
                    c.url, model, stream=True, max_tokens=size.relay_tokens, key=c.key, label=c.name
                )

            cpu0 = cpu_seconds(c.pid) if c.pid else None
            samples, seconds = await load.closed_loop(
                make, concurrency=size.relay_streams, duration=size.relay_seconds, timeout=60
            )
            chunks = sum(s.chunks for s in samples)
            out[c.name] = {
                "chunks_per_s": round(chunks / seconds, 1),
                "streams": len(samples),
                "not_ok": failures(samples),
            }
            if cpu0 is not None:
                out[c.name]["gateway_cpu_share"] = round((cpu_seconds(c.pid) - cpu0) / seconds, 3)
            tick(1)
    return out


async def _real(size: Size) -> dict:
    """Direct vs gateway on a real llama-server: one request at a time, alternated."""
    binary = asset("llama-server", "LLAMA_SERVER_BIN")
    model_path = asset("model", "LLAMA_GATEWAY_TEST_MODEL")
    with (
        LlamaServer(binary, model_path) as server,
        Gateway([server.url], admin_token=ADMIN_TOKEN) as gateway,
    ):
        key = gateway.create_key("overhead-real", **HIGH_LIMITS)
        contenders = [Contender("direct", server.url, None), Contender("gateway", gateway.url, key)]
        result: dict = {}
        await warm_up(contenders, server.alias, count=3)
        async with load.session() as client:
            with bar("overhead: real llama-server", size.real_requests * 4) as tick:
                for stream in (False, True):
                    samples: dict[str, list[load.Sample]] = {c.name: [] for c in contenders}
                    for i in range(size.real_requests):
                        order = contenders if i % 2 == 0 else contenders[::-1]
                        for c in order:
                            r = chat(
                                c.url,
                                server.alias,
                                stream=stream,
                                max_tokens=size.real_tokens,
                                key=c.key,
                                label=c.name,
                            )
                            samples[c.name].append(await load.send(client, r, 120))
                            tick(1)
                    lat = {n: summary([s.latency for s in answered(v)]) for n, v in samples.items()}
                    entry = {
                        "latency_ms": lat,
                        "added_ms": added(lat["gateway"], lat["direct"]),
                        "not_ok": {n: failures(v) for n, v in samples.items()},
                    }
                    if stream:
                        ttft = {
                            n: summary([s.ttft for s in answered(v) if s.ttft])
                            for n, v in samples.items()
                        }
                        entry["ttft_ms"] = ttft
                        entry["ttft_added_ms"] = added(ttft["gateway"], ttft["direct"])
                    result["stream" if stream else "whole"] = entry
        return result


async def run(out: Path, *, smoke: bool) -> ScenarioResult:
    size = Size.of(smoke)
    emulator = Emulator(alias="emulated", slots=EMULATOR_SLOTS, tokens=size.relay_tokens)
    redis = RedisServer()
    extra = ("--queue-size", "4096", "--probe-interval", "2")
    floor = RelayFloor(emulator.url)
    with emulator, redis, floor:
        gw_memory = Gateway([emulator.url], admin_token=ADMIN_TOKEN, extra=extra)
        gw_redis = Gateway(
            [emulator.url], admin_token=ADMIN_TOKEN, extra=(*extra, "--redis-url", redis.redis_url)
        )
        for gateway in (gw_memory, gw_redis):  # both start at once
            gateway.launch()
        for gateway in (gw_memory, gw_redis):
            gateway.wait_ready()
        with gw_memory, gw_redis:
            contenders = [
                Contender("direct", emulator.url, None),
                Contender(
                    "gateway-memory",
                    gw_memory.url,
                    gw_memory.create_key("overhead-memory", **HIGH_LIMITS),
                    gw_memory.pid,
                ),
                Contender(
                    "gateway-redis",
                    gw_redis.url,
                    gw_redis.create_key("overhead-redis", **HIGH_LIMITS),
                    gw_redis.pid,
                ),
            ]
            # the HTTP stack alone, for scale: what relaying costs before the gateway's work
            contenders.append(Contender(FLOOR, floor.url, None, floor.pid))
            raw: dict[str, list[float]] = {}
            rates = await _fixed_rates(contenders, emulator.alias, size, raw)
            if load.have_wrk():
                generator = "wrk (1 thread, closed loop)"
                max_rps = overhead_wrk.max_rps(contenders, emulator.alias, size)
            else:
                generator = "aiohttp closed loop (wrk not installed)"
                max_rps = await _max_rps_aiohttp(contenders, emulator.alias, size)
            single = (
                overhead_wrk.one_connection(contenders, emulator.alias, size)
                if load.have_wrk()
                else {}
            )
            relay = await _relay(contenders, emulator.alias, size)
            profiles = overhead_wrk.profiles(contenders, emulator.alias, size)
        # (once the gateways above are gone: the core is the marked gateway's alone; the
        # floor at one connection is the step above's)
        steps = (
            timeline.measure(
                emulator, redis.redis_url, None, store="redis", seconds=2 * size.single_seconds
            )
            if load.have_wrk()
            else None
        )
    real = await _real(size)

    results = {
        "fixed_rate": rates,
        "max_rps": max_rps,
        "max_rps_generator": generator,
        "one_connection": single,
        "one_connection_steps": steps,
        "stream_relay": relay,
        "real_llama_server": real,
        "profiles": profiles,
    }
    config = {
        **size.__dict__,
        "emulator": {"slots": EMULATOR_SLOTS, "tokens": size.relay_tokens, "token_delay": 0},
        "gateway_core_pinned": True,
    }
    result = ScenarioResult("overhead", config, results)
    result.targets = overhead_report.targets(results, size)
    result.markdown = overhead_report.markdown(results, size, EMULATOR_SLOTS)
    result.plots = plots.overhead(out, raw, size.rates)
    result.notes = overhead_report.notes(results)
    return result
