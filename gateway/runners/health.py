"""Wait for a freshly started runner: ``/health`` answers 503 while the model loads and 200
once it serves. Shared by the drivers; the pool's probes take over from there."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from gateway.errors import GatewayError, RunnerError
from gateway.upstream.client import BackendClient

log = logging.getLogger(__name__)


async def wait_healthy(
    url: str,
    timeout: float,
    exited: asyncio.Event,
    died: Callable[[], str],
    api_key: str | None = None,
) -> None:
    """Return once ``url/health`` is 200; :class:`RunnerError` if ``exited`` is set first
    (message from ``died()``) or ``timeout`` seconds pass. Asked through the same backend
    client as every other call to a runner."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    client = BackendClient(url, api_key=api_key, connect_timeout=2.0, pool_size=1)
    try:
        while loop.time() < deadline:
            if exited.is_set():
                raise RunnerError(died())
            try:
                await client.get("/health", timeout=2.0)
                return
            except GatewayError:  # refused while it starts, 503 while the model loads
                await asyncio.sleep(0.1)
    finally:
        await client.close()
    # The message reaches clients (a model that failed to load): it names no address.
    log.warning("runner at %s did not become healthy within %g s", url, timeout)
    raise RunnerError(f"the runner did not become healthy within {timeout:g} s")
