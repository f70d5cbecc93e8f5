"""Routing: the three policies over a pool of real ``llama-server`` processes (SmolLM2,
``-np 2 -t 1``, four of them by default), on multi-turn chat sessions sharing one system
prompt.

Each policy gets a fresh gateway over the same backends and the same workload; the system
prompt of each policy's run starts with its own tag, so no policy finds a prefix another one
left in the backends' caches. Sessions run concurrently, turns within a session one after the
other, every answer sent back in the next turn's history (streamed, with ``include_usage``).

A turn ≥ 2 is a *cache hit* when the backend reused at least the whole previous prompt of its
conversation (``usage.prompt_tokens_details.cached_tokens`` ≥ previous ``prompt_tokens`` - 2);
the shared system prompt alone does not count. The token ratio (cached / prompt tokens on
turns ≥ 2) is reported beside it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

import msgspec

from loadtest import load, plots
from loadtest.procs import Gateway, LlamaServer, asset
from loadtest.progress import bar
from loadtest.report import ScenarioResult, Target, fmt
from loadtest.stats import summary

POLICIES = ("round-robin", "least-busy", "affinity")

SYSTEM = (
    "You are a patient assistant for a team that runs language models on their own servers. "
    "You answer questions about hardware, batching, caching of prompts, queues and latency. "
    "Keep answers short and concrete, give numbers where you can, and say when you are not "
    "sure. The team prefers plain words over jargon and examples over definitions. "
)
TOPICS = (
    "GPU memory",
    "prompt caching",
    "batch sizes",
    "request queues",
    "tail latency",
    "quantization",
    "context length",
    "load balancing",
    "token throughput",
    "warm-up",
)


@dataclass(frozen=True)
class Size:
    servers: int
    #: Slots per server (``-np``) and threads (``-t``): one thread each, as several
    #: llama-server processes sharing few cores lose most of their time to spinning threads.
    parallel: int
    threads: int
    sessions: int
    turns: int
    max_tokens: int
    system_repeat: int
    question_repeat: int
    #: Seconds a user takes before the next turn: drawn uniformly from (0, think) per turn,
    #: so sessions do not run in lockstep (in lockstep round-robin sends each session back to
    #: the same backend by accident).
    think: float

    @property
    def ctx_size(self) -> int:
        """Each slot keeps a whole conversation: 2,048 tokens a slot (4,096 for the CPU's two)."""
        return 2048 * self.parallel

    @classmethod
    def of(cls, smoke: bool) -> Size:
        return _runner_overrides(cls._of(smoke))

    @classmethod
    def _of(cls, smoke: bool) -> Size:
        if smoke:
            return cls(
                servers=2,
                parallel=2,
                threads=1,
                sessions=2,
                turns=2,
                max_tokens=4,
                system_repeat=1,
                question_repeat=1,
                think=0.1,
            )
        return cls(
            servers=4,
            parallel=2,
            threads=1,
            sessions=4,
            turns=5,
            max_tokens=16,
            system_repeat=3,
            question_repeat=6,
            think=2.0,
        )


def _runner_overrides(size: Size) -> Size:
    """The GPU run (``loadtest/gpu/run.sh``) asks for its own pool, two runners of eight slots:
    ``LOADTEST_ROUTING_RUNNERS`` and ``LOADTEST_ROUTING_SLOTS``, read here and nowhere else."""
    servers = int(os.environ.get("LOADTEST_ROUTING_RUNNERS") or size.servers)
    parallel = int(os.environ.get("LOADTEST_ROUTING_SLOTS") or size.parallel)
    return dataclasses.replace(size, servers=servers, parallel=parallel)


def _question(session: int, turn: int, size: Size) -> str:
    topic = TOPICS[(session + turn) % len(TOPICS)]
    detail = (
        f"Our setup number {session} has {2 + session % 5} machines and we see odd "
        f"numbers on {topic} in week {turn}. "
    )
    return f"Question {turn} of session {session}: what should we check about {topic}? " + (
        detail * size.question_repeat
    )


async def _session(client, url: str, tag: str, session: int, size: Size, tick) -> list[dict]:
    messages = [{"role": "system", "content": f"[{tag}] " + SYSTEM * size.system_repeat}]
    turns = []
    previous_prompt = None
    rng = random.Random(session)  # the same think times for every policy
    for turn in range(1, size.turns + 1):
        await asyncio.sleep(rng.uniform(0, size.think))
        messages.append({"role": "user", "content": _question(session, turn, size)})
        body = {
            "model": "smollm2",
            "messages": messages,
            "max_tokens": size.max_tokens,
            "temperature": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        request = load.Request(
            f"{url}/v1/chat/completions",
            msgspec.json.encode(body),
            {"Content-Type": "application/json"},
            stream=True,
            collect=True,
        )
        sample = await load.send(client, request, timeout=300)
        tick(1)
        usage = sample.usage or {}
        prompt = usage.get("prompt_tokens")
        cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
        if cached is None and sample.timings:
            cached = sample.timings.get("cache_n")
        turns.append(
            {
                "session": session,
                "turn": turn,
                "outcome": sample.outcome,
                "ttft": sample.ttft,
                "latency": sample.latency,
                "prompt_tokens": prompt,
                "cached_tokens": cached,
                "previous_prompt_tokens": previous_prompt,
                "completion_tokens": usage.get("completion_tokens"),
            }
        )
        if sample.outcome != "ok":
            break
        previous_prompt = prompt
        messages.append({"role": "assistant", "content": sample.text})
    return turns


def _summarise(turns: list[dict], seconds: float) -> dict:
    ok = [t for t in turns if t["outcome"] == "ok"]
    later = [
        t for t in ok if t["turn"] >= 2 and t["prompt_tokens"] and t["cached_tokens"] is not None
    ]
    hits = [t for t in later if t["cached_tokens"] >= (t["previous_prompt_tokens"] or 0) - 2]
    prompt = sum(t["prompt_tokens"] for t in later)
    completion = sum(t["completion_tokens"] or 0 for t in ok)
    return {
        "requests": len(turns),
        "failed": len(turns) - len(ok),
        "cache_hit_ratio_turns2plus": round(len(hits) / len(later), 3) if later else None,
        "cached_token_ratio_turns2plus": round(sum(t["cached_tokens"] for t in later) / prompt, 3)
        if prompt
        else None,
        "ttft_ms": summary([t["ttft"] for t in ok if t["ttft"]]),
        "ttft_ms_turns2plus": summary([t["ttft"] for t in ok if t["ttft"] and t["turn"] >= 2]),
        "latency_ms": summary([t["latency"] for t in ok]),
        "completion_tokens": completion,
        "prompt_tokens": sum(t["prompt_tokens"] or 0 for t in ok),
        "seconds": round(seconds, 2),
        "tokens_per_s": round(completion / seconds, 1) if seconds else None,
        "_ttft_raw": [t["ttft"] for t in ok if t["ttft"]],
    }


async def _policy(gateway: Gateway, policy: str, size: Size, tick) -> dict:
    tag = f"{policy}-{time.time_ns()}"
    async with load.session() as client:
        started = time.perf_counter()
        runs = await asyncio.gather(
            *(_session(client, gateway.url, tag, s, size, tick) for s in range(size.sessions))
        )
        seconds = time.perf_counter() - started
    return _summarise([t for run in runs for t in run], seconds)


async def _warm_up(servers: list[LlamaServer]) -> None:
    """One short request per server, directly: the first request of a fresh llama-server
    pays for allocations that no policy should be charged for."""
    body = msgspec.json.encode(
        {"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 2}
    )
    async with load.session() as client:
        for server in servers:
            request = load.Request(
                f"{server.url}/v1/chat/completions", body, {"Content-Type": "application/json"}
            )
            await load.send(client, request, timeout=120)


async def run(out: Path, *, smoke: bool) -> ScenarioResult:
    size = Size.of(smoke)
    binary = asset("llama-server", "LLAMA_SERVER_BIN")
    model = asset("model", "LLAMA_GATEWAY_TEST_MODEL")
    servers = [
        LlamaServer(
            binary, model, parallel=size.parallel, ctx_size=size.ctx_size, threads=size.threads
        )
        for _ in range(size.servers)
    ]
    policies: dict[str, dict] = {}
    gateways: dict[str, Gateway] = {}
    try:
        for server in servers:  # all at once, then wait for each
            server.launch()
        for server in servers:
            server.wait_ready()
        await _warm_up(servers)
        for policy in POLICIES:  # one gateway per policy, started together, used in turn
            gateways[policy] = Gateway(
                [b.url for b in servers],
                pin=False,
                extra=("--routing", policy, "--probe-interval", "0.5", "--queue-timeout", "300"),
            )
            gateways[policy].launch()
        for gateway in gateways.values():
            gateway.wait_ready()
        with bar("routing: policies", size.sessions * size.turns * len(POLICIES)) as tick:
            for policy in POLICIES:
                policies[policy] = await _policy(gateways[policy], policy, size, tick)
    finally:
        for process in [*gateways.values(), *servers]:
            process.stop()
    written = plots.routing(out, policies)
    for entry in policies.values():
        entry.pop("_ttft_raw", None)
    result = ScenarioResult(
        "routing", {**size.__dict__, "ctx_size": size.ctx_size}, {"policies": policies}
    )
    result.plots = written
    result.targets = _targets(policies)
    result.markdown = _markdown(policies, size)
    return result


def _targets(p: dict) -> list[Target]:
    hit = p["affinity"]["cache_hit_ratio_turns2plus"]
    # turns 2+: the first turn of a conversation has nothing cached but the system prompt,
    # whatever the policy
    a = p["affinity"]["ttft_ms_turns2plus"]["p50"]
    rr = p["round-robin"]["ttft_ms_turns2plus"]["p50"]
    speedup = round(rr / a, 2) if a and rr else None
    tps, lb = p["affinity"]["tokens_per_s"], p["least-busy"]["tokens_per_s"]
    return [
        Target(
            "affinity cache-hit ratio, turns 2+", "≥ 0.9", hit, None if hit is None else hit >= 0.9
        ),
        Target(
            "round-robin TTFT p50 / affinity TTFT p50, turns 2+",
            "≥ 2x",
            speedup,
            None if speedup is None else speedup >= 2,
        ),
        Target(
            "affinity tokens/s vs least-busy",
            "≥ least-busy",
            f"{fmt(tps)} vs {fmt(lb)}",
            None if not tps or not lb else tps >= lb,
        ),
    ]


def _markdown(p: dict, size: Size) -> str:
    lines = [
        f"{size.servers} real llama-server processes (SmolLM2-135M, `-np {size.parallel} -c "
        f"{size.ctx_size} -t {size.threads}`), "
        f"{size.sessions} concurrent chat sessions x {size.turns} turns sharing one system "
        f"prompt, {size.max_tokens} tokens per answer, streamed, a random think time of up to "
        f"{size.think:g} s before each turn; a fresh gateway per policy. "
        "Times in ms.",
        "",
        "| policy | cache-hit ratio (turns 2+) | cached-token ratio (turns 2+) | TTFT p50 | "
        "TTFT p95 | TTFT p50 turns 2+ | TTFT p95 turns 2+ | e2e p50 | e2e p95 | "
        "completion tokens/s | failed |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, e in p.items():
        lines.append(
            f"| {name} | {fmt(e['cache_hit_ratio_turns2plus'])} | "
            f"{fmt(e['cached_token_ratio_turns2plus'])} | {fmt(e['ttft_ms']['p50'])} | "
            f"{fmt(e['ttft_ms']['p95'])} | {fmt(e['ttft_ms_turns2plus']['p50'])} | "
            f"{fmt(e['ttft_ms_turns2plus']['p95'])} | {fmt(e['latency_ms']['p50'])} | "
            f"{fmt(e['latency_ms']['p95'])} | {fmt(e['tokens_per_s'])} | {e['failed']} |"
        )
    return "\n".join(lines)
