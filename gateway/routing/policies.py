"""Routing policies: the order in which a request's candidate backends are tried.

Every policy has the same shape — ``async def choose(candidates, snapshot)`` over a frozen
snapshot of load — so the caller never asks which policy it holds. Admission takes the first
candidate in the returned order that has a free slot.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from gateway.pool.backend import Backend


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Load at the moment of choosing: requests in flight per backend."""

    inflight: Mapping[Backend, int]

    def load(self, backend: Backend) -> float:
        return self.inflight.get(backend, 0) / max(backend.slots, 1)


class Policy(Protocol):
    async def choose(self, candidates: Sequence[Backend], snapshot: Snapshot) -> list[Backend]: ...


class PolicyName(StrEnum):
    LEAST_BUSY = "least-busy"
    ROUND_ROBIN = "round-robin"


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


def make_policy(name: str) -> Policy:
    match PolicyName(name):
        case PolicyName.LEAST_BUSY:
            return LeastBusy()
        case PolicyName.ROUND_ROBIN:
            return RoundRobin()
