"""Overhead: the gateway against the same upstream reached directly.

Contenders, measured back to back per step: ``direct`` (the upstream itself),
``gateway-memory`` (auth with a real key, rpm/tpm limits set high on it, slot leases, the
default ``memory://`` store) and ``gateway-redis`` (the same on a ``redis-server`` the harness
starts). The gateways are pinned to one core; the emulator, Redis and the load generator share
the other(s).

Steps: added latency at fixed open-loop rates (streamed and not, and TTFT for streams); the
maximum sustained requests/s with ``wrk`` (closed loop), whose own ceiling is measured
against the emulator directly; streamed chunks/s relayed by the gateway's one core; and the
added latency over a real llama-server (requests alternated, one at a time).
"""

from __future__ import annotations

import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import msgspec

from loadtest import load, plots, profile
from loadtest.procs import Emulator, Gateway, LlamaServer, RedisServer, RelayFloor, asset
from loadtest.progress import bar
from loadtest.report import ScenarioResult
from loadtest.scenarios import overhead_report
from loadtest.stats import added, summary

ADMIN_TOKEN = "loadtest-admin"
HIGH_LIMITS = {"rpm": 10**9, "tpm": 10**12}
#: Enough slots that no request waits for one (the gateway's leases are measured, not its
#: queue), and as few as a big server has: the gateway scans a backend's slots per request.
EMULATOR_SLOTS = 128
#: The HTTP stack relaying with nothing else (``loadtest/floor.py``), measured beside.
FLOOR = "relay-floor"


@dataclass(frozen=True)
class Size:
    rates: tuple[int, ...]
    rate_seconds: float
    wrk_seconds: float
    wrk_connections: int
    relay_seconds: float
    relay_streams: int
    relay_tokens: int
    real_requests: int
    real_tokens: int
    warm_up: int
    profile_seconds: float

    @classmethod
    def of(cls, smoke: bool) -> Size:
        if smoke:
            return cls((20,), 0.5, 1.0, 16, 0.5, 4, 200, 2, 4, 3, 1.0)
        return cls((50, 100, 200), 8.0, 8.0, 64, 8.0, 32, 1000, 30, 16, 20, 8.0)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _chat(
    url: str, model: str, *, stream: bool, max_tokens: int, key: str | None, label: str
) -> load.Request:
    body: dict = {
        "model": model,
        "messages": [{"role": "user", "content": "Say something short about gateways."}],
        "max_tokens": max_tokens,
    }
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return load.Request(
        f"{url}/v1/chat/completions", msgspec.json.encode(body), headers, stream, label
    )


class Contender:
    def __init__(self, name: str, url: str, key: str | None, pid: int | None = None) -> None:
        self.name, self.url, self.key, self.pid = name, url, key, pid


def _ok(samples: list[load.Sample]) -> list[load.Sample]:
    return [s for s in samples if s.outcome == "ok" and s.latency is not None]


def _not_ok(samples: list[load.Sample]) -> int:
    return sum(1 for s in samples if s.outcome != "ok")


async def _warm_up(contenders: list[Contender], model: str, count: int = 20) -> None:
    """Open the connections and fill the caches (the gateway's key cache, connection pools)
    before anything is measured."""
    async with load.session() as client:
        for c in contenders:
            for stream in (False, True):
                for _ in range(count):
                    await load.send(
                        client,
                        _chat(c.url, model, stream=stream, max_tokens=4, key=c.key, label=c.name),
                        30,
                    )


async def _fixed_rates(contenders: list[Contender], model: str, size: Size, raw: dict) -> list:
    await _warm_up(contenders, model, count=size.warm_up)
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
                        return _chat(
                            c.url, model, stream=stream, max_tokens=16, key=c.key, label=c.name
                        )

                    samples = await load.open_loop(
                        make, rate=rate, duration=size.rate_seconds, timeout=30, progress=tick
                    )
                    ok = _ok(samples)
                    row["latency_ms"][c.name] = summary([s.latency for s in ok])
                    if stream:
                        row["ttft_ms"][c.name] = summary([s.ttft for s in ok if s.ttft])
                    row["not_ok"][c.name] = _not_ok(samples)
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


def _statuses(c: Contender) -> Counter[str]:
    """The gateway's own count of answers by status (``llama_gateway_requests_total``): wrk
    only says how many were not 2xx, this says what they were."""
    counts: Counter[str] = Counter()
    if c.pid is None:
        return counts
    try:
        text = httpx.get(f"{c.url}/metrics", timeout=5).text
    except httpx.HTTPError:
        return counts
    for line in text.splitlines():
        if line.startswith("llama_gateway_requests_total{") and 'status="' in line:
            status = line.split('status="', 1)[1].split('"', 1)[0]
            counts[status] += int(float(line.rsplit(" ", 1)[1]))
    return counts


def _max_rps(contenders: list[Contender], model: str, size: Size) -> dict:
    out: dict = {}
    with bar("overhead: max req/s (wrk)", len(contenders), unit="run") as tick:
        for c in contenders:
            request = _chat(c.url, model, stream=False, max_tokens=16, key=c.key, label=c.name)
            cpu0 = _cpu_seconds(c.pid) if c.pid else None
            before = _statuses(c)
            started = time.perf_counter()
            result = load.wrk(
                request.url,
                request.body,
                request.headers,
                connections=size.wrk_connections,
                duration=size.wrk_seconds,
            )
            if cpu0 is not None:
                used = _cpu_seconds(c.pid) - cpu0
                result["gateway_cpu_share"] = round(used / (time.perf_counter() - started), 3)
                result["statuses"] = dict(_statuses(c) - before)
            out[c.name] = result
            tick(1)
    return out


def _profiles(contenders: list[Contender], model: str, size: Size) -> dict:
    """Each gateway under the same wrk load again, sampled by py-spy (not the measured run:
    sampling costs the gateway a little)."""
    if profile.py_spy() is None or not load.have_wrk():
        return {}
    out: dict = {}
    gateways = [c for c in contenders if c.name.startswith("gateway")]
    with bar("overhead: profiles (py-spy)", len(gateways), unit="run") as tick:
        for c in gateways:
            request = _chat(c.url, model, stream=False, max_tokens=16, key=c.key, label=c.name)
            with ThreadPoolExecutor(1) as pool:
                job = pool.submit(
                    load.wrk, request.url, request.body, request.headers,
                    connections=size.wrk_connections, duration=size.profile_seconds + 2,
                )  # fmt: skip
                time.sleep(1)
                out[c.name] = profile.record(c.pid, size.profile_seconds)
                job.result()
            tick(1)
    return out


async def _max_rps_aiohttp(contenders: list[Contender], model: str, size: Size) -> dict:
    """Without wrk: the aiohttp closed loop (a lower ceiling; reported as such)."""
    out: dict = {}
    for c in contenders:

        def make(i: int, c: Contender = c) -> load.Request:
            return _chat(c.url, model, stream=False, max_tokens=16, key=c.key, label=c.name)

        samples, seconds = await load.closed_loop(
            make, concurrency=size.wrk_connections, duration=size.wrk_seconds
        )
        ok = _ok(samples)
        lat = summary([s.latency for s in ok])
        out[c.name] = {
            "requests_per_s": round(len(ok) / seconds, 1),
            "requests": len(samples),
            "non_2xx": _not_ok(samples),
            "p50_ms": lat["p50"],
            "p99_ms": lat["p99"],
        }
    return out


async def _relay(contenders: list[Contender], model: str, size: Size) -> dict:
    out: dict = {}
    with bar("overhead: stream relay", len(contenders), unit="run") as tick:
        for c in contenders:

            def make(i: int, c: Contender = c) -> load.Request:
                return _chat(
                    c.url, model, stream=True, max_tokens=size.relay_tokens, key=c.key, label=c.name
                )

            cpu0 = _cpu_seconds(c.pid) if c.pid else None
            samples, seconds = await load.closed_loop(
                make, concurrency=size.relay_streams, duration=size.relay_seconds, timeout=60
            )
            chunks = sum(s.chunks for s in samples)
            out[c.name] = {
                "chunks_per_s": round(chunks / seconds, 1),
                "streams": len(samples),
                "not_ok": _not_ok(samples),
            }
            if cpu0 is not None:
                out[c.name]["gateway_cpu_share"] = round((_cpu_seconds(c.pid) - cpu0) / seconds, 3)
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
        await _warm_up(contenders, server.alias, count=3)
        async with load.session() as client:
            with bar("overhead: real llama-server", size.real_requests * 4) as tick:
                for stream in (False, True):
                    samples: dict[str, list[load.Sample]] = {c.name: [] for c in contenders}
                    for i in range(size.real_requests):
                        order = contenders if i % 2 == 0 else contenders[::-1]
                        for c in order:
                            r = _chat(
                                c.url,
                                server.alias,
                                stream=stream,
                                max_tokens=size.real_tokens,
                                key=c.key,
                                label=c.name,
                            )
                            samples[c.name].append(await load.send(client, r, 120))
                            tick(1)
                    lat = {n: summary([s.latency for s in _ok(v)]) for n, v in samples.items()}
                    entry = {
                        "latency_ms": lat,
                        "added_ms": added(lat["gateway"], lat["direct"]),
                        "not_ok": {n: _not_ok(v) for n, v in samples.items()},
                    }
                    if stream:
                        ttft = {
                            n: summary([s.ttft for s in _ok(v) if s.ttft])
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
                max_rps = _max_rps(contenders, emulator.alias, size)
            else:
                generator = "aiohttp closed loop (wrk not installed)"
                max_rps = await _max_rps_aiohttp(contenders, emulator.alias, size)
            relay = await _relay(contenders, emulator.alias, size)
            profiles = _profiles(contenders, emulator.alias, size)
    real = await _real(size)

    results = {
        "fixed_rate": rates,
        "max_rps": max_rps,
        "max_rps_generator": generator,
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
