"""``GET /runners``: the declared models, the runners the scheduler keeps and every backend's
slots and KV cache, for ``llama-gateway ps`` / ``models`` and for people. It shows states,
devices, addresses, model paths and pids, never a request's content: when an admin token is
set, only to its bearer."""

from __future__ import annotations

from typing import Any

from litestar import get
from litestar.di import NamedDependency

from gateway.admission.leases import Admission
from gateway.auth.guards import require_admin_token_if_set
from gateway.pool.backend import Backend
from gateway.pool.pool import Pool
from gateway.pool.stats import kv_cache_tokens, kv_cache_usage_ratio
from gateway.runners.scheduler import Scheduler


def _backend_view(backend: Backend, admission: Admission) -> dict[str, Any]:
    """What ``ps`` shows of one backend: its slots (busy by this gateway's leases) and the
    KV cache its slots hold (from its last ``/slots``)."""
    ratio = kv_cache_usage_ratio(backend.slot_states)
    return {
        "backend": backend.name,
        "url": backend.url,
        "model": backend.model_id,
        "state": str(backend.health),
        "slots_total": backend.slots,
        "slots_busy": admission.inflight(backend),
        "kv_cache_tokens": kv_cache_tokens(backend.slot_states),
        "kv_cache_ratio": None if ratio is None else round(ratio, 4),
    }


@get("/runners", guards=[require_admin_token_if_set])
async def runners(
    scheduler: NamedDependency[Scheduler],
    pool: NamedDependency[Pool],
    admission: NamedDependency[Admission],
) -> dict:
    return {
        "models": scheduler.models(),
        "runners": scheduler.runners(),
        "backends": [_backend_view(backend, admission) for backend in pool.backends],
        "restarts": scheduler.restarts,
    }


ROUTES = [runners]
