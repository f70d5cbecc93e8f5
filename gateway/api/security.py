"""What every answer of the gateway carries, and what is refused before the router sees it.

:class:`SecurityMiddleware` wraps the whole ASGI app (outside the telemetry middleware), so
that every answer — the router's 404s, refusals, streams, ``/metrics`` — gets
``X-Content-Type-Options: nosniff`` and ``Referrer-Policy: no-referrer``, and so that:

- a request target (path and query) longer than ``max_url_bytes`` is refused with 414 in the
  error shape of the surface its path belongs to, before routing, parsing or auth;
- repeated slashes in the path are collapsed (``//v1/models`` is ``/v1/models``), as the router
  already matches them: every middleware then sees the path the router routes.

Targets longer than 64 KiB never reach the app: uvicorn's httptools parser refuses them
itself (its URL fields are 16-bit). :mod:`gateway.api.http_protocol` makes that refusal JSON.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from gateway.surfaces import surface_of
from gateway.surfaces.errors import error_body

__all__ = ["SECURITY_HEADERS", "SecurityMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: Sent with every answer: no MIME sniffing of JSON into HTML; no URL in a Referer header.
SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
)
_SLASHES = re.compile(r"//+")


class SecurityMiddleware:
    def __init__(self, app: Callable[..., Awaitable[None]], *, max_url_bytes: int) -> None:
        self.app = app
        self.max_url_bytes = max_url_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", ())}
                extra = [(n, v) for n, v in SECURITY_HEADERS if n not in names]
                message = {**message, "headers": [*message.get("headers", ()), *extra]}
            await send(message)

        target = len(scope.get("raw_path") or scope["path"].encode()) + len(
            scope.get("query_string", b"")
        )
        if target > self.max_url_bytes:
            await _refuse_long_target(scope, send_with_headers, self.max_url_bytes)
            return
        if "//" in scope["path"]:
            scope = {**scope, "path": _SLASHES.sub("/", scope["path"])}
        await self.app(scope, receive, send_with_headers)


async def _refuse_long_target(scope: Scope, send: Send, limit: int) -> None:
    message = f"The request URL is longer than this gateway accepts ({limit} bytes)."
    surface = surface_of(_SLASHES.sub("/", scope["path"]))
    body = error_body(message, "invalid_request_error", "uri_too_long", status=414, surface=surface)
    await send(
        {
            "type": "http.response.start",
            "status": 414,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
