"""uvicorn's httptools protocol, with its one refusal of its own made JSON.

A request httptools cannot parse never reaches the app: uvicorn answers it with a plain-text
``400 Invalid HTTP request received.``. That includes every request target over 64 KiB —
httptools' URL parser keeps offsets in 16 bits — which the app's own limit
(:class:`gateway.api.security.SecurityMiddleware`, ``max_url_bytes``) cannot catch. This
protocol answers those in the error shape of the surface the path belongs to: 414 for a target
too long, 400 for anything else malformed. ``serve`` passes it as uvicorn's ``http``.
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.api.security import SECURITY_HEADERS
from gateway.surfaces import surface_of
from gateway.surfaces.errors import error_body

__all__ = ["JsonRefusalHttpToolsProtocol"]

#: httptools' URL parser fails past this (``struct http_parser_url`` has 16-bit lengths).
PARSER_URL_LIMIT = 0xFFFF


class JsonRefusalHttpToolsProtocol(HttpToolsProtocol):
    def send_400_response(self, msg: str) -> None:
        # uvicorn calls this for every request httptools cannot parse.
        if len(self._url()) > PARSER_URL_LIMIT:
            message = "The request URL is longer than this gateway accepts."
            self.refuse(414, b"URI Too Long", message, "uri_too_long")
        else:
            self.refuse(400, b"Bad Request", "The request is not valid HTTP.", "invalid_http")

    def refuse(self, status: int, reason: bytes, message: str, code: str) -> None:
        """Answer ``status`` with a JSON error body in the path's surface shape and close the
        connection — for any refusal made below the app (parser errors, header limits)."""
        path = self._url().split(b"?", 1)[0].decode("latin-1")
        surface = surface_of(path)
        body = error_body(message, "invalid_request_error", code, status=status, surface=surface)
        head = [b"HTTP/1.1 %d %s\r\n" % (status, reason)]
        for name, value in [*self.server_state.default_headers, *SECURITY_HEADERS]:
            head += [name, b": ", value, b"\r\n"]
        head += [
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        self.transport.close()

    def _url(self) -> bytes:
        # What on_url saw of the request target so far; unset before the first message.
        return getattr(self, "url", b"")
