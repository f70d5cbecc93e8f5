"""Wait for a freshly started runner: ``/health`` answers 503 while the model loads and 200
once it serves. Shared by the drivers; the pool's probes take over from there."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import aiohttp

from gateway.runners.binary import RunnerError

log = logging.getLogger(__name__)


async def wait_healthy(
    url: str,
    timeout: float,
    exited: asyncio.Event,
    died: Callable[[], str],
    api_key: str | None = None,
) -> None:
    """Return once ``url/health`` is 200; :class:`RunnerError` if ``exited`` is set first
    (message from ``died()``) or ``timeout`` seconds pass."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    async with aiohttp.ClientSession(headers=headers) as session:
        while loop.time() < deadline:
            if exited.is_set():
                raise RunnerError(died())
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(
                    f"{url}/health", timeout=aiohttp.ClientTimeout(total=2)
                ) as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.1)
    # The message reaches clients (a model that failed to load): it names no address.
    log.warning("runner at %s did not become healthy within %g s", url, timeout)
    raise RunnerError(f"the runner did not become healthy within {timeout:g} s")
