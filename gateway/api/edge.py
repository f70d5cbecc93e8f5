"""The one ASGI layer around the whole app: what happens to every request before the router
sees it, and to every answer on its way out.

Plain ASGI around Litestar (whose own middleware runs per route, after the router: this must
see its 404s and 405s too). In the order a request meets them:

1. a request target longer than ``max_url_bytes`` is refused with 414, repeated slashes in
   the path are collapsed (``api/security.py``);
2. the request gets its id and, on an API path, its telemetry: a span and a log line
   (``telemetry/request.py``);
3. a request that sends a body is watched for its client's departure, which cancels it
   until its answer has started (``api/departures.py``);

and every answer carries ``x-request-id`` and the security headers. The three were
middlewares of their own, nested; one layer makes one ``send`` wrapper and one coroutine
frame a request instead of three (the bare ASGI call of a trivial handler: 41-43 µs through
the three, 30-31 through this; ``loadtest/results/ab-2026-12-03-edge.md``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from gateway.api.departures import Departure, watched
from gateway.api.security import (
    refuse_long_target,
    routed_path,
    target_too_long,
    with_security_headers,
)
from gateway.telemetry.request import (
    Recorder,
    RequestTelemetry,
    is_api_path,
    request_headers,
    request_id_from,
)
from gateway.telemetry.tracing import Tracing

__all__ = ["EdgeMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
#: The app within (Litestar's ASGI handler, typed by Litestar's own scope and event types).
App = Callable[..., Awaitable[None]]


class EdgeMiddleware:
    def __init__(
        self,
        app: App,
        *,
        tracing: Tracing,
        max_url_bytes: int,
        recorder: Recorder | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.tracing = tracing
        self.max_url_bytes = max_url_bytes
        self.recorder = recorder
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Every header decoded only for a trace to continue; else just the request id's.
        headers = request_headers(scope, every=self.tracing.enabled)
        request_id = request_id_from(headers)
        raw_id = request_id.encode()
        telemetry: RequestTelemetry | None = None
        departure: Departure | None = None

        async def send_from_edge(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = with_security_headers(message.get("headers", ()))
                extra.append((b"x-request-id", raw_id))
                message = {**message, "headers": extra}
                if telemetry is not None:
                    telemetry.http_status = message["status"]
                if departure is not None:
                    departure.answering()
            await send(message)

        if target_too_long(scope, self.max_url_bytes):
            await refuse_long_target(scope, send_from_edge, self.max_url_bytes)
            return
        path = routed_path(scope["path"])
        if path is not scope["path"]:
            scope = {**scope, "path": path}
        if is_api_path(path):
            telemetry = RequestTelemetry.open(
                scope,
                headers,
                request_id,
                tracing=self.tracing,
                clock=self.clock,
                recorder=self.recorder,
            )
        if watched(scope["method"]):
            departure = Departure(receive)
            receive = departure.receive
        try:
            await self.app(scope, receive, send_from_edge)
        except asyncio.CancelledError:
            if departure is None or not departure.absorb(telemetry):
                raise
        finally:
            if departure is not None:
                await departure.stop()
            if telemetry is not None:
                telemetry.answered(scope)
