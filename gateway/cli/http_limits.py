"""uvicorn's httptools protocol with the limits it lacks (issue #15, item 9), on top of
:class:`gateway.api.http_protocol.JsonRefusalHttpToolsProtocol` (JSON refusals below the app).

uvicorn times out idle keep-alive connections but sets no deadline on a request's line and
headers, and no bound on their size or number: one client that sends a header byte every few
seconds (slowloris) holds a connection for as long as it likes. This protocol adds:

- a deadline (``header_timeout``) from the connection's start, or from a keep-alive request's
  first byte, until its headers are complete; then 408 and the connection is closed;
- at most ``max_header_bytes`` of headers and ``max_header_count`` header lines (431). (The
  URL's own bound, ``max_url_bytes``, is the app's: ``gateway/api/security.py``.)

Refusals are JSON in the shape of the API the path belongs to, like every other refusal.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.api.http_protocol import JsonRefusalHttpToolsProtocol

__all__ = ["HeaderLimits", "limited_protocol"]

log = logging.getLogger(__name__)

_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}
_CODES = {408: "request_timeout", 431: "request_header_fields_too_large"}


@dataclass(frozen=True, slots=True)
class HeaderLimits:
    timeout: float = 10.0
    max_bytes: int = 32 * 1024
    max_count: int = 100


def limited_protocol(limits: HeaderLimits) -> type[HttpToolsProtocol]:
    """The protocol class to give ``uvicorn.Config(http=...)``, bound to ``limits``."""
    return type("LimitedHttpToolsProtocol", (LimitedHttpToolsProtocol,), {"limits": limits})


class LimitedHttpToolsProtocol(JsonRefusalHttpToolsProtocol):
    limits: ClassVar[HeaderLimits] = HeaderLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_deadline: asyncio.TimerHandle | None = None
        self._header_bytes = 0
        self._header_count = 0
        self._refused = False

    # -- the deadline ----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()  # a connection that never sends a byte is held no longer than a slow one

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        if self._refused:
            return
        super().on_message_begin()
        self._header_bytes = self._header_count = 0
        if self._header_deadline is None:
            self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        if not self._refused:
            super().on_headers_complete()

    def _arm(self) -> None:
        self._disarm()
        self._header_deadline = self.loop.call_later(self.limits.timeout, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        if self.transport.is_closing():
            return
        if self._header_bytes == 0 and not self._url():
            self.transport.close()  # nothing was asked: nothing to answer
            return
        self._refuse(408, f"The request headers did not arrive within {self.limits.timeout:g} s.")

    # -- the bounds ------------------------------------------------------------------------
    def on_url(self, url: bytes) -> None:
        if not self._refused:
            super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._refused:
            return
        super().on_header(name, value)
        self._header_bytes += len(name) + len(value) + 4  # ": " and CRLF
        self._header_count += 1
        if self._header_bytes > self.limits.max_bytes:
            self._refuse(431, f"The request headers exceed {self.limits.max_bytes} bytes.")
        elif self._header_count > self.limits.max_count:
            self._refuse(431, f"The request has more than {self.limits.max_count} headers.")

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._refused:
            super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        if not self._refused:  # the parser may trip over what follows a refused request
            super().send_400_response(msg)

    def _refuse(self, status: int, message: str) -> None:
        self._refused = True
        self._disarm()
        log.warning("refused a request: %s", message, extra={"status": status})
        self.refuse(status, _REASONS[status], message, _CODES[status])
