"""What a routing strategy may do around one request, beside choosing its backend. The
dispatcher calls every hook for every request; :class:`RoutingHooks` itself does nothing, so
plain load balancing needs no ``if``. Prefix affinity (``affinity.py``) fills them in.

The order around one request:

1. :meth:`~RoutingHooks.lookup` — a store command sent with the limits check (one round trip;
   with the lease too when the lookup cannot change the order: one candidate);
2. :meth:`~RoutingHooks.snapshot` — the frozen pool state the policy chooses from;
3. :meth:`~RoutingHooks.placed` — admission granted a lease on a backend;
   :meth:`~RoutingHooks.body` and :meth:`~RoutingHooks.slot` — what is sent, and the slot used;
4. :meth:`~RoutingHooks.answered` — a non-streamed answer, decoded;
5. :meth:`~RoutingHooks.record` — a store command sent with the lease's release, or
   :meth:`~RoutingHooks.record_after` once it is back; :meth:`~RoutingHooks.forget` instead
   when the lease is given back unused (a retry elsewhere).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from gateway.pool.backend import Backend
from gateway.requests import ParsedRequest
from gateway.routing.policies import Snapshot
from gateway.store.commands import Command
from gateway.usage import Usage

__all__ = ["RoutingHooks"]


class RoutingHooks:
    """The hooks, doing nothing. A lease is any object that has a ``backend``."""

    def lookup(self, request: ParsedRequest, model: str) -> Command[Any] | None:
        return None

    async def snapshot(
        self, request: ParsedRequest, model: str, inflight: Mapping[Backend, int], lookup: Any
    ) -> Snapshot:
        """The pool as the policy sees it: ``inflight`` has a key for each candidate."""
        return Snapshot(inflight)

    def placed(self, request: ParsedRequest, model: str, snapshot: Snapshot, lease: Any) -> None:
        return None

    def body(self, lease: Any, body: bytes) -> bytes:
        return body

    def slot(self, lease: Any) -> int | None:
        """The slot the request was sent to, for traces and logs; ``None``: llama-server's
        choice, unknown."""
        return None

    def answered(self, lease: Any, answer: Any) -> None:
        return None

    def forget(self, lease: Any) -> None:
        return None

    def record(self, lease: Any, usage: Usage | None) -> Command[Any] | None:
        return None

    def record_after(self, lease: Any, closing: asyncio.Future[Any], usage: Usage | None) -> None:
        return None
