"""Chaos on the request path itself (issue #15 items 1, 2 and 8, and runner kills): clients
that leave, requests that fill several slots, a runner and a gateway killed with ``kill -9``
— each under load, each counted as in :mod:`tests.chaos.scenarios`."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time

import httpx

from tests.chaos.harness import Tally, flood, until
from tests.chaos.lab import Lab
from tests.chaos.scenarios import scenario
from tests.support.processes import Gateway, free_port

LONG = {
    "model": "smollm2",
    "messages": [{"role": "user", "content": "Tell me a long story."}],
    "max_tokens": 300,
    "ignore_eos": True,
}


async def _leave(url: str, body: dict, after: float) -> None:
    """A client that gives up ``after`` seconds into its request (streamed or not)."""
    with contextlib.suppress(httpx.HTTPError, TimeoutError):
        async with httpx.AsyncClient(timeout=None) as client, asyncio.timeout(after):
            async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as answer:
                async for _ in answer.aiter_bytes():
                    pass


async def _inflight(url: str) -> float:
    async with httpx.AsyncClient(timeout=5) as client:
        text = (await client.get(f"{url}/metrics")).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("llama_gateway_inflight_requests{")
    )


@scenario("departures")
async def departures(lab: Lab) -> list[Tally]:
    """On a one-slot runner: a long request holds the slot; 12 clients — whole and streamed —
    give up while queued or mid-answer (#15 item 1: departed waiters were still granted the
    slot and generated for nobody while live requests timed out). Then live requests must be
    served, the departed ones must not have run, and no lease may be left taken."""
    runner = lab.runner(parallel=1, ctx_size=1024)
    gw = lab.gateway([runner], "--no-auth", "--queue-timeout", "60")
    before = await asyncio.to_thread(runner.metric, "tokens_predicted_total")
    holder = asyncio.create_task(_leave(gw.url, LONG, after=60))  # stays to the end
    await asyncio.sleep(0.5)
    leavers = [
        _leave(gw.url, {**LONG, "stream": i % 2 == 1}, after=0.5 + 0.1 * i) for i in range(12)
    ]
    await asyncio.gather(*leavers)
    await holder
    tally = Tally("departures, then live")
    await flood(tally, [gw.url], clients=2, count=20, seconds=60)
    generated = await asyncio.to_thread(runner.metric, "tokens_predicted_total") - before
    # The holder's 300, the live ones' (at most 8 each), and none for the departed waiters.
    tally.notes["tokens generated beyond the holder and the live requests"] = (
        f"{max(0, generated - 300 - 8 * tally.succeeded):g}"
    )

    async def released() -> bool:
        return await _inflight(gw.url) == 0

    settled = await until(released, timeout=10)
    tally.notes["leases left taken"] = (
        "0" if settled is not None else f"{await _inflight(gw.url):g}"
    )
    tally.expect_clean()
    tally.expect(generated <= 300 + 8 * tally.succeeded, "a departed waiter was served")
    tally.expect(settled is not None, "a departed request's lease was left taken")
    return [tally]


@scenario("multi-slot")
async def multi_slot(lab: Lab) -> list[Tally]:
    """Batches of 4 prompts and ``n`` = 3 beside single requests on one 4-slot runner (#15
    item 2: a batch held one lease while filling every slot, so llama-server queued the
    requests admitted beside it). No request may ever wait inside llama-server, and every
    token must be charged."""
    runner = lab.runner(parallel=4, ctx_size=4096)
    gw = lab.gateway([runner], "--no-auth", "--queue-timeout", "60")
    stop = asyncio.Event()
    deferred = 0.0

    async def watch() -> None:
        nonlocal deferred
        while not stop.is_set():
            with contextlib.suppress(httpx.HTTPError, KeyError):
                reading = await asyncio.to_thread(runner.metric, "requests_deferred")
                deferred = max(deferred, reading)
            await asyncio.sleep(0.02)

    batch = {"model": "smollm2", "prompt": ["Once upon a time"] * 4, "max_tokens": 6}
    single, batches = Tally("singles beside batches"), Tally("batches of 4 prompts")
    watcher = asyncio.create_task(watch())
    await asyncio.gather(
        flood(single, [gw.url], clients=3, count=60, seconds=60),
        _completions(batches, gw.url, batch, count=15),
        _completions(batches, gw.url, {**batch, "prompt": "Hello", "n": 3}, count=15),
    )
    stop.set()
    await watcher
    single.notes["requests deferred by llama-server (peak)"] = f"{deferred:g}"
    single.expect_clean()
    batches.expect_clean()
    single.expect(deferred == 0, "a backend was sent more requests than it has slots")
    return [single, batches]


async def _completions(tally: Tally, url: str, body: dict, *, count: int) -> None:
    async with httpx.AsyncClient(timeout=60) as client:
        for _ in range(count):
            tally.sent += 1
            started = time.monotonic()
            try:
                answer = await client.post(f"{url}/v1/completions", json=body)
            except httpx.HTTPError:
                tally.lost += 1
                continue
            tally.slowest = max(tally.slowest, time.monotonic() - started)
            if answer.status_code != 200:
                tally.failed[answer.status_code] += 1
                continue
            choices = len(body["prompt"]) if isinstance(body["prompt"], list) else body["n"]
            merged = answer.json()
            charged = (merged.get("usage") or {}).get("completion_tokens", 0)
            if len(merged["choices"]) != choices or charged < choices:
                tally.lost += 1  # an answer missing choices, or their tokens uncharged
            else:
                tally.succeeded += 1


@scenario("runner-kill")
async def runner_kill(lab: Lab) -> list[Tally]:
    """One of two runners ``kill -9``-ed under load: requests before their first byte are
    retried on the other, so only refusals with ``Retry-After`` may show — none hung, none
    lost."""
    backends = [lab.runner(), lab.runner()]
    gw = lab.gateway(backends, "--no-auth", "--probe-interval", "0.5")
    tally = Tally("runner kill -9")
    load = asyncio.create_task(flood(tally, [gw.url], clients=8, count=200, seconds=15))
    await until(lambda: tally.succeeded >= 10, timeout=30)
    await asyncio.to_thread(backends[0].kill)
    await load
    tally.expect_clean(503)
    tally.expect(tally.succeeded >= tally.sent // 2, "fewer than half succeeded")
    return [tally]


@scenario("gateway-kill")
async def gateway_kill(lab: Lab) -> list[Tally]:
    """A gateway that started its own runner is ``kill -9``-ed (#15 item 8: its runners ran on
    under PID 1, holding their ports). The runner must die with it, and a gateway started again
    on the same port must serve."""
    port = free_port()
    first = _supervising_gateway(lab, port).start()
    tally = Tally("after the gateway's kill -9")
    assert first.process is not None
    runner_pids = await asyncio.to_thread(_children, first.process.pid)
    os.kill(first.process.pid, signal.SIGKILL)
    first.process.wait()
    orphaned = await until(lambda: not any(_alive(pid) for pid in runner_pids), timeout=10)
    tally.notes["runners gone after"] = "never" if orphaned is None else f"{orphaned:.2f} s"
    started = time.monotonic()
    again = lab.started(_supervising_gateway(lab, port))
    tally.notes["restarted and ready after"] = f"{time.monotonic() - started:.1f} s"
    await flood(tally, [again.url], clients=2, count=10, seconds=30)
    tally.expect(bool(runner_pids), "the gateway had no runner to check")
    tally.expect(orphaned is not None, "a runner outlived its gateway")
    tally.expect_clean()
    return [tally]


def _supervising_gateway(lab: Lab, port: int) -> Gateway:
    """A gateway on ``port`` that starts its own runner of the model."""
    model = ("--model", f"smollm2={lab.model}", "--parallel", "2", "--ctx-size", "1024")
    gw = Gateway(*model, "--no-auth", env={"LLAMA_SERVER_BIN": lab.llama_bin})
    gw.port, gw.args[gw.args.index("--port") + 1] = port, str(port)
    return gw


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (Linux ``/proc``)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                with open(f"/proc/{entry}/stat") as stat:
                    if int(stat.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
