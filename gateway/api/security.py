"""What every answer of the gateway carries, and what is refused before the router sees it.

The edge middleware (``api/edge.py``), around the whole ASGI app, applies these so that every
answer — the router's 404s, refusals, streams, ``/metrics`` — gets
``X-Content-Type-Options: nosniff`` and ``Referrer-Policy: no-referrer``, and so that:

- a request target (path and query) longer than ``max_url_bytes`` is refused with 414 in the
  error shape of the surface its path belongs to, before routing, parsing or auth;
- repeated slashes in the path are collapsed (``//v1/models`` is ``/v1/models``), as the router
  already matches them: every part of the edge then sees the path the router routes.

Targets longer than 64 KiB never reach the app: uvicorn's httptools parser refuses them
itself (its URL fields are 16-bit). :mod:`gateway.api.http_protocol` makes that refusal JSON.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from gateway.surfaces import surface_of
from gateway.surfaces.errors import error_body

__all__ = [
    "SECURITY_HEADERS",
    "refuse_long_target",
    "routed_path",
    "target_too_long",
    "with_security_headers",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]

#: Sent with every answer: no MIME sniffing of JSON into HTML; no URL in a Referer header.
SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
)
_SECURITY_NAMES = frozenset(name for name, _ in SECURITY_HEADERS)
_SLASHES = re.compile(r"//+")


def with_security_headers(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """An answer's headers and the security headers it does not already set itself."""
    given = list(headers)
    for name, _ in given:
        if name.lower() in _SECURITY_NAMES:
            names = {n.lower() for n, _ in given}
            return given + [(n, v) for n, v in SECURITY_HEADERS if n not in names]
    given.extend(SECURITY_HEADERS)
    return given


def target_too_long(scope: Scope, max_url_bytes: int) -> bool:
    path = scope.get("raw_path") or scope["path"].encode()
    return len(path) + len(scope.get("query_string", b"")) > max_url_bytes


def routed_path(path: str) -> str:
    """``path`` as the router matches it: repeated slashes collapsed."""
    return _SLASHES.sub("/", path) if "//" in path else path


async def refuse_long_target(scope: Scope, send: Send, limit: int) -> None:
    message = f"The request URL is longer than this gateway accepts ({limit} bytes)."
    surface = surface_of(routed_path(scope["path"]))
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
