"""One pooled aiohttp session per backend, and the only place aiohttp's errors are seen.

Everything that crosses this seam is translated (as httpx's ``map_httpcore_exceptions`` does):
a failure before the backend sent a byte becomes :class:`UpstreamUnreachable` (safe to retry
elsewhere); an error answer becomes :class:`BackendError` with the backend's own status and body.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import msgspec

from gateway.errors import BackendError, BackendFailed, UpstreamUnreachable

_CONNECTION_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError, OSError)
#: Seconds an idle pooled connection is kept. llama-server (cpp-httplib) closes one after 5 s
#: (``Keep-Alive: timeout=5``); aiohttp keeps them 15 s by default, so a request could go out
#: on a connection the backend was closing that moment: a 502 and a failure counted against
#: a healthy backend. Dropping ours first leaves no such window.
KEEPALIVE_SECONDS = 4.0


class BackendClient:
    """The HTTP connection pool to one ``llama-server``."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 600.0,
        pool_size: int = 64,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=connect_timeout, sock_read=read_timeout
        )
        self._pool_size = pool_size
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        # Built on first use, inside the running loop, as aiohttp requires.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                base_url=self.base_url,
                headers=self._headers,
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(
                    limit=self._pool_size, ttl_dns_cache=300, keepalive_timeout=KEEPALIVE_SECONDS
                ),
                # The body is relayed as it comes: ask for it uncompressed (a proxy in front
                # of the backend would otherwise gzip what reaches the client as JSON).
                skip_auto_headers=("User-Agent", "Accept-Encoding"),
                auto_decompress=False,
                cookie_jar=aiohttp.DummyCookieJar(),  # llama-server sets none
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def get(self, path: str, *, timeout: float) -> bytes:
        """GET a small document (probes); raises on any failure or non-200 answer."""
        try:
            async with self.session.get(
                path, timeout=aiohttp.ClientTimeout(total=timeout)
            ) as response:
                body = await response.read()
        except _CONNECTION_ERRORS as exc:
            raise UpstreamUnreachable(f"{self.base_url}{path}: {exc!r}") from exc
        if response.status != 200:
            raise BackendError(response.status, body, response.content_type)
        return body

    async def get_json(self, path: str, *, timeout: float) -> Any:
        return msgspec.json.decode(await self.get(path, timeout=timeout))

    async def open(
        self, path: str, body: bytes, headers: Mapping[str, str] | None = None
    ) -> UpstreamResponse:
        """POST ``body`` and return once the backend has sent its status line and headers.

        A 5xx answer raises :class:`BackendFailed` (nothing reached the client yet, so the
        caller may retry); any other error status is the backend's word on the request.
        """
        send_headers = {"Content-Type": "application/json"}
        if headers:
            send_headers.update(headers)
        try:
            response = await self.session.post(path, data=body, headers=send_headers)
        except _CONNECTION_ERRORS as exc:
            raise UpstreamUnreachable(f"{self.base_url}{path}: {exc!r}") from exc
        if response.status >= 400:
            try:
                error_body = await response.read()
            except _CONNECTION_ERRORS:
                error_body = b""
            finally:
                response.release()
            retryable = response.status >= 500 and response.status != 501
            raise (BackendFailed if retryable else BackendError)(
                response.status, error_body, response.content_type
            )
        return UpstreamResponse(response)


class UpstreamResponse:
    """A backend's answer in flight: its body, read whole or chunk by chunk."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status = response.status
        self.content_type = response.content_type

    async def read(self) -> bytes:
        try:
            return await self._response.read()
        except _CONNECTION_ERRORS as exc:
            raise UpstreamUnreachable(f"backend failed mid-response: {exc!r}") from exc
        finally:
            self._response.release()

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives, in whatever pieces the network delivers."""
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except _CONNECTION_ERRORS as exc:
            raise UpstreamUnreachable(f"backend failed mid-stream: {exc!r}") from exc

    def abort(self) -> None:
        """Drop the connection, so llama-server notices and frees the slot."""
        self._response.close()

    def finish(self) -> None:
        self._response.release()
