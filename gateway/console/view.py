"""The pool as the console draws it: one JSON-ready snapshot per tick of the page's stream.

Read from what the gateway already keeps — the pool's probes (``/slots``, ``/metrics``), the
admission's leases and queues, the scheduler's runners, the affinity counters and the requests
in flight — nothing here asks a backend anything.
"""

from __future__ import annotations

from typing import Any

from gateway.admission.leases import Admission
from gateway.pool.backend import Backend
from gateway.pool.pool import Pool
from gateway.pool.stats import kv_cache_tokens, kv_cache_usage_ratio
from gateway.runners.scheduler import Scheduler
from gateway.telemetry.metrics import Metrics
from gateway.telemetry.recent import InFlight, RecentRequests

_AFFINITY = "llama_gateway_affinity_decisions_total"


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def _slots(backend: Backend, holders: list[InFlight]) -> list[dict[str, Any]]:
    """Each slot from the last ``/slots``; the key holding it where the slot is known (a
    request pinned to it), the rest of the holders are listed with the backend."""
    by_slot = {h.slot: h.key for h in holders if h.slot is not None}
    return [
        {
            "id": slot.get("id", index),
            "busy": bool(slot.get("is_processing")),
            "tokens": int(slot.get("n_prompt_tokens") or 0),
            "n_ctx": int(slot.get("n_ctx") or 0),
            "key": by_slot.get(slot.get("id", index)),
        }
        for index, slot in enumerate(backend.slot_states)
    ]


def _backend(
    backend: Backend, admission: Admission, recent: RecentRequests, runner: dict[str, Any] | None
) -> dict[str, Any]:
    stats, states = backend.stats, backend.slot_states
    holders = recent.inflight(backend.name)
    return {
        "name": backend.name,
        "model": backend.model_id,
        "health": str(backend.health),
        "ready": backend.ready,
        "draining": backend.draining,
        "last_error": backend.last_error,
        "slots_total": backend.slots,
        "slots_leased": admission.inflight(backend),
        "slots": _slots(backend, holders),
        "inflight": [
            {"key": h.key, "model": h.model, "slot": h.slot, "seconds": h.seconds} for h in holders
        ],
        "kv_cache_tokens": kv_cache_tokens(states) if states else None,
        "kv_cache_ratio": _round(kv_cache_usage_ratio(states), 4),
        "kv_cache_bytes": stats.kv_cache_capacity_bytes,
        "prompt_tokens_per_second": _round(stats.prompt_tokens_per_second),
        "generation_tokens_per_second": _round(stats.generation_tokens_per_second),
        "requests_deferred": stats.requests_deferred,
        "runner": runner,
    }


def _affinity(metrics: Metrics, model: str) -> dict[str, int]:
    def count(outcome: str) -> int:
        value = metrics.registry.get_sample_value(_AFFINITY, {"model": model, "outcome": outcome})
        return int(value or 0)

    return {outcome: count(outcome) for outcome in ("hit", "spill", "miss")}


def pool_view(
    *,
    pool: Pool,
    admission: Admission,
    scheduler: Scheduler,
    metrics: Metrics,
    recent: RecentRequests,
) -> dict[str, Any]:
    """Backends with their slots and runner, models with their queue, runners not yet in
    the pool (starting, or waiting out a backoff)."""
    runners = scheduler.runners()
    by_url = {r["url"]: r for r in runners if r.get("url")}
    backends = [
        _backend(b, admission, recent, by_url.pop(b.url, None))
        for b in sorted(pool.backends, key=lambda b: (b.model_id or "", b.name))
    ]
    supervised = {m["id"]: m for m in scheduler.models()}
    names = sorted({b.model_id for b in pool.backends if b.model_id} | set(supervised))
    models = [
        {
            "id": name,
            "queue_depth": admission.queue_depth(name),
            "inflight": sum(b["slots_leased"] for b in backends if b["model"] == name),
            "backends": sum(1 for b in backends if b["model"] == name and b["ready"]),
            "affinity": _affinity(metrics, name),
            "supervised": supervised.get(name),
        }
        for name in names
    ]
    return {
        "backends": backends,
        "models": models,
        # Left over once each backend took its runner: those not (or no longer) in the pool.
        "pending_runners": [*by_url.values(), *(r for r in runners if not r.get("url"))],
    }
