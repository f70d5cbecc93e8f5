"""Prefix-affinity routing against two real llama-server backends and the real model.

*Seen before*, precisely: after turn *k* a slot's KV cache holds the turn's prompt and every
generated token but the last (sampled, never decoded) — ``/slots`` reports exactly
``prompt_tokens + completion_tokens - 1`` as its ``n_prompt_tokens``. Turn *k+1*'s prompt
starts with all of it (the chat template re-renders the answer; the end-of-turn token after
it is the first new token), so a backend that still holds turn *k* can serve that many tokens
of turn *k+1* from cache. The tests measure ``cached_tokens`` of turn *k+1* against it.

Every run gets fresh backends: llama-server keeps prompts in its slots and in a host-RAM
prompt cache, so a backend that saw another run's conversations would blur the comparison.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import threading
import time
from dataclasses import dataclass, field

import httpx
import msgspec
import pytest

from tests.support.processes import Gateway, LlamaServer

pytestmark = pytest.mark.llama

SYSTEM = (
    "You are a patient, practical assistant for people planning projects in their spare "
    "time. Answer concretely, in a few sentences, and say when something is a matter of taste."
)
TOPICS = [
    "vegetable garden on a small balcony",
    "home-built weather station with a Raspberry Pi",
    "restoration of an old wooden rowing boat",
    "community book-swap shelf in my apartment building",
    "beginner's course in landscape watercolour painting",
    "two-week cycling tour along the Danube",
    "small podcast about local history",
    "sourdough bakery stall at the weekend market",
]
TURNS = [
    "I am planning a {topic} over the next few months. I have a little experience, but I "
    "want to avoid the usual beginner mistakes. What should I think about first?",
    "Thanks, that helps. My budget is limited and I can only spend weekends on it. Which of "
    "those points matter most under those constraints, and what could I safely skip?",
    "Suppose something goes wrong halfway through: I run out of time, or an important part "
    "fails. How would you recover, step by step, without starting over?",
    "Finally, turn the whole plan for the {topic} into a short checklist that I can print "
    "and keep on my desk.",
]


@dataclass
class Turn:
    prompt: int
    cached: int
    completion: int
    seconds: float

    @property
    def held(self) -> int:
        """Tokens of this turn a backend's slot holds afterwards (see the module doc)."""
        return self.prompt + self.completion - 1


@dataclass
class Run:
    conversations: list[list[Turn]] = field(default_factory=list)
    seconds: float = 0.0

    def reuse(self, *, streamed: bool | None = None) -> float:
        """Cached tokens of turns 2-4 over what the previous turn left in a slot."""
        cached = held = 0
        for i, turns in enumerate(self.conversations):
            if streamed is not None and (i % 2 == 1) != streamed:
                continue
            for before, after in itertools.pairwise(turns):
                cached += min(after.cached, before.held)
                held += before.held
        return cached / held


async def _ask(
    client: httpx.AsyncClient, messages: list[dict], *, stream: bool, max_tokens: int
) -> tuple[str, dict]:
    body = {"model": "smollm2", "messages": messages, "max_tokens": max_tokens}
    if not stream:
        response = await client.post("/v1/chat/completions", json=body)
        response.raise_for_status()
        data = response.json()
        return data["choices"][0]["message"]["content"], data["usage"]
    body |= {"stream": True, "stream_options": {"include_usage": True}}
    text, usage = [], None
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: {"):
                continue
            event = msgspec.json.decode(line[6:])
            for choice in event.get("choices") or ():
                text.append((choice.get("delta") or {}).get("content") or "")
            usage = event.get("usage") or usage
    assert usage is not None
    return "".join(text), usage


class Conversation:
    """One user's chat, a turn at a time; odd conversations stream (and are then recorded
    without their answers)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.topic = TOPICS[n % len(TOPICS)]
        self.messages = [{"role": "system", "content": SYSTEM}]
        self.turns: list[Turn] = []

    @property
    def done(self) -> bool:
        return len(self.turns) == len(TURNS)

    async def next_turn(self, client: httpx.AsyncClient, *, max_tokens: int) -> None:
        question = TURNS[len(self.turns)].format(topic=self.topic)
        self.messages.append({"role": "user", "content": question})
        started = time.monotonic()
        stream = self.n % 2 == 1
        answer, usage = await _ask(client, self.messages, stream=stream, max_tokens=max_tokens)
        self.messages.append({"role": "assistant", "content": answer})
        cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
        self.turns.append(
            Turn(
                usage["prompt_tokens"],
                cached,
                usage["completion_tokens"],
                time.monotonic() - started,
            )
        )


async def run_conversations(
    url: str, *, count: int = 8, max_tokens: int = 32, seed: int = 4
) -> Run:
    """``count`` conversations of four turns, in rounds: each round a seeded random number of
    the unfinished conversations, in random order, each sends its next turn; the round ends
    when all are answered. Users do not take turns in lockstep — and when they do (every
    conversation every round), round-robin happens to send each one back to the backend it
    had, eight requests a round over two backends."""
    rng = random.Random(seed)
    chats = [Conversation(n) for n in range(count)]
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        while ready := [c for c in chats if not c.done]:
            rng.shuffle(ready)
            sending = []
            for chat in ready[: rng.randint(1, len(ready))]:
                sending.append(asyncio.create_task(chat.next_turn(client, max_tokens=max_tokens)))
                await asyncio.sleep(0.05)  # arrive in this order
            await asyncio.gather(*sending)
    return Run([c.turns for c in chats], time.monotonic() - started)


class Fleet:
    """Two fresh 4-slot backends and a gateway over them with one routing policy."""

    def __init__(self, llama_bin: str, model_path: str, routing: str, **env: str) -> None:
        self.servers = [LlamaServer(llama_bin, model_path) for _ in range(2)]
        self.routing = routing
        self.env = env
        self.gateway: Gateway | None = None

    def __enter__(self) -> Fleet:
        try:
            for server in self.servers:
                server.start()
            args = [a for s in self.servers for a in ("--backend", s.url)]
            self.gateway = Gateway(
                *args,
                "--no-auth",
                "--routing",
                self.routing,
                "--probe-interval",
                "0.5",
                "--queue-timeout",
                "300",
                env=self.env,
            ).start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        if self.gateway is not None:
            self.gateway.stop()
        for server in self.servers:
            server.stop()


@pytest.fixture
def fleet_factory(llama_bin: str, model_path: str):
    def make(routing: str, **env: str) -> Fleet:
        return Fleet(llama_bin, model_path, routing, **env)

    return make


@pytest.mark.timeout(2400)  # two runs of 32 requests; minutes alone, more on shared cores
def test_affinity_reuses_the_cache_round_robin_does_not(fleet_factory) -> None:
    """Affinity against round-robin, the policy that ignores the cache. (Least-busy is
    compared in ``make bench``'s routing scenario, where it belongs: a third fleet here
    cost a third of the suite and asserted nothing.)"""
    runs: dict[str, Run] = {}
    decisions: dict[str, float] = {}
    for routing in ("affinity", "round-robin"):
        with fleet_factory(routing) as fleet:
            runs[routing] = asyncio.run(run_conversations(fleet.gateway.url))
            if routing == "affinity":
                for outcome in ("hit", "miss", "spill"):
                    decisions[outcome] = fleet.gateway.metric(
                        "llama_gateway_affinity_decisions_total", outcome=outcome
                    )
    report = {name: round(run.reuse(), 3) for name, run in runs.items()}
    print("cache reuse of turns 2-4 by policy:", report, "affinity decisions:", decisions)

    affinity = runs["affinity"]
    # Turns 2-4 find at least 90% of what the previous turn left in the backend's slot.
    assert affinity.reuse() >= 0.9
    # Streamed conversations are recorded without their answers, and still come home. (Not
    # 0.9 each: one turn that spills over because its home is full costs a four-conversation
    # half about 0.13; it happens in some runs — see docs/routing.md.)
    assert affinity.reuse(streamed=True) >= 0.8
    assert affinity.reuse(streamed=False) >= 0.8
    assert decisions["hit"] >= 22  # the turns after the first, but for a spill or two
    # Round-robin sends turns to the backend that has not seen them: clearly less reuse.
    assert runs["round-robin"].reuse() <= affinity.reuse() - 0.2


def _watch_busy(servers: list[LlamaServer], stop: threading.Event) -> list[list[int]]:
    seen: list[list[int]] = [[] for _ in servers]

    def watch() -> None:
        while not stop.is_set():
            for i, server in enumerate(servers):
                try:
                    seen[i].append(server.busy_slots())
                except httpx.HTTPError:
                    pass
            time.sleep(0.02)

    threading.Thread(target=watch, daemon=True).start()
    return seen


LONG_SYSTEM = " ".join(
    f"Rule {i}: when a customer asks about order {1000 + i}, check the shipping status, "
    f"apologise for any delay, and offer a discount code only if it is late by {i % 5 + 2} days."
    for i in range(5)
)


@pytest.mark.timeout(1200)
def test_a_shared_system_prompt_spills_over_to_both_backends(fleet_factory) -> None:
    with fleet_factory("affinity") as fleet:
        gateway, servers = fleet.gateway, fleet.servers

        async def ask(question: str) -> dict:
            async with httpx.AsyncClient(base_url=gateway.url, timeout=900) as client:
                body = {
                    "model": "smollm2",
                    "messages": [
                        {"role": "system", "content": LONG_SYSTEM},
                        {"role": "user", "content": question},
                    ],
                    "max_tokens": 16,
                }
                response = await client.post("/v1/chat/completions", json=body)
                response.raise_for_status()
                return response.json()

        # One request first: the shared prompt now has one home.
        asyncio.run(ask("Hello, where is my order 1003?"))
        time.sleep(0.3)  # the record is written after the response

        async def flood() -> list[dict]:
            return await asyncio.gather(
                *(ask(f"Customer {i} asks: where is my order {1000 + i % 5}?") for i in range(16))
            )

        stop = threading.Event()
        seen = _watch_busy(servers, stop)
        try:
            answers = asyncio.run(flood())
        finally:
            stop.set()
        assert len(answers) == 16
        served = [
            gateway.metric("llama_gateway_requests_total", backend=f"127.0.0.1:{s.port}")
            for s in servers
        ]
        spills = gateway.metric("llama_gateway_affinity_decisions_total", outcome="spill")
        hits = gateway.metric("llama_gateway_affinity_decisions_total", outcome="hit")
        print("served per backend:", served, "max busy:", [max(c) for c in seen], spills, hits)
        # The first home took what it could within the margin; the rest spilled over, and
        # both backends were busy at once — no death spiral onto one backend.
        assert spills > 0 and hits > 0
        assert all(count >= 4 for count in served)
        assert all(max(counts) >= 2 for counts in seen)
        # Both are homes of the shared prompt now: both answer it from cache.
        cached = [a["usage"]["prompt_tokens_details"]["cached_tokens"] for a in answers]
        assert sum(1 for c in cached if c > 0) >= 6
