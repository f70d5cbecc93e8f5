"""The walk every surface's handler takes once it has parsed its request: dispatch it and
hand the answer back — streamed event by event, or whole — with the key's limit headers.
Shared by the surfaces whose backends speak their API themselves (OpenAI, Anthropic,
llama.cpp's native routes); Ollama's translates on top of the same dispatcher."""

from __future__ import annotations

from collections.abc import Callable

from litestar import Request, Response
from litestar.background_tasks import BackgroundTask
from litestar.datastructures import State
from litestar.handlers import HTTPRouteHandler
from litestar.response import Stream

from gateway.exchange import Dispatcher
from gateway.exchange.batch import read_parts, split
from gateway.exchange.forward import forward
from gateway.requests import Endpoint, ParsedRequest, parse
from gateway.surfaces import Surface
from gateway.surfaces.direct import direct_post
from gateway.surfaces.openapi import documented

__all__ = ["SSE_HEADERS", "Reader", "describe", "forwarding", "proxy"]

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def describe(request: Request, dispatcher: Dispatcher, parsed: ParsedRequest) -> None:
    """Name the request's model for metrics and logs, and describe it to its trace."""
    state = request.scope["state"]  # (Litestar's ``request.state`` is a new object each time)
    model = state["model"] = dispatcher.pool.label_for(parsed.model)
    state["telemetry"].describe(model=model, max_tokens=parsed.max_tokens, stream=parsed.stream)


async def proxy(request: Request, dispatcher: Dispatcher, parsed: ParsedRequest) -> Response:
    """Send ``parsed`` down the path; the backend's answer as it wrote it (one filling
    several slots is split, and its parts' answers merged: ``exchange/batch.py``)."""
    describe(request, dispatcher, parsed)
    state = request.scope["state"]
    key, telemetry = state["api_key"], state["telemetry"]
    parts = split(parsed)
    if parts is not None:
        body, headers = await read_parts(dispatcher, parts, key=key, telemetry=telemetry)
        return Response(content=body, media_type="application/json", headers=headers)
    if not parsed.spec.takes_slot:
        body = await forward(dispatcher, parsed, key=key, telemetry=telemetry)
        return Response(content=body, media_type="application/json")
    exchange = await dispatcher.open(parsed, key=key, telemetry=telemetry)
    limit_headers = exchange.limits.headers()
    if parsed.stream:
        # The background task releases the lease even if the stream is never iterated
        # (client gone before the first byte); closing twice is a no-op.
        return Stream(
            dispatcher.stream(exchange),
            media_type="text/event-stream",
            headers={**SSE_HEADERS, **limit_headers},
            background=BackgroundTask(dispatcher.close, exchange),
        )
    body = await dispatcher.read_whole(exchange)
    return Response(content=body, media_type="application/json", headers=limit_headers)


#: How a surface reads one endpoint's body into the request value (``parse`` by default).
Reader = Callable[[Endpoint, bytes, Request], ParsedRequest]


def _parse(endpoint: Endpoint, raw: bytes, request: Request) -> ParsedRequest:
    return parse(endpoint, raw)


def forwarding(
    path: str | list[str],
    endpoint: Endpoint,
    surface: Surface,
    *,
    read: Reader = _parse,
    summary: str | None = None,
) -> HTTPRouteHandler:
    """The route of a surface whose backend speaks its API: read the body (``read``), send
    it down the path, hand the answer back — documented in ``/openapi.json``, and answered
    without Litestar's router (``surfaces/direct.py``)."""

    async def answer(request: Request, state: State, body: bytes) -> Response:
        return await proxy(request, state.dispatcher, read(endpoint, body, request))

    return direct_post(
        path,
        answer,
        name="forward",
        summary=summary or f"{endpoint}",
        operation_class=documented(endpoint, surface),
    )
