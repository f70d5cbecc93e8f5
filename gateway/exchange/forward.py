"""Requests that occupy no slot — tokenizing, counting tokens, applying a template: the key's
request limits apply, no lease and no queue. Sent to a ready backend of the model in the
routing policy's order, and once more to the next one when the failure allows it, as
``dispatch.py`` does for the rest."""

from __future__ import annotations

from gateway.errors import GatewayError, NoBackend
from gateway.exchange.dispatch import ATTEMPTS, Dispatcher, raise_for_client
from gateway.requests import ParsedRequest
from gateway.routing.policies import Snapshot
from gateway.store.apikeys import ApiKey
from gateway.telemetry.request import RequestTelemetry

__all__ = ["forward"]


async def forward(
    dispatcher: Dispatcher,
    request: ParsedRequest,
    *,
    key: ApiKey,
    telemetry: RequestTelemetry | None = None,
) -> bytes:
    """Send a request that occupies no slot (tokenizing, counting tokens, applying a
    template) to a ready backend of its model: the key's request limits apply, no lease
    and no queue. Returns the backend's answer."""
    telemetry = telemetry or RequestTelemetry.detached()
    model = dispatcher.pool.resolve(request.model)
    with telemetry.phase("limits"):
        dispatcher.authenticator.check_model(key, model)
        limits = await dispatcher.limiter.admit(key, 0)
    try:
        dispatcher.pool.demand(model, request.keep_alive)
        candidates = dispatcher.pool.serving(model)
        if not candidates:
            raise NoBackend(f"No backend of '{model}' is ready; try again.", retry_after=1.0)
        inflight = {b: dispatcher.admission.inflight(b) for b in candidates}
        ordered = await dispatcher.policy.choose(candidates, Snapshot(inflight))
        for attempt, backend in enumerate(ordered[:ATTEMPTS], start=1):
            headers = telemetry.upstream_headers(backend.name)
            try:
                upstream = await backend.client.open(request.endpoint, request.raw, headers)
                body = await upstream.read()
            except GatewayError as exc:
                telemetry.end_upstream(str(exc))
                dispatcher.judge(backend, exc)
                if not exc.retryable or attempt == min(ATTEMPTS, len(ordered)):
                    raise_for_client(exc)
                continue
            telemetry.end_upstream()
            return body
        raise AssertionError("unreachable: the last attempt returns or raises")
    finally:
        await dispatcher.limiter.settle(key, 0, 0, request_id=limits.request_id)
