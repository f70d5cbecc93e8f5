"""What the probe learns of a backend beyond its health: load and speed from its ``/metrics``,
KV-cache use from its ``/slots``, KV-cache size from its model's GGUF header.

Speeds come from llama-server's monotonic counters (tokens and seconds spent, for prompts and
for generation), as the difference between two probes. Its ``*_tokens_seconds`` gauges are
not used: every scrape resets them, so they are only right for a server's single scraper.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from gateway.gguf import (
    GGUFError,
    ModelGeometry,
    kv_cache_bytes,
    kv_cache_types,
    read_geometry,
)

log = logging.getLogger(__name__)

_COUNTERS = {
    "llamacpp:prompt_tokens_total": "prompt_tokens",
    "llamacpp:prompt_seconds_total": "prompt_seconds",
    "llamacpp:tokens_predicted_total": "predicted_tokens",
    "llamacpp:tokens_predicted_seconds_total": "predicted_seconds",
    "llamacpp:requests_deferred": "requests_deferred",
}


@dataclass(frozen=True, slots=True)
class ServerCounters:
    """One reading of a llama-server's ``/metrics``."""

    prompt_tokens: float = 0.0
    prompt_seconds: float = 0.0
    predicted_tokens: float = 0.0
    predicted_seconds: float = 0.0
    requests_deferred: float = 0.0


def parse_server_metrics(text: str) -> ServerCounters:
    """The counters the gateway uses, from llama-server's Prometheus text."""
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in _COUNTERS:
                values[_COUNTERS[sample.name]] = float(sample.value)
    return ServerCounters(**values)


def _rate(tokens: float, seconds: float) -> float | None:
    return tokens / seconds if seconds > 0 and tokens >= 0 else None


def kv_cache_tokens(slots: list[dict[str, Any]]) -> int:
    """Tokens held in the KV cache: each slot's ``n_prompt_tokens`` (prompt and generated
    tokens of its last task; kept after the task ends, as the cache is)."""
    return sum(int(slot.get("n_prompt_tokens") or 0) for slot in slots)


def kv_cache_usage_ratio(slots: list[dict[str, Any]]) -> float | None:
    """Tokens held over the context of the slots; ``None`` without ``/slots``."""
    capacity = sum(int(slot.get("n_ctx") or 0) for slot in slots)
    return kv_cache_tokens(slots) / capacity if capacity else None


@dataclass(eq=False)
class ServerStats:
    #: llama-server's own queue (tasks waiting for a slot), from ``/metrics``.
    requests_deferred: float | None = None
    #: Tokens per second of processing time, per request, between the last two probes
    #: (kept while the backend is idle).
    prompt_tokens_per_second: float | None = None
    generation_tokens_per_second: float | None = None
    #: Bytes of the KV cache of all slots, from the GGUF header; ``None`` if unknown.
    kv_cache_capacity_bytes: int | None = None
    #: False once ``/metrics`` answered 404/501 (not started with ``--metrics``).
    metrics_enabled: bool = True

    # What the gateway knows of how the runner was started (runners it started itself).
    model_file: str | None = None
    kv_unified: bool = False
    cache_type_k: str = "f16"
    cache_type_v: str = "f16"

    _last: ServerCounters | None = None
    _geometry_path: str | None = None
    _geometry: asyncio.Task[ModelGeometry | None] | None = field(default=None, repr=False)

    def describe_launch(self, model_file: str, args: list[str]) -> None:
        """Facts from the runner's command line: its model file, KV cache types and layout."""
        self.model_file = model_file
        self.cache_type_k, self.cache_type_v = kv_cache_types(args)
        self.kv_unified = any(a in ("-kvu", "--kv-unified") for a in args)

    # -- from /metrics ----------------------------------------------------------------------

    def observe(self, counters: ServerCounters) -> None:
        """Take a new reading; speeds are the counters' growth since the previous one."""
        self.requests_deferred = counters.requests_deferred
        last = self._last
        if last is None or counters.predicted_tokens < last.predicted_tokens:
            last = ServerCounters()  # first reading, or the server restarted: since its start
        self._last = counters
        prompt = _rate(
            counters.prompt_tokens - last.prompt_tokens,
            counters.prompt_seconds - last.prompt_seconds,
        )
        generation = _rate(
            counters.predicted_tokens - last.predicted_tokens,
            counters.predicted_seconds - last.predicted_seconds,
        )
        if prompt is not None:
            self.prompt_tokens_per_second = prompt
        if generation is not None:
            self.generation_tokens_per_second = generation

    @property
    def counters(self) -> ServerCounters | None:
        """The last ``/metrics`` reading (``None`` before one): the console's throughput."""
        return self._last

    # -- from the GGUF header ---------------------------------------------------------------

    def track_capacity(self, model_path: str | None, n_ctx_slot: int, slots: int) -> None:
        """Keep :attr:`kv_cache_capacity_bytes` current. The header is read once per model
        file, in a thread, in the background; the result shows from the next probe on."""
        path = self.model_file or model_path
        if not path or n_ctx_slot <= 0:
            return
        if path != self._geometry_path:
            self._geometry_path = path
            self.kv_cache_capacity_bytes = None
            self._geometry = asyncio.create_task(_read_geometry(path), name=f"gguf {path}")
            return
        task = self._geometry
        if task is None or not task.done():
            return
        geometry = None if task.cancelled() else task.result()
        if geometry is None:
            return
        # Without a unified KV each slot has n_ctx_slot cells of its own; with one they share.
        cells = n_ctx_slot if self.kv_unified else n_ctx_slot * slots
        self.kv_cache_capacity_bytes = kv_cache_bytes(
            geometry, cells, self.cache_type_k, self.cache_type_v
        )


async def _read_geometry(path: str) -> ModelGeometry | None:
    """The model's geometry, or ``None`` when its file is not readable here (a backend on
    another machine or in a container): then the capacity is simply not known."""
    try:
        return await asyncio.to_thread(read_geometry, path)
    except GGUFError as exc:
        log.info("no KV-cache capacity for %s: %s", path, exc)
        return None
