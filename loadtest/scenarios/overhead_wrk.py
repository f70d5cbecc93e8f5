"""The overhead scenario's closed-loop steps, driven by ``wrk`` (pinned off the gateway's
core): the maximum sustained rate, the latency at one connection, and each gateway's
profile under load."""

from __future__ import annotations

import statistics
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx

from loadtest import load, profile
from loadtest.progress import bar
from loadtest.scenarios.overhead_setup import Contender, Size, chat, cpu_seconds


def statuses(c: Contender) -> Counter[str]:
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


def max_rps(contenders: list[Contender], model: str, size: Size) -> dict:
    out: dict = {}
    with bar("overhead: max req/s (wrk)", len(contenders), unit="run") as tick:
        for c in contenders:
            request = chat(c.url, model, stream=False, max_tokens=16, key=c.key, label=c.name)
            cpu0 = cpu_seconds(c.pid) if c.pid else None
            before = statuses(c)
            started = time.perf_counter()
            result = load.wrk(
                request.url,
                request.body,
                request.headers,
                connections=size.wrk_connections,
                duration=size.wrk_seconds,
            )
            if cpu0 is not None:
                used = cpu_seconds(c.pid) - cpu0
                result["gateway_cpu_share"] = round(used / (time.perf_counter() - started), 3)
                result["statuses"] = dict(statuses(c) - before)
            out[c.name] = result
            tick(1)
    return out


def one_connection(contenders: list[Contender], model: str, size: Size) -> dict:
    """Latency with one connection sending one request after another (nothing queued
    anywhere: the gateway's own time on a request's path), with ``wrk -c1``; the contenders
    take turns for ``single_rounds`` rounds and each percentile is the median of its rounds,
    so a burst of load from elsewhere on the machine falls on all of them alike."""
    rounds: dict[str, list[dict]] = {c.name: [] for c in contenders}
    with bar("overhead: one connection (wrk -c1)", size.single_rounds * len(contenders)) as tick:
        for i in range(size.single_rounds):
            turn = contenders[i % len(contenders) :] + contenders[: i % len(contenders)]
            for c in turn:
                request = chat(c.url, model, stream=False, max_tokens=16, key=c.key, label=c.name)
                rounds[c.name].append(
                    load.wrk(
                        request.url,
                        request.body,
                        request.headers,
                        connections=1,
                        duration=size.single_seconds,
                    )
                )
                tick(1)
    out: dict = {}
    for name, runs in rounds.items():
        out[name] = {
            q: statistics.median(r[q] for r in runs if r.get(q) is not None)
            if any(r.get(q) is not None for r in runs)
            else None
            for q in ("p50_ms", "p99_ms", "requests_per_s")
        }
        out[name]["non_2xx"] = sum(r["non_2xx"] for r in runs)
    direct = out.get("direct", {})
    for name, row in out.items():
        if name != "direct" and row["p50_ms"] is not None and direct.get("p50_ms") is not None:
            row["added_p50_ms"] = round(row["p50_ms"] - direct["p50_ms"], 3)
    return out


def profiles(contenders: list[Contender], model: str, size: Size) -> dict:
    """Each gateway under the same wrk load again, sampled by py-spy (not the measured run:
    sampling costs the gateway a little)."""
    if profile.py_spy() is None or not load.have_wrk():
        return {}
    out: dict = {}
    gateways = [c for c in contenders if c.name.startswith("gateway")]
    with bar("overhead: profiles (py-spy)", len(gateways), unit="run") as tick:
        for c in gateways:
            request = chat(c.url, model, stream=False, max_tokens=16, key=c.key, label=c.name)
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
