"""The affinity score (longest match with a free slot wins; spill when loaded; least-loaded on
a miss), slot pinning, and the affinity store's TTL and size bound — against the embedded store
and a real ``redis-server``."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec

from gateway.admission.leases import Lease
from gateway.pool.backend import Backend, Health
from gateway.requests import Endpoint, ParsedRequest, parse
from gateway.routing.affinity import AffinityRouter
from gateway.routing.fingerprint import Chain, chat_chain
from gateway.routing.policies import Affinity, LeastBusy, Outcome, Snapshot, make_policy, outcome
from gateway.store.commands import Command, run
from gateway.store.connection import connect
from gateway.store.prefixes import AffinityStore, Match
from gateway.telemetry.metrics import Metrics
from gateway.usage import Usage


def _backend(name: str, slots: int = 4) -> Backend:
    return Backend(f"http://{name}:8080", client=None, health=Health.READY, slots=slots)  # type: ignore[arg-type]


A, B, C = _backend("a"), _backend("b"), _backend("c")


def _snap(inflight: dict, matches: dict | None = None, **extra) -> Snapshot:
    return Snapshot(inflight, matches or {}, **extra)


async def test_longest_match_with_a_free_slot_wins() -> None:
    policy = Affinity()
    snap = _snap({A: 1, B: 0, C: 0}, {A: Match(900), B: Match(120)})
    assert await policy.choose([A, B, C], snap) == [A, B, C]
    assert outcome(snap, A) is Outcome.HIT


async def test_a_second_home_beats_no_home_when_the_first_spills() -> None:
    policy = Affinity()
    # A holds the conversation, but is full.
    snap = _snap({A: 4, B: 0, C: 0}, {A: Match(900), B: Match(120)}, chain=Chain(("x",), (1000,)))
    order = await policy.choose([C, A, B], snap)
    assert order[0] is B and order[-1] is A
    assert outcome(snap, B) is Outcome.SPILL


async def test_spill_when_the_preferred_backend_is_loaded_or_full() -> None:
    policy = Affinity(spill_margin=0.6)
    whole = Chain(("x",), (1000,))
    # A holds all of the prompt: it may be up to 0.9 busier than the lightest.
    deep = _snap({A: 3, B: 0}, {A: Match(1000)}, chain=whole)
    assert (await policy.choose([A, B], deep))[0] is A
    full = _snap({A: 4, B: 0}, {A: Match(1000)}, chain=whole)  # but it needs a free slot
    assert (await policy.choose([A, B], full))[0] is B
    # A holds only a shared system prompt, a fifth of it: 0.42 at most, so two busy slots
    # of four (0.5) already spill.
    shallow = _snap({A: 2, B: 0}, {A: Match(200)}, chain=whole)
    assert (await policy.choose([A, B], shallow))[0] is B
    assert outcome(shallow, B) is Outcome.SPILL
    one = _snap({A: 1, B: 0}, {A: Match(200)}, chain=whole)
    assert (await policy.choose([A, B], one))[0] is A


async def test_least_loaded_on_a_miss() -> None:
    policy = Affinity()
    snap = _snap({A: 2, B: 1, C: 3})
    assert await policy.choose([A, B, C], snap) == [B, A, C]
    assert outcome(snap, B) is Outcome.MISS
    assert await policy.choose([], snap) == []


async def test_make_policy_knows_all_three() -> None:
    assert isinstance(make_policy("affinity"), Affinity)
    assert isinstance(make_policy("least-busy"), LeastBusy)
    assert await make_policy("round-robin").choose([A, B], _snap({})) in ([A, B], [B, A])


def test_only_a_surely_idle_matching_slot_is_pinned() -> None:
    matches = {A: Match(500, slot=2), B: Match(100)}
    assert _snap({A: 0}, matches).idle_matching_slot(A) == 2
    assert _snap({A: 0}, matches).idle_matching_slot(B) is None  # slot unknown
    busy = _snap({A: 1}, matches, busy_slots={A: frozenset({2})})
    assert busy.idle_matching_slot(A) is None
    # A request of this gateway runs on A in a slot it does not know: it might be slot 2.
    assert _snap({A: 1}, matches, unplaced={A: 1}).idle_matching_slot(A) is None
    assert _snap({A: 1}, matches, busy_slots={A: frozenset({0})}).idle_matching_slot(A) == 2


def _conversation(n: int, turns: int = 2) -> list[dict]:
    messages = [{"role": "system", "content": "Be brief."}]
    for t in range(turns):
        messages.append({"role": "user", "content": f"conversation {n}, question {t}"})
        messages.append({"role": "assistant", "content": f"answer {t}"})
    return messages


# -- the router: lookup, pin, record ------------------------------------------------------------


def _chat(messages: list[dict]) -> ParsedRequest:
    return parse(Endpoint.CHAT, msgspec.json.encode({"model": "m", "messages": messages}))


async def _closed() -> asyncio.Future[None]:
    done = asyncio.get_running_loop().create_future()
    done.set_result(None)
    return done


async def test_the_router_records_the_answer_after_close_and_the_next_turn_hits() -> None:
    metrics = Metrics()
    router = AffinityRouter(AffinityStore(connect("memory://")), metrics)
    turn_1 = _conversation(1, turns=1)[:-1]
    answer = {"role": "assistant", "content": "answer 0"}
    first = await router.snapshot(_chat(turn_1), "m", {A: 0, B: 0})
    assert first.matches == {}
    lease = Lease(B, "m", "lease")
    router.placed(_chat(turn_1), "m", first, lease)
    usage = Usage(20, 3)
    router.answered(lease, {"choices": [{"message": answer}]})
    router.record_after(lease, await _closed(), usage)
    await asyncio.sleep(0.05)

    turn_2 = [*turn_1, answer, {"role": "user", "content": "and then?"}]
    second = await router.snapshot(_chat(turn_2), "m", {A: 0, B: 0})
    assert second.depth(B) == chat_chain({"messages": [*turn_1, answer]}).depth
    assert await Affinity().choose([A, B], second) == [B, A]
    router.placed(_chat(turn_2), "m", second, Lease(B, "m", "lease"))
    assert metrics.affinity_decisions.labels("m", "miss")._value.get() == 1
    assert metrics.affinity_decisions.labels("m", "hit")._value.get() == 1


def _set(client: Any, name: str) -> Command[bool]:
    """A command of another part of the path, sent on the same round trip."""
    return Command.queued(client, lambda pipe: pipe.set(name, "1"), lambda reply: reply is True)


async def test_the_record_rides_on_the_pipeline_that_gives_the_lease_back() -> None:
    client = connect("memory://")
    router = AffinityRouter(AffinityStore(client), Metrics())
    turn_1 = _conversation(1, turns=1)[:-1]
    answer = {"role": "assistant", "content": "answer 0"}
    # The lookup rides on the limits check's round trip (here another command's).
    checked, lookup = await run(client, _set(client, "checked"), router.lookup(_chat(turn_1), "m"))
    assert checked is True
    first = await router.snapshot(_chat(turn_1), "m", {A: 0, B: 0}, lookup)
    assert first.matches == {}
    lease = Lease(B, "m", "lease")
    router.placed(_chat(turn_1), "m", first, lease)
    usage = Usage(20, 3)
    router.answered(lease, {"choices": [{"message": answer}]})
    record = router.record(lease, usage)
    assert record is not None and router.record(lease, usage) is None  # taken once
    released, _ = await run(client, _set(client, "released"), record)  # the release's own
    assert released is True and await client.get("released") == b"1"

    turn_2 = [*turn_1, answer, {"role": "user", "content": "and then?"}]
    _, lookup = await run(client, _set(client, "checked"), router.lookup(_chat(turn_2), "m"))
    second = await router.snapshot(_chat(turn_2), "m", {A: 0, B: 0}, lookup)
    assert second.depth(B) == chat_chain({"messages": [*turn_1, answer]}).depth
    assert await Affinity().choose([A, B], second) == [B, A]


async def test_the_router_pins_an_idle_matching_slot_once() -> None:
    store = AffinityStore(connect("memory://"))
    router = AffinityRouter(store, Metrics(), pin_slots=True)
    messages = _conversation(1)
    chain = chat_chain({"messages": messages[:3]})
    await store.record("m", chain.entries, A.url, slot=3, held=120)
    request = _chat(messages)
    # The last probe shows slot 3 holding another prompt: its record is stale, no pin.
    A.slot_states = [{"id": i, "n_prompt_tokens": 80} for i in range(4)]
    stale = await router.snapshot(request, "m", {A: 0, B: 0})
    assert stale.depth(A) == chain.depth and stale.idle_matching_slot(A) is None
    A.slot_states[3]["n_prompt_tokens"] = 120

    snap = await router.snapshot(request, "m", {A: 0, B: 0})
    first = Lease(A, "m", "lease")
    router.placed(request, "m", snap, first)
    assert msgspec.json.decode(router.body(first, request.upstream_body()))["id_slot"] == 3
    assert router.slot(first) == 3
    # A second request for the same prefix while slot 3 is busy: not pinned.
    snap = await router.snapshot(request, "m", {A: 1, B: 0})
    second = Lease(A, "m", "lease")
    router.placed(request, "m", snap, second)
    assert router.body(second, request.upstream_body()) == request.upstream_body()
    router.forget(second)
    router.forget(first)  # given back before a response: slot 3 is free again
    snap = await router.snapshot(request, "m", {A: 0, B: 0})
    assert snap.idle_matching_slot(A) == 3
    # Busy by the next probe (which replaces the list, as probe.py does): never pinned.
    A.slot_states = [*A.slot_states[:3], {**A.slot_states[3], "is_processing": True}]
    snap = await router.snapshot(request, "m", {A: 0, B: 0})
    assert snap.idle_matching_slot(A) is None
    A.slot_states = []
