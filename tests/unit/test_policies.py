"""``gateway/routing/policies.py``: the order in which candidate backends are tried."""

from __future__ import annotations

import pytest

from gateway.pool.backend import Backend, Health
from gateway.routing.policies import LeastBusy, RoundRobin, Snapshot, make_policy
from gateway.upstream.client import BackendClient


def _backend(url: str, slots: int = 4) -> Backend:
    # BackendClient opens its session on first use only: nothing is connected here.
    return Backend(url, BackendClient(url), health=Health.READY, model_id="m", slots=slots)


async def test_least_busy_orders_by_share_of_slots() -> None:
    a = _backend("http://a:1", slots=4)  # 2/4 = 0.5
    b = _backend("http://b:1", slots=8)  # 3/8 = 0.375
    c = _backend("http://c:1", slots=2)  # 2/2 = 1.0
    d = _backend("http://d:1", slots=4)  # 0/4
    snapshot = Snapshot({a: 2, b: 3, c: 2, d: 0})
    assert await LeastBusy().choose([a, b, c, d], snapshot) == [d, b, a, c]


async def test_least_busy_ties_keep_candidate_order() -> None:
    a, b, c = (_backend(f"http://{n}:1") for n in "abc")
    snapshot = Snapshot({a: 1, b: 1, c: 1})
    assert await LeastBusy().choose([c, a, b], snapshot) == [c, a, b]
    assert await LeastBusy().choose([b, c, a], snapshot) == [b, c, a]


async def test_least_busy_treats_unknown_backends_as_idle() -> None:
    busy = _backend("http://busy:1")
    fresh = _backend("http://fresh:1")
    assert await LeastBusy().choose([busy, fresh], Snapshot({busy: 1})) == [fresh, busy]


async def test_least_busy_does_not_divide_by_zero_slots() -> None:
    unknown = _backend("http://zero:1", slots=0)
    other = _backend("http://other:1", slots=4)
    snapshot = Snapshot({unknown: 1, other: 1})
    assert snapshot.load(unknown) == 1.0
    assert await LeastBusy().choose([unknown, other], snapshot) == [other, unknown]


async def test_least_busy_returns_a_new_list() -> None:
    candidates = [_backend("http://a:1"), _backend("http://b:1")]
    ordered = await LeastBusy().choose(candidates, Snapshot({}))
    assert ordered == candidates
    assert ordered is not candidates


async def test_round_robin_rotates_over_a_stable_order() -> None:
    a, b, c = (_backend(f"http://{n}:1") for n in "abc")
    policy = RoundRobin()
    empty = Snapshot({})
    # The order the candidates arrive in does not matter: the rotation is over URLs.
    seen = [
        await policy.choose([c, a, b], empty),
        await policy.choose([b, c, a], empty),
        await policy.choose([a, b, c], empty),
        await policy.choose([c, b, a], empty),
    ]
    assert seen == [[a, b, c], [b, c, a], [c, a, b], [a, b, c]]


async def test_round_robin_ignores_load() -> None:
    a, b = _backend("http://a:1"), _backend("http://b:1")
    policy = RoundRobin()
    snapshot = Snapshot({a: 4, b: 0})
    firsts = [(await policy.choose([a, b], snapshot))[0] for _ in range(4)]
    assert firsts == [a, b, a, b]


async def test_round_robin_without_candidates() -> None:
    policy = RoundRobin()
    assert await policy.choose([], Snapshot({})) == []
    a, b = _backend("http://a:1"), _backend("http://b:1")
    assert await policy.choose([a, b], Snapshot({})) == [a, b]


async def test_round_robin_instances_are_independent() -> None:
    a, b = _backend("http://a:1"), _backend("http://b:1")
    first, second = RoundRobin(), RoundRobin()
    await first.choose([a, b], Snapshot({}))
    assert await second.choose([a, b], Snapshot({})) == [a, b]


def test_make_policy_by_name() -> None:
    assert isinstance(make_policy("least-busy"), LeastBusy)
    assert isinstance(make_policy("round-robin"), RoundRobin)
    assert make_policy("round-robin") is not make_policy("round-robin")


@pytest.mark.parametrize("name", ["nope", "", "least_busy", "Round-Robin"])
def test_make_policy_refuses_unknown_names(name: str) -> None:
    with pytest.raises(ValueError, match="RoutingPolicy"):
        make_policy(name)
