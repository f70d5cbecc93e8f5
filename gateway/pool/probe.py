"""Probe one backend: ``/health`` for liveness, ``/props`` and ``/v1/models`` for its slots,
context and model id, ``/slots`` for what each slot holds, ``/metrics`` (when the server has
it) for its own queue and speed. Updates the :class:`Backend` in place.
"""

from __future__ import annotations

import logging

from gateway.errors import BackendError, GatewayError
from gateway.pool.backend import Backend, Health
from gateway.pool.stats import parse_server_metrics

log = logging.getLogger(__name__)

PROBE_TIMEOUT = 3.0


async def probe(backend: Backend) -> None:
    client = backend.client
    try:
        await client.get_json("/health", timeout=PROBE_TIMEOUT)
    except BackendError as exc:
        # llama-server answers 503 on every path while the model loads.
        backend.health = Health.LOADING if exc.status == 503 else Health.UNHEALTHY
        backend.last_error = f"/health answered {exc.status}"
        return
    except GatewayError as exc:
        backend.health = Health.UNHEALTHY
        backend.last_error = str(exc)
        return

    try:
        props = await client.get_json("/props", timeout=PROBE_TIMEOUT)
        models = await client.get_json("/v1/models", timeout=PROBE_TIMEOUT)
        slots = await _slots(backend)
    except GatewayError as exc:
        backend.health = Health.UNHEALTHY
        backend.last_error = str(exc)
        return

    backend.slots = int(props.get("total_slots") or 0)
    backend.n_ctx = int(props.get("default_generation_settings", {}).get("n_ctx") or 0)
    data = models.get("data") or []
    backend.model_id = data[0]["id"] if data else props.get("model_alias")
    backend.slot_states = slots
    await _server_metrics(backend, props)
    backend.stats.track_capacity(props.get("model_path"), backend.n_ctx, backend.slots)
    # A good probe brings a failing backend back into rotation.
    backend.failures = 0
    backend.last_error = None
    backend.health = Health.READY


async def _slots(backend: Backend) -> list[dict]:
    try:
        slots = await backend.client.get_json("/slots", timeout=PROBE_TIMEOUT)
    except BackendError as exc:
        if exc.status == 501:  # started with --no-slots: the gateway still works without it
            return []
        raise
    return slots if isinstance(slots, list) else []


async def _server_metrics(backend: Backend, props: dict) -> None:
    """Read the backend's ``/metrics``, if it was started with ``--metrics``.

    A failure here is not a failed probe: the backend serves requests without it.
    """
    stats = backend.stats
    # Recent servers say in /props whether they have /metrics; for older ones, a 404 or 501
    # answer tells once.
    if not props.get("endpoint_metrics", stats.metrics_enabled):
        return
    try:
        text = await backend.client.get("/metrics", timeout=PROBE_TIMEOUT)
        counters = parse_server_metrics(text.decode(errors="replace"))
    except BackendError as exc:
        if exc.status in (404, 501):
            stats.metrics_enabled = False
        return
    except (GatewayError, ValueError) as exc:
        log.debug("backend %s: no /metrics reading: %s", backend.name, exc)
        return
    stats.observe(counters)
