"""One backend: a ``llama-server`` the gateway routes to, and what the gateway knows of it."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from gateway.pool.stats import ServerStats
from gateway.upstream.client import BackendClient


class Health(StrEnum):
    LOADING = "loading"  # answers 503 "Loading model", or not probed yet
    READY = "ready"
    UNHEALTHY = "unhealthy"  # unreachable, or failing requests: out of rotation


@dataclass(eq=False)
class Backend:
    url: str
    client: BackendClient
    health: Health = Health.LOADING
    #: The model id the backend reports in ``/v1/models``.
    model_id: str | None = None
    #: Parallel slots (``/props`` ``total_slots``) and context per slot.
    slots: int = 0
    n_ctx: int = 0
    #: Consecutive failed requests; at the pool's threshold the backend leaves rotation.
    failures: int = 0
    last_error: str | None = None
    #: The last ``/slots`` answer, for KV-cache accounting and routing: replaced whole by
    #: each probe, never changed in place (the affinity router keeps what it read from one
    #: list until the next replaces it).
    slot_states: list[dict[str, Any]] = field(default_factory=list)
    #: Load, speed and KV-cache size learnt by the probe (``/metrics``, GGUF header).
    stats: ServerStats = field(default_factory=ServerStats)
    #: Being drained: takes no new requests, finishes those in flight, then leaves the pool.
    draining: bool = False

    @functools.cached_property
    def name(self) -> str:
        """``host:port`` — the backend's label in metrics and logs (a request reads it
        about ten times; a backend's URL never changes)."""
        return urlsplit(self.url).netloc or self.url

    @property
    def ready(self) -> bool:
        return self.health is Health.READY and self.slots > 0 and not self.draining

    def __repr__(self) -> str:
        return f"Backend({self.name}, {self.health}, model={self.model_id}, slots={self.slots})"
