"""Prefix affinity on the request path: look up where a request's prefix is cached before the
policy chooses, pin the matching slot once a lease is granted, record where the prefix lives
after the response.

The steps around one request, keyed by its lease:

1. :meth:`AffinityRouter.lookup` — the request's fingerprint chain and the lookup of
   the longest match per backend, queued on the limits check's round trip; then
   :meth:`AffinityRouter.snapshot` — that and the slots known busy: a frozen
   :class:`Snapshot`.
2. :meth:`AffinityRouter.placed` — admission granted a lease: count hit, miss or spill and,
   with ``pin_slots``, pin the matching slot if it is surely idle; :meth:`body` then carries
   ``id_slot``.
3. :meth:`AffinityRouter.record` — after the last byte: the request's chain → the
   backend (and slot), queued on the round trip that gives the lease back
   (:meth:`record_after` instead, when the served slot must be read from ``/slots`` first). A
   non-streamed answer, decoded anyway for its usage, is recorded too (:meth:`answered`), so
   the next turn matches at full depth. Streams are recorded without their answer, as the
   relay decodes no content chunks: the next turn still matches the recorded prompt — one
   assistant message short of its full depth — and that names the backend that holds the
   conversation (``docs/routing.md`` has the measurement).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from gateway.errors import GatewayError
from gateway.pool.backend import Backend
from gateway.requests import ParsedRequest
from gateway.routing.fingerprint import Chain, answered_chain, request_chain
from gateway.routing.hooks import RoutingHooks
from gateway.routing.policies import Snapshot, outcome
from gateway.store.commands import Command
from gateway.store.prefixes import UNKNOWN_SLOT, AffinityStore, Match
from gateway.telemetry.metrics import Metrics
from gateway.usage import Usage

#: A request's prefix chain and, per backend URL, its longest recorded match.
Lookup = tuple[Chain, dict[str, Match]]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Route:
    """What affinity knows of one leased request."""

    request: ParsedRequest
    model: str
    backend: Backend
    chain: Chain
    #: The slot pinned with ``id_slot``; ``None``: llama-server chose.
    slot: int | None = None
    #: The decoded body of a non-streamed answer.
    answer: Any = None


class AffinityRouter(RoutingHooks):
    def __init__(self, store: AffinityStore, metrics: Metrics, *, pin_slots: bool = False) -> None:
        self.store = store
        self.metrics = metrics
        self.pin_slots = pin_slots
        self._routes: dict[object, Route] = {}  # by lease
        #: Slots this gateway pinned that are still in use (how many times each), per backend.
        self._pinned: dict[Backend, Counter[int]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        #: The busy slots read from each backend's last probe, kept with the list they were
        #: read from: a probe replaces ``slot_states``, and between two probes every request
        #: would otherwise scan the same list (128 slots on a big server). Weak: a backend
        #: that leaves the pool leaves this too.
        self._probed: weakref.WeakKeyDictionary[Backend, tuple[list, frozenset[int]]] = (
            weakref.WeakKeyDictionary()
        )

    def lookup(self, request: ParsedRequest, model: str) -> Command[Lookup]:
        """Where ``request``'s prefix is cached, as a command that rides on the limits
        check's round trip; its result is the :data:`Lookup` for :meth:`snapshot`."""
        chain = request_chain(request.endpoint, request.body)
        return self.store.lookup(model, chain.entries, chain.depths).then(lambda m: (chain, m))

    async def snapshot(
        self,
        request: ParsedRequest,
        model: str,
        inflight: Mapping[Backend, int],
        lookup: Lookup | None = None,
    ) -> Snapshot:
        chain, found = lookup if lookup is not None else await self.lookup(request, model)
        candidates = list(inflight)
        matches = {b: _still_held(b, found[b.url]) for b in candidates if b.url in found}
        pinned = {b: slots.total() for b, slots in self._pinned.items()}
        return Snapshot(
            inflight,
            matches,
            busy_slots={b: self._busy(b) for b in candidates},
            unplaced={b: max(inflight.get(b, 0) - pinned.get(b, 0), 0) for b in candidates},
            chain=chain,
        )

    def placed(self, request: ParsedRequest, model: str, snapshot: Snapshot, lease: Any) -> None:
        """``lease`` was granted for ``request``: count the outcome, pin the slot if allowed."""
        backend: Backend = lease.backend
        self.metrics.affinity_decisions.labels(model, outcome(snapshot, backend)).inc()
        route = Route(request, model, backend, snapshot.chain)
        if self.pin_slots:
            route.slot = snapshot.idle_matching_slot(backend)
            if route.slot is not None:
                self._pinned.setdefault(backend, Counter())[route.slot] += 1
                log.debug("pinned to slot %d of %s", route.slot, backend.name)
        self._routes[lease] = route

    def body(self, lease: Any, body: bytes) -> bytes:
        """The upstream body for ``lease``: with ``id_slot`` when its route pinned a slot."""
        route = self._routes.get(lease)
        if route is None or route.slot is None:
            return body
        return msgspec.json.encode({**msgspec.json.decode(body), "id_slot": route.slot})

    def slot(self, lease: Any) -> int | None:
        """The slot ``lease``'s request was pinned to, for logs and traces; ``None``: none."""
        route = self._routes.get(lease)
        return route.slot if route is not None else None

    def answered(self, lease: Any, answer: Any) -> None:
        """The decoded body of a non-streamed answer, to record with the prompt."""
        route = self._routes.get(lease)
        if route is not None:
            route.answer = answer

    def forget(self, lease: Any) -> None:
        """The lease was given back before a response (a retry elsewhere, a failure)."""
        route = self._routes.pop(lease, None)
        if route is not None:
            self._unpin(route)

    def record(self, lease: Any, usage: Usage | None) -> Command[None] | None:
        """The record of ``lease``'s route as a command for the round trip that gives the
        lease back, so recording costs no round trip of its own. ``None`` when there is
        nothing to record, or when the record has to wait for the close instead (with
        ``pin_slots``, the slot llama-server chose is read from ``/slots`` first):
        :meth:`record_after` does it then."""
        route = self._routes.get(lease)
        if route is None or (usage and route.slot is None and self.pin_slots):
            return None
        del self._routes[lease]
        self._unpin(route)
        if not usage:
            return None  # no complete answer: do not claim the backend holds it
        chain, held = self._recorded(route, usage)
        slot = UNKNOWN_SLOT if route.slot is None else route.slot
        return self.store.record(route.model, chain.entries, route.backend.url, slot, held)

    def record_after(self, lease: Any, closing: asyncio.Future[Any], usage: Usage | None) -> None:
        """Record ``lease``'s route once ``closing`` (release and accounting) is done — after
        the last byte. ``usage``: the response's; without it nothing is recorded."""
        route = self._routes.pop(lease, None)
        if route is None:
            return
        task = asyncio.ensure_future(self._record_when(route, closing, usage))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _record_when(
        self, route: Route, closing: asyncio.Future[Any], usage: Usage | None
    ) -> None:
        await asyncio.wait([closing])  # however it ended; the accountant logs its failures
        self._unpin(route)
        try:
            await self._record_found_slot(route, usage)
        except Exception:
            log.exception("recording affinity failed")

    async def _record_found_slot(self, route: Route, usage: Usage | None) -> None:
        """The backend now holds the request's prefix (and the answer, if decoded), in the
        slot ``/slots`` shows holding it."""
        if not usage:
            return  # no complete answer: do not claim the backend holds it
        chain, held = self._recorded(route, usage)
        slot = route.slot
        if slot is None and self.pin_slots:
            slot = await self._find_slot(route.backend, held)
        slot = UNKNOWN_SLOT if slot is None else slot
        await self.store.record(route.model, chain.entries, route.backend.url, slot, held)

    # -- steps ------------------------------------------------------------------------------

    @staticmethod
    def _recorded(route: Route, usage: Usage) -> tuple[Chain, int]:
        """The chain to record — with the answer when it was decoded — and the tokens the
        slot held after the request (its prompt and all but the last generated token)."""
        request = route.request
        chain = None
        if route.answer is not None:
            chain = answered_chain(request.endpoint, request.body, route.answer)
        held = usage.total - 1
        return chain or route.chain, held

    def _unpin(self, route: Route) -> None:
        if route.slot is None:
            return
        slots = self._pinned[route.backend]
        slots[route.slot] -= 1
        if slots[route.slot] <= 0:
            del slots[route.slot]
            if not slots:
                del self._pinned[route.backend]

    def _busy(self, backend: Backend) -> frozenset[int]:
        states = backend.slot_states
        known = self._probed.get(backend)
        if known is None or known[0] is not states:
            busy = frozenset(
                int(s.get("id", i)) for i, s in enumerate(states) if s.get("is_processing")
            )
            known = self._probed[backend] = (states, busy)
        pinned = self._pinned.get(backend)
        return known[1].union(pinned) if pinned else known[1]

    async def _find_slot(self, backend: Backend, held: int) -> int | None:
        """Which slot served a request llama-server placed itself — the OpenAI response does
        not say. After a task a slot holds its prompt and all but the last generated token
        (``n_prompt_tokens`` in ``/slots``); the one idle slot holding exactly that many is it.
        Ambiguous or unreadable: unknown."""
        try:
            slots = await backend.client.get_json("/slots", timeout=2.0)
        except GatewayError:
            return None
        if not isinstance(slots, list):
            return None
        found = [
            int(s["id"])
            for s in slots
            if isinstance(s, dict)
            and not s.get("is_processing")
            and s.get("n_prompt_tokens") == held
        ]
        return found[0] if len(found) == 1 else None


def _still_held(backend: Backend, match: Match) -> Match:
    """``match`` with its slot forgotten unless the last ``/slots`` probe shows the slot
    holding as many tokens as it did when recorded: a slot that served another prompt since
    would be pinned to a prefix it no longer has (llama-server then neither saves the slot's
    prompt to its RAM cache nor loads a better one)."""
    if match.slot < 0:
        return match
    states = [s for s in backend.slot_states if s.get("id") == match.slot]
    if states and states[0].get("n_prompt_tokens") == match.held:
        return match
    return Match(match.depth)
