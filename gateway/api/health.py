"""Probes for orchestrators (``/health``, ``/ready``) and the Prometheus scrape (``/metrics``)."""

from __future__ import annotations

from litestar import Response, get
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE

from gateway.admission.local import Admission
from gateway.pool.pool import Pool
from gateway.telemetry.metrics import Metrics


@get("/health", sync_to_thread=False)
def health() -> dict:
    """The process is alive and serving HTTP."""
    return {"status": "ok"}


@get("/ready")
async def ready(pool: Pool) -> Response:
    """200 only while at least one backend can take requests."""
    backends = [
        {"backend": b.name, "model": b.model_id, "state": str(b.health), "slots": b.slots}
        for b in pool.backends
    ]
    status = HTTP_200_OK if pool.any_ready else HTTP_503_SERVICE_UNAVAILABLE
    return Response(
        {"status": "ready" if pool.any_ready else "unavailable", "backends": backends},
        status_code=status,
    )


@get("/metrics", media_type="text/plain; version=0.0.4; charset=utf-8")
async def metrics(pool: Pool, admission: Admission, metrics: Metrics) -> bytes:
    refresh_pool_gauges(metrics, pool, admission)
    return metrics.render()


def refresh_pool_gauges(metrics: Metrics, pool: Pool, admission: Admission) -> None:
    """Set the gauges that describe the pool as it is at scrape time."""
    models: set[str] = set()
    for backend in pool.backends:
        model = backend.model_id or "unknown"
        models.add(model)
        metrics.backend_up.labels(backend.name, model).set(1 if backend.ready else 0)
        metrics.slots_total.labels(backend.name, model).set(backend.slots)
        metrics.slots_busy.labels(backend.name, model).set(admission.inflight(backend))
    for model in models:
        metrics.queue_depth.labels(model).set(admission.queue_depth(model))
        inflight = sum(admission.inflight(b) for b in pool.backends if b.model_id == model)
        metrics.inflight.labels(model).set(inflight)


ROUTES = [health, ready, metrics]
