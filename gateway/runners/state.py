"""What the scheduler knows: each declared model (:class:`ModelEntry`) and its runners
(:class:`Runner`), with the states ``/v1/models`` and ``/runners`` report."""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from gateway.config import ModelSpec
from gateway.pool.backend import Backend
from gateway.runners.driver import RunnerHandle
from gateway.runners.placement import Device, Footprint


class RunnerState(StrEnum):
    STARTING = "starting"  # waiting out a restart backoff, or loading the model
    READY = "ready"  # in the pool
    DRAINING = "draining"  # no new requests; stops when the last one ends
    STOPPED = "stopped"


class ModelState(StrEnum):
    LOADED = "loaded"
    LOADING = "loading"
    UNLOADED = "unloaded"
    FAILED = "failed"


@dataclass(eq=False)
class Runner:
    """One copy of a model on one device: placed before it starts, so its memory counts."""

    model: str
    device: Device
    need: int
    state: RunnerState = RunnerState.STARTING
    handle: RunnerHandle | None = None
    backend: Backend | None = None
    started_at: float = 0.0
    #: Last time it was seen busy (or became ready): the LRU order and the keep-alive clock.
    last_used: float = 0.0
    #: Since when its probes fail, while loaded; past the timeout it is restarted.
    unhealthy_since: float | None = None
    task: asyncio.Task[None] | None = None

    @property
    def live(self) -> bool:
        """Starting or serving: counts towards the model's replicas."""
        return self.state in (RunnerState.STARTING, RunnerState.READY)

    def describe(self, now: float, inflight: int) -> dict[str, Any]:
        info = self.handle.describe() if self.handle else {}
        return {
            "model": self.model,
            "state": str(self.state),
            "device": self.device.label,
            "memory_bytes": self.need,
            "inflight": inflight,
            "idle_seconds": round(now - self.last_used, 1) if self.last_used else None,
            **info,
        }


@dataclass(eq=False)
class ModelEntry:
    spec: ModelSpec
    #: Memory of one runner; ``None`` until the scheduler has read the GGUF header.
    footprint: Footprint | None = None
    runners: list[Runner] = field(default_factory=list)
    #: The keep-alive in force: the model's, or the last request's own.
    keep_alive: float = 300.0
    #: Last request for it (the keep-alive runs from here and from the last busy moment).
    last_demand: float = 0.0
    #: A request asked for it and not enough runners are live yet.
    wanted: bool = False
    #: Consecutive failed loads, the last error, and when the next try may start.
    failures: int = 0
    last_error: str | None = None
    retry_at: float = 0.0
    #: Restarts after a runner exited or stopped answering; the streak sets the backoff.
    restarts: int = 0
    crash_streak: int = 0

    @property
    def model(self) -> str:
        return self.spec.model_id

    @property
    def need(self) -> int:
        return self.footprint.total if self.footprint else 0

    def live(self) -> list[Runner]:
        return [r for r in self.runners if r.live]

    def ready(self) -> list[Runner]:
        return [r for r in self.runners if r.state is RunnerState.READY]

    @property
    def state(self) -> ModelState:
        if self.ready():
            return ModelState.LOADED
        if self.live() or self.wanted:  # starting, or requests wait for room to start it
            return ModelState.LOADING
        if self.failures:
            return ModelState.FAILED
        return ModelState.UNLOADED

    def status(self) -> dict[str, Any]:
        """The model as ``/v1/models`` and ``llama-gateway models`` show it."""
        return {
            "id": self.model,
            "state": str(self.state),
            "replicas": {"ready": len(self.ready()), "desired": self.spec.replicas},
            "aliases": list(self.spec.aliases),
            "keep_alive": None if math.isinf(self.keep_alive) else self.keep_alive,
            "memory_bytes": self.need or None,
            "restarts": self.restarts,
            "last_error": self.last_error,
        }
