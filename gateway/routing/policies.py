"""Routing policies: the order in which a request's candidate backends are tried.

Every policy has the same shape — ``async def choose(candidates, snapshot)`` over a frozen
snapshot of load (and, for affinity, of where this request's prefix is cached) — so the caller
never asks which policy it holds. Admission takes the first candidate in the returned order
that has a free slot.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from gateway.config import RoutingPolicy
from gateway.pool.backend import Backend
from gateway.routing.fingerprint import Chain
from gateway.store.prefixes import Match


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The moment of choosing: requests in flight per backend and, for affinity routing, the
    longest recorded prefix of this request per backend and the slots known to be busy."""

    inflight: Mapping[Backend, int]
    matches: Mapping[Backend, Match] = field(default_factory=dict)
    #: Slot ids busy per backend: ``/slots`` says processing, or this gateway pinned them.
    busy_slots: Mapping[Backend, frozenset[int]] = field(default_factory=dict)
    #: In-flight requests per backend whose slot the gateway does not know (not pinned).
    unplaced: Mapping[Backend, int] = field(default_factory=dict)
    #: The request's prefix fingerprint.
    chain: Chain = field(default_factory=Chain)

    def load(self, backend: Backend) -> float:
        return self.inflight.get(backend, 0) / max(backend.slots, 1)

    def has_free_slot(self, backend: Backend) -> bool:
        return self.inflight.get(backend, 0) < backend.slots

    def depth(self, backend: Backend) -> int:
        match = self.matches.get(backend)
        return match.depth if match else 0

    def idle_matching_slot(self, backend: Backend) -> int | None:
        """The slot of ``backend`` that holds this request's prefix, if it is surely idle:
        known, not busy by the last ``/slots`` probe, not pinned by a request of this gateway,
        and no request of this gateway is on that backend in a slot it does not know."""
        match = self.matches.get(backend)
        if match is None or match.slot < 0 or match.slot >= backend.slots:
            return None
        if match.slot in self.busy_slots.get(backend, ()) or self.unplaced.get(backend, 0):
            return None
        return match.slot


class Policy(Protocol):
    async def choose(self, candidates: Sequence[Backend], snapshot: Snapshot) -> list[Backend]: ...


class LeastBusy:
    """The backend with the smallest share of its slots in use first."""

    async def choose(self, candidates: Sequence[Backend], snapshot: Snapshot) -> list[Backend]:
        return sorted(candidates, key=snapshot.load)


class RoundRobin:
    """Each request starts one further along the list; busy backends are skipped by admission."""

    def __init__(self) -> None:
        self._turn = itertools.count()

    async def choose(self, candidates: Sequence[Backend], snapshot: Snapshot) -> list[Backend]:
        if not candidates:
            return []
        ordered = sorted(candidates, key=lambda b: b.url)
        start = next(self._turn) % len(ordered)
        return ordered[start:] + ordered[:start]


class Affinity:
    """The backend that holds the longest prefix of this request first — if it has a free slot
    and its load (busy share of its slots) is not far above the least-loaded candidate's.
    Otherwise the request *spills over*: the least-loaded candidates go first (among equally
    eligible ones, the one with the longer match), and once one has served the request it
    holds the prefix too — a second home. Without a match: least-loaded first.

    How far is "not far" grows with how much of the prompt the backend holds:
    ``spill_margin * (0.5 + covered share)`` — with the default 0.6, from 0.3 for a backend
    holding a sliver of the prompt to 0.9 for one holding all of it. A conversation's next turn
    (most of its prompt cached) stays home unless home is much busier; a new conversation
    that shares only a system prompt balances early. The margin is what keeps one shared
    system prompt from pulling every request onto one backend while the others idle (the
    "death spiral" of sglang #14305).
    """

    def __init__(self, *, spill_margin: float = 0.6) -> None:
        if spill_margin < 0:
            raise ValueError("spill_margin must not be negative")
        self.spill_margin = spill_margin

    async def choose(self, candidates: Sequence[Backend], snapshot: Snapshot) -> list[Backend]:
        if not candidates:
            return []
        lightest = min(snapshot.load(b) for b in candidates)
        whole = max(snapshot.chain.depth, 1)

        def eligible(backend: Backend) -> bool:
            covered = min(snapshot.depth(backend) / whole, 1.0)
            margin = self.spill_margin * (0.5 + covered)
            return snapshot.has_free_slot(backend) and snapshot.load(backend) <= lightest + margin

        def rank(backend: Backend) -> tuple[bool, int, float, str]:
            ok = eligible(backend)
            return (
                not ok,
                -snapshot.depth(backend) if ok else 0,
                snapshot.load(backend),
                backend.url,
            )

        return sorted(candidates, key=rank)


class Outcome(StrEnum):
    """Where a request went, against where its prefix was cached."""

    HIT = "hit"  # on a backend with the longest recorded match
    MISS = "miss"  # no backend had a match
    SPILL = "spill"  # a backend had a match, the request went elsewhere


def outcome(snapshot: Snapshot, chosen: Backend) -> Outcome:
    best = max((m.depth for m in snapshot.matches.values()), default=0)
    if best <= 0:
        return Outcome.MISS
    return Outcome.HIT if snapshot.depth(chosen) >= best else Outcome.SPILL


def make_policy(name: str) -> Policy:
    match RoutingPolicy(name):
        case RoutingPolicy.AFFINITY:
            return Affinity()
        case RoutingPolicy.LEAST_BUSY:
            return LeastBusy()
        case RoutingPolicy.ROUND_ROBIN:
            return RoundRobin()
