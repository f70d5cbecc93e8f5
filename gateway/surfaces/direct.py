"""The POSTs that carry a request to a backend, answered without Litestar's walk to the
handler and back.

Those POSTs (every OpenAI, Anthropic and llama.cpp route whose body goes to a backend —
``surfaces/proxy.py`` — and Ollama's chat, generate and embed) are the requests the gateway
exists for, and Litestar's per-request machinery around their handlers — the router, the
exception middleware, dependency injection, the response classes — cost a quarter of the
gateway's core on them (0.446 → 0.348 ms a request; ``loadtest/results/ab-2026-12-03-direct.md``).
Such a route is made by :func:`direct_post`: a Litestar route handler that also holds its
:data:`Answer`. :class:`DirectRoutes`, a plain ASGI layer just inside the edge, answers a POST
to it with the parts Litestar would use — the route's own handler object (its guards, its body
limit), the app's exception handlers for a refusal, Litestar's ``Request`` — and writes the
answer itself. Left out is what these routes never use: path parameters, dependency injection,
DTOs, response hooks, cookies.

Litestar still owns the routes: they are registered with it and documented in
``/openapi.json``, and it answers everything this layer passes on — another method (405, a
CORS preflight), another path (a trailing slash), and, when CORS is on, a request from a
browser (its CORS layer adds the headers); its handler calls the same :data:`Answer`.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

from litestar import HttpMethod, Litestar, Request, Response
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.exceptions import HTTPException, InternalServerException
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.handlers import HTTPRouteHandler
from litestar.response import Stream
from litestar.routes import HTTPRoute

__all__ = ["Answer", "DirectRoute", "DirectRoutes", "direct_post"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
#: Litestar's ASGI handler (typed by Litestar's own scope and event types).
App = Callable[..., Awaitable[None]]
#: A direct route's body: the request, the app's state (its parts: ``state.dispatcher``…) and
#: the request's body, read; the answer.
Answer = Callable[[Request, State, bytes], Awaitable[Response]]


class DirectRoute(HTTPRouteHandler):
    """A POST route whose :attr:`answer` :class:`DirectRoutes` may call without Litestar's
    router; made by :func:`direct_post`."""

    answer: Answer

    async def authorize_connection(self, connection: ASGIConnection) -> None:
        """Litestar's, the guards handed the route itself: Litestar hands each guard a
        ``copy()`` of it (~25 µs a request), which only a guard that changes the route would
        need — none of the gateway's does."""
        for guard in self.resolve_guards():
            await guard(connection, self)  # type: ignore[misc]


def direct_post(path: str | list[str], answer: Answer, *, name: str, **options: Any) -> DirectRoute:
    """A POST route answered by ``answer`` — through Litestar (a request it keeps: see the
    module's docstring) or straight from :class:`DirectRoutes` alike. ``name`` is the
    handler's, which ``/openapi.json`` builds the operation's id (and default summary) from;
    ``options``: the route handler's (``summary``, ``operation_class``…)."""

    async def through_litestar(request: Request) -> Response:
        return await answer(request, request.app.state, await request.body())

    through_litestar.__name__ = through_litestar.__qualname__ = name
    route = DirectRoute(path, http_method=HttpMethod.POST, status_code=200, **options)
    route.answer = answer
    route(through_litestar)
    return route


class DirectRoutes:
    """``app``'s ASGI handler, with the POSTs to its direct routes answered directly."""

    def __init__(self, app: Litestar, *, cors: bool) -> None:
        self.inner: App = app.asgi_handler
        self.state = app.state
        #: Whether a request with an ``Origin`` goes to Litestar (its CORS layer answers it).
        self.cors = cors
        self.routes: dict[str, DirectRoute] = {
            route.path: handler
            for route in app.routes
            if isinstance(route, HTTPRoute) and not route.path_parameters
            for handler in route.route_handlers
            if isinstance(handler, DirectRoute)
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
            response = await handler.answer(request, self.state, body)
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
            return b"".join(chunks)


def _from_browser(scope: Scope) -> bool:
    return any(name == b"origin" for name, _ in scope["headers"])


def _refusal(handler: DirectRoute, request: Request, exc: Exception) -> Response:
    """The app's exception handler's answer to ``exc``, found as Litestar finds it (a
    status code's handler first, then the nearest class's)."""
    handlers = handler.resolve_exception_handlers()
    found = handlers.get(exc.status_code) if isinstance(exc, HTTPException) else None
    if found is None:
        found = next((handlers[kind] for kind in type(exc).__mro__ if kind in handlers), None)
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
    assert streaming is not None  # (an ASGI app runs in a task)
    ended = False

    def on_departure(listening: asyncio.Future[bool]) -> None:
        if not ended and not listening.cancelled():
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
        if not listening.done() or listening.cancelled():
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
