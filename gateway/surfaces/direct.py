"""The forwarding routes' POSTs, answered without Litestar's walk to the handler and back.

A POST to a forwarding route (``surfaces/proxy.py``: every OpenAI, Anthropic and llama.cpp
route whose body goes to a backend) is the request the gateway exists for, and Litestar's
per-request machinery around its handler — the router, the exception middleware, dependency
injection, the response classes — cost a quarter of the gateway's core on it (0.446 → 0.331
ms a request without it; ``loadtest/results/ab-2026-12-03-direct.md``). :class:`DirectRoutes`,
a plain ASGI layer just inside the edge, answers those POSTs itself with the parts Litestar
would use: the route's own handler object (its guards, its body limit, its
:meth:`~gateway.surfaces.proxy.ForwardingRoute.answer`), the app's exception handlers for a
refusal, and Litestar's ``Request`` for the request. Left out is what these routes never use:
path parameters, dependency injection, DTOs, response hooks, cookies.

Litestar still owns the routes: they are registered with it and documented in
``/openapi.json``, and it answers everything this layer passes on — another method (405, a
CORS preflight), another path (a trailing slash), and, when CORS is on, a request from a
browser (its CORS layer adds the headers).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

from litestar import Litestar, Request, Response
from litestar.exceptions import HTTPException, InternalServerException
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.response import Stream
from litestar.routes import HTTPRoute

from gateway.exchange import Dispatcher
from gateway.surfaces.proxy import ForwardingRoute

__all__ = ["DirectRoutes"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
#: Litestar's ASGI handler (typed by Litestar's own scope and event types).
App = Callable[..., Awaitable[None]]


class DirectRoutes:
    """``app``'s ASGI handler, with the POSTs to its forwarding routes answered directly."""

    def __init__(self, app: Litestar, *, dispatcher: Dispatcher, cors: bool) -> None:
        self.inner: App = app.asgi_handler
        self.dispatcher = dispatcher
        #: Whether a request with an ``Origin`` goes to Litestar (its CORS layer answers it).
        self.cors = cors
        self.routes: dict[str, ForwardingRoute] = {
            route.path: handler
            for route in app.routes
            if isinstance(route, HTTPRoute) and not route.path_parameters
            for handler in route.route_handlers
            if isinstance(handler, ForwardingRoute)
        }
        self.body_limits = {
            handler: handler.resolve_request_max_body_size() or math.inf
            for handler in self.routes.values()
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = None
        if scope["type"] == "http" and scope["method"] == "POST":
            handler = self.routes.get(scope["path"])
        if handler is None or (self.cors and _from_browser(scope)):
            await self.inner(scope, receive, send)
            return
        # Where Litestar's router leaves it: the error handlers read the surface off it.
        scope["route_handler"] = handler
        request: Request[Any, Any, Any] = Request(scope, receive, send)  # type: ignore[arg-type]
        try:
            await handler.authorize_connection(request)
            body = await _body(scope, receive, self.body_limits[handler])
            response = await handler.answer(request, self.dispatcher, body)
        except Exception as exc:
            response = _refusal(handler, request, exc)
        # (a response that names no status has the route's, as with Litestar)
        status = response.status_code or handler.status_code
        if isinstance(response, Stream) and isinstance(response.iterator, AsyncIterator):
            await _stream(response, response.iterator, status, receive, send)
        elif type(response) is Response and isinstance(response.content, bytes):
            await _whole(response, status, response.content, send)
        else:  # nothing the routes answer today; Litestar knows how to send anything
            asgi = response.to_asgi_response(app=None, request=request)
            await asgi(scope, receive, send)  # type: ignore[arg-type]


async def _body(scope: Scope, receive: Receive, limit: float) -> bytes:
    """The request's body, read as Litestar's ``Request.body()`` reads it: refused with 413
    past ``limit`` — at once if its ``Content-Length`` says so."""
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            raise RequestEntityTooLarge
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise InternalServerException("client disconnected prematurely")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise RequestEntityTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _from_browser(scope: Scope) -> bool:
    return any(name == b"origin" for name, _ in scope["headers"])


def _refusal(handler: ForwardingRoute, request: Request, exc: Exception) -> Response:
    """The app's exception handler's answer to ``exc``, found as Litestar finds it (a
    status code's handler first, then the nearest class's)."""
    handlers = handler.resolve_exception_handlers()
    found = handlers.get(exc.status_code) if isinstance(exc, HTTPException) else None
    for kind in type(exc).__mro__:
        if found is not None:
            break
        found = handlers.get(kind)
    if found is None:
        raise exc
    return found(request, exc)


def _start(response: Response, status: int, length: int | None) -> Message:
    """The ``http.response.start`` Litestar would send for ``response``."""
    headers = [
        (name.lower().encode("latin-1"), str(value).encode("latin-1"))
        for name, value in response.headers.items()
    ]
    media_type = str(response.media_type)
    if media_type.startswith("text/"):
        media_type += "; charset=utf-8"
    headers.append((b"content-type", media_type.encode("latin-1")))
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    return {"type": "http.response.start", "status": status, "headers": headers}


async def _whole(response: Response, status: int, body: bytes, send: Send) -> None:
    await send(_start(response, status, len(body)))
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _stream(
    response: Stream, chunks: AsyncIterator[str | bytes], status: int, receive: Receive, send: Send
) -> None:
    """A ``Stream`` sent as Litestar sends one: each chunk as it comes, until the iterator
    ends or the client leaves — then the iterator is cancelled where it waits. The background
    task runs after, however the stream ended."""
    streaming = asyncio.current_task()
    ended = False

    def on_departure(listening: asyncio.Future[bool]) -> None:
        if not ended and not listening.cancelled() and streaming is not None:
            streaming.cancel()

    listening = asyncio.ensure_future(_departure(receive))
    listening.add_done_callback(on_departure)
    try:
        await send(_start(response, status, None))
        async for chunk in chunks:
            data = chunk if isinstance(chunk, bytes) else chunk.encode()
            await send({"type": "http.response.body", "body": data, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    except asyncio.CancelledError:
        if not listening.done() or listening.cancelled() or streaming is None:
            raise
        streaming.uncancel()  # the client left: the stream just ends
    finally:
        ended = True
        listening.cancel()
        close = getattr(chunks, "aclose", None)
        if close is not None:  # at once, not when the collector finds it (cut at a send)
            await close()
        if response.background is not None:
            await response.background()


async def _departure(receive: Receive) -> bool:
    """Returns once the client has gone (the edge's ``Departure`` answers ``receive`` then)."""
    while (await receive())["type"] != "http.disconnect":
        pass
    return True
