"""The overhead scenario's goals, Markdown section and notes, from its results."""

from __future__ import annotations

from typing import TYPE_CHECKING

from loadtest import timeline
from loadtest.report import Target, fmt

if TYPE_CHECKING:
    from loadtest.scenarios.overhead_setup import Size


def notes(results: dict) -> list[str]:
    """What limits each gateway's rate, read from its profile."""
    notes = []
    for name, p in (results.get("profiles") or {}).items():
        rps = results["max_rps"].get(name, {})
        if not p or "error" in p or not p.get("areas"):
            continue
        areas = ", ".join(f"{area} {share:.0%}" for area, share in p["areas"][:4])
        notes.append(
            f"{name}: {fmt(rps.get('requests_per_s'))} req/s with its core "
            f"{fmt(rps.get('gateway_cpu_share'))} busy, so the gateway's CPU is the limit; "
            f"its samples by area: {areas}."
        )
    whole = [r for r in results["fixed_rate"] if not r["stream"]]
    top = max(whole, key=lambda r: r["rate"]) if whole else None
    if top and "relay-floor" in top["added_ms"]:
        hop = top["added_ms"]["relay-floor"]
        gw = top["added_ms"].get("gateway-redis", {})
        notes.append(
            f"Latency at {top['rate']} req/s, non-streamed: the HTTP stack alone adds "
            f"{fmt(hop.get('p50'))} ms at p50 ({fmt(hop.get('p99'))} at p99) — one more "
            f"loopback hop, parsed and relayed; gateway-redis adds {fmt(gw.get('p50'))} "
            f"({fmt(gw.get('p99'))}), with a hop to Redis before the send (limits, "
            "lookup and — one backend, a free slot — the lease in one round trip), and a "
            "non-streamed answer held until its release + "
            "settlement are written to Redis (not answered), so a client's next request "
            "never finds its last one still counted)."
        )
    floor = results["max_rps"].get("relay-floor", {}).get("requests_per_s")
    if floor:
        shares = ", ".join(
            f"{name} {results['max_rps'][name]['requests_per_s'] / floor:.0%}"
            for name in ("gateway-memory", "gateway-redis")
            if results["max_rps"].get(name, {}).get("requests_per_s")
        )
        notes.append(
            f"The HTTP stack alone (relay-floor: Litestar on uvicorn relaying through aiohttp, "
            f"nothing else) sustains {fmt(floor)} req/s on the same core, about "
            f"{1e6 / floor:.0f} µs of CPU per request; the gateways reach {shares} of it. The "
            "difference is the gateway's own work per request: two Redis round trips (limits "
            "+ affinity lookup + the lease; release + settlement + affinity record), auth, "
            "routing, metrics, the trace and the log line."
        )
    notes += _one_connection_notes(results)
    return notes


#: The steps of ``loadtest/timeline_marks.py`` that are waits on another process.
_WAITS = {"store_back": "the round trip to Redis before the send", "upstream_head": "the backend"}


def _one_connection_notes(results: dict) -> list[str]:
    """The one-connection target's arithmetic, from the step-by-step table: how much of a
    request is the two waits, and what the floor plus an empty round trip already adds."""
    steps = results.get("one_connection_steps")
    single = results.get("one_connection") or {}
    floor_added = (single.get("relay-floor") or {}).get("added_p50_ms")
    if not steps or floor_added is None:
        return []
    rows = {row["step"]: row for row in steps["steps"]}
    total = steps["steps"][-1]["since_start_us"]
    waits = [
        f"{what} {rows[step]['since_before_us']:.0f}"
        for step, what in _WAITS.items()
        if step in rows
    ]
    code = total - sum(rows[step]["since_before_us"] for step in _WAITS if step in rows)
    least = floor_added + steps["ping_us"] / 1000
    return [
        f"At one connection ({steps['store']}://), of {total:.0f} µs edge to edge: "
        f"{', '.join(waits)} µs — each mostly the trip across cores and back — and the "
        f"gateway's code between them {code:.0f} µs. The relay floor adds {fmt(floor_added)} ms "
        f"and a bare PING to Redis at that pace takes {steps['ping_us']:.0f} µs: a gateway "
        f"that makes one round trip before the send adds at least {least:.2f} ms here."
    ]


def _row(rates: list, rate: int, stream: bool) -> dict:
    return next(r for r in rates if r["rate"] == rate and r["stream"] == stream)


#: Issue #18's goals: the redis:// store's, and the embedded one's as a ratio to it.
RPS_GOAL = 2000
SINGLE_P50_GOAL_MS = 0.8
P99_GOAL_MS = 5
EMBEDDED_RATIO_GOAL = 1.5
CHUNKS_GOAL = 80_000


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b <= 0 else round(a / b, 2)


def targets(results: dict, size: Size) -> list[Target]:
    top = max(size.rates)
    row = _row(results["fixed_rate"], top, False)
    rps = {n: results["max_rps"][n]["requests_per_s"] for n in ("gateway-memory", "gateway-redis")}
    single = results.get("one_connection") or {}
    added_single = {
        n: single.get(n, {}).get("added_p50_ms") for n in ("gateway-memory", "gateway-redis")
    }
    relay = {n: results["stream_relay"][n]["chunks_per_s"] for n in rps}

    def meets(value, ok):
        return None if value is None else ok(value)

    p99 = row["added_ms"]["gateway-redis"]["p99"]
    rps_ratio = _ratio(rps["gateway-redis"], rps["gateway-memory"])
    single_ratio = _ratio(added_single["gateway-memory"], added_single["gateway-redis"])
    return [
        Target(
            "sustained req/s on one core, auth+limits+leases+affinity (redis://)",
            f"≥ {RPS_GOAL:,}",
            rps["gateway-redis"],
            meets(rps["gateway-redis"], lambda v: v >= RPS_GOAL),
        ),
        Target(
            "added p50 at one connection, non-streamed (redis://)",
            f"≤ {SINGLE_P50_GOAL_MS} ms",
            added_single["gateway-redis"],
            meets(added_single["gateway-redis"], lambda v: v <= SINGLE_P50_GOAL_MS),
        ),
        Target(
            f"added p99 at {top} req/s, non-streamed (redis://)",
            f"≤ {P99_GOAL_MS} ms",
            p99,
            meets(p99, lambda v: v <= P99_GOAL_MS),
        ),
        Target(
            "req/s of redis:// over memory:// (one core each)",
            f"≤ {EMBEDDED_RATIO_GOAL} times",
            rps_ratio,
            meets(rps_ratio, lambda v: v <= EMBEDDED_RATIO_GOAL),
        ),
        Target(
            "added p50 at one connection, memory:// over redis://",
            f"≤ {EMBEDDED_RATIO_GOAL} times",
            single_ratio,
            meets(single_ratio, lambda v: v <= EMBEDDED_RATIO_GOAL),
        ),
        *(
            Target(
                f"streamed chunks/s relayed by one core ({store})",
                f"≥ {CHUNKS_GOAL:,}",
                relay[name],
                meets(relay[name], lambda v: v >= CHUNKS_GOAL),
            )
            for store, name in (("redis://", "gateway-redis"), ("memory://", "gateway-memory"))
        ),
    ]


def _single_lines(results: dict) -> list[str]:
    single = results.get("one_connection") or {}
    if not single:
        return []
    lines = [
        "",
        "### One connection (wrk -c1, non-streamed, medians of the rounds)",
        "",
        "| contender | p50 | p99 | added p50 | req/s |",
        "|---|---|---|---|---|",
    ]
    for name, row in single.items():
        lines.append(
            f"| {name} | {fmt(row.get('p50_ms'))} | {fmt(row.get('p99_ms'))} | "
            f"{fmt(row.get('added_p50_ms'))} | {fmt(row.get('requests_per_s'))} |"
        )
    steps = results.get("one_connection_steps")
    if steps:
        lines += [
            "",
            f"#### Where one request's time goes (wrk -c1, {steps['store']}://, "
            "`python -m loadtest.timeline`)",
            "",
            "A gateway like the one above, with the clock read at each step of the path "
            "(`loadtest/timeline_marks.py`); medians. The two waits — Redis before the send, "
            "the backend — are mostly the trip across cores and back "
            "([one-connection-2026-12-04.md](one-connection-2026-12-04.md)).",
            "",
            *timeline.markdown(steps),
        ]
    return lines


def markdown(results: dict, size: Size, emulator_slots: int) -> str:
    lines = [
        f"Upstream: the emulator (`loadtest/emulator.py`, {emulator_slots} slots, 16 tokens per "
        "answer, no delay). Gateways: a real API key with rpm/tpm limits set high, slot leases, "
        "default routing (affinity); pinned to one core with `taskset`, the emulator, Redis and "
        "the load generator on the other. Latencies in ms; *added* = gateway percentile - "
        "direct percentile.",
        "",
        "### Added latency at fixed rates (open loop, aiohttp)",
        "",
        "| rate | mode | contender | p50 | p95 | p99 | added p50 | added p95 | added p99 | "
        "ratio p50 | failed |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in results["fixed_rate"]:
        mode = "stream" if row["stream"] else "whole"
        for name, lat in row["latency_ms"].items():
            add = row["added_ms"].get(name, {})
            lines.append(
                f"| {row['rate']}/s | {mode} | {name} | {fmt(lat['p50'])} | {fmt(lat['p95'])} | "
                f"{fmt(lat['p99'])} | {fmt(add.get('p50'))} | {fmt(add.get('p95'))} | "
                f"{fmt(add.get('p99'))} | {fmt(add.get('ratio_p50'))} | "
                f"{_failed(row['not_ok'][name], row.get('outcomes', {}).get(name))} |"
            )
    lines += [
        "",
        "TTFT (streams, to the first token event):",
        "",
        "| rate | contender | TTFT p50 | TTFT p99 | added p50 | added p99 |",
        "|---|---|---|---|---|---|",
    ]
    for row in results["fixed_rate"]:
        if not row["stream"]:
            continue
        for name, t in row["ttft_ms"].items():
            add = row.get("ttft_added_ms", {}).get(name, {})
            lines.append(
                f"| {row['rate']}/s | {name} | {fmt(t['p50'])} | {fmt(t['p99'])} | "
                f"{fmt(add.get('p50'))} | {fmt(add.get('p99'))} |"
            )
    direct = results["max_rps"]["direct"]["requests_per_s"]
    lines += [
        "",
        f"### Maximum sustained requests/s ({results['max_rps_generator']}, "
        f"{size.wrk_connections} connections, non-streamed)",
        "",
        f"The `direct` row is the load generator's own ceiling (against the emulator, on the "
        f"non-gateway core): {fmt(direct)} req/s. The `relay-floor` row (if present) is the "
        "gateway's HTTP stack alone on the same core — Litestar on uvicorn relaying through "
        "aiohttp, with no auth, limits, leases, routing or telemetry (`loadtest/floor.py`): "
        "the ceiling of any gateway built on this stack here.",
        "",
        "| contender | req/s | ratio to direct | p50 | p99 | non-2xx | gateway CPU (cores) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in results["max_rps"].items():
        ratio = r["requests_per_s"] / direct if direct and r["requests_per_s"] else None
        failed = r["non_2xx"] + r.get("socket_errors", 0)
        not_200 = {k: v for k, v in (r.get("statuses") or {}).items() if k != "200"}
        lines.append(
            f"| {name} | {fmt(r['requests_per_s'])} | {fmt(ratio)} | "
            f"{fmt(r.get('p50_ms'))} | {fmt(r.get('p99_ms'))} | "
            f"{_failed(failed, not_200)} | "
            f"{fmt(r.get('gateway_cpu_share'))} |"
        )
    lines += _single_lines(results)
    lines += [
        "",
        f"### Streamed chunks/s relayed ({size.relay_streams} streams of "
        f"{size.relay_tokens} tokens, aiohttp client)",
        "",
        "| contender | chunks/s | streams | failed | gateway CPU (cores) |",
        "|---|---|---|---|---|",
    ]
    for name, r in results["stream_relay"].items():
        lines.append(
            f"| {name} | {fmt(r['chunks_per_s'])} | {r['streams']} | {r['not_ok']} | "
            f"{fmt(r.get('gateway_cpu_share'))} |"
        )
    real = results["real_llama_server"]
    lines += [
        "",
        f"### Real llama-server (SmolLM2-135M, {size.real_tokens} tokens, "
        f"{size.real_requests} requests each, alternated, one at a time)",
        "",
        "| mode | direct p50 | gateway p50 | added p50 | added p95 | ratio p50 |",
        "|---|---|---|---|---|---|",
    ]
    for mode, entry in real.items():
        lat, add = entry["latency_ms"], entry["added_ms"]
        lines.append(
            f"| {mode} | {fmt(lat['direct']['p50'])} | {fmt(lat['gateway']['p50'])} | "
            f"{fmt(add['p50'])} | {fmt(add['p95'])} | {fmt(add['ratio_p50'])} |"
        )
        if "ttft_ms" in entry:
            t, ta = entry["ttft_ms"], entry["ttft_added_ms"]
            lines.append(
                f"| TTFT | {fmt(t['direct']['p50'])} | {fmt(t['gateway']['p50'])} | "
                f"{fmt(ta['p50'])} | {fmt(ta['p95'])} | {fmt(ta['ratio_p50'])} |"
            )
    lines += _profile_markdown(results.get("profiles") or {}, size)
    return "\n".join(lines)


def _failed(count: int, outcomes: dict | None) -> str:
    """``0``, or the count with how they ended: ``317 (503: 300, timeout: 17)``."""
    if not count or not outcomes:
        return str(count)
    return f"{count} ({', '.join(f'{k}: {v}' for k, v in sorted(outcomes.items()))})"


def _profile_markdown(profiles: dict, size: Size) -> list[str]:
    if not profiles:
        return []
    lines = [
        "",
        f"### Where the gateway's core goes (py-spy, {size.profile_seconds:g} s under the wrk "
        "load above, share of samples)",
        "",
        "By area (innermost Python frame; C extensions count for their caller), the gateway's "
        "own functions (inclusive: what each step of the request path costs with everything it "
        "calls), and the hottest functions (self).",
        "",
    ]
    for name, p in profiles.items():
        if not p or "error" in p:
            lines += [f"{name}: no profile ({(p or {}).get('error', 'py-spy failed')}).", ""]
            continue
        lines += [f"**{name}** ({p['samples']} samples)", ""]
        for title, rows in (
            ("area", p["areas"]),
            ("gateway function (inclusive)", p["gateway"][:10]),
            ("function (self)", p["self"][:8]),
        ):
            lines += [f"| {title} | share |", "|---|---|"]
            lines += [f"| `{fn}` | {share:.1%} |" for fn, share in rows]
            lines.append("")
    return lines
