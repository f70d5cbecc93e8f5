"""Probes for orchestrators (``/health``, ``/ready``) and the Prometheus scrape (``/metrics``).

``/ready``'s status code is for every probe; its list of backends only for the admin (when an
admin token is set). ``/metrics`` wants the metrics token when one is set (auth/guards.py)."""

from __future__ import annotations

from litestar import Request, Response, get
from litestar.di import NamedDependency
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE

from gateway.admission.leases import Admission
from gateway.auth.guards import may_see_internals, require_metrics_token
from gateway.pool.backend import Backend
from gateway.pool.pool import Pool
from gateway.pool.stats import kv_cache_tokens, kv_cache_usage_ratio
from gateway.telemetry.metrics import BackendReading, Metrics, ModelReading


@get("/health", sync_to_thread=False)
def health() -> dict:
    """The process is alive and serving HTTP."""
    return {"status": "ok"}


@get("/ready")
async def ready(
    request: Request, pool: NamedDependency[Pool], admission: NamedDependency[Admission]
) -> Response:
    """200 only while at least one backend can take requests and the store answers — asked
    now (a ``PING`` of at most half a second), not as last seen."""
    backends = [
        {"backend": b.name, "model": b.model_id, "state": str(b.health), "slots": b.slots}
        for b in pool.backends
    ]
    store_ok = await admission.check_store()
    ok = pool.any_ready and store_ok
    return Response(
        {
            "status": "ready" if ok else "unavailable",
            "store": store_ok,
            # Backend addresses and models: not for anyone who can reach the port.
            **({"backends": backends} if may_see_internals(request) else {}),
        },
        status_code=HTTP_200_OK if ok else HTTP_503_SERVICE_UNAVAILABLE,
    )


@get(
    "/metrics",
    media_type="text/plain; version=0.0.4; charset=utf-8",
    guards=[require_metrics_token],
)
async def metrics(
    pool: NamedDependency[Pool],
    admission: NamedDependency[Admission],
    metrics: NamedDependency[Metrics],
) -> bytes:
    refresh_pool_gauges(metrics, pool, admission)
    return metrics.render()


def refresh_pool_gauges(metrics: Metrics, pool: Pool, admission: Admission) -> None:
    """Set the gauges that describe the pool as it is at scrape time."""
    backends = [_reading(backend, admission) for backend in pool.backends]
    models = sorted({reading.model for reading in backends})
    metrics.set_pool(
        backends,
        [
            ModelReading(
                model,
                queue_depth=admission.queue_depth(model),
                inflight=sum(r.slots_busy for r in backends if r.model == model),
            )
            for model in models
        ],
    )


def _reading(backend: Backend, admission: Admission) -> BackendReading:
    stats, slots = backend.stats, backend.slot_states
    return BackendReading(
        backend=backend.name,
        model=backend.model_id or "unknown",
        up=backend.ready,
        slots_total=backend.slots,
        slots_busy=admission.inflight(backend),
        requests_deferred=stats.requests_deferred,
        kv_cache_tokens=kv_cache_tokens(slots) if slots else None,
        kv_cache_usage_ratio=kv_cache_usage_ratio(slots),
        kv_cache_capacity_bytes=stats.kv_cache_capacity_bytes,
        prompt_tokens_per_second=stats.prompt_tokens_per_second,
        generation_tokens_per_second=stats.generation_tokens_per_second,
    )


ROUTES = [health, ready, metrics]
