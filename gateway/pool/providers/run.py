"""One loop shape for every discovering provider: look, make the pool match, wait, again.
A look that fails keeps what was found before (a DNS hiccup does not empty the pool)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Protocol

from gateway.config import Settings
from gateway.pool.backend import Backend
from gateway.pool.pool import Pool
from gateway.pool.providers.membership import Membership

log = logging.getLogger(__name__)


class Provider(Protocol):
    name: str
    #: Seconds between looks; ``None``: look once.
    interval: float | None

    async def discover(self) -> set[str]:
        """The URLs of the ``llama-server`` s this provider sees now."""

    async def close(self) -> None: ...


def build_providers(settings: Settings) -> list[Provider]:
    """The providers ``settings`` ask for (the scheduler is not one: it adds its own)."""
    providers: list[Provider] = []
    if settings.backends:
        from gateway.pool.providers.static import StaticProvider

        providers.append(StaticProvider(settings.backends))
    if settings.docker.discover:
        from gateway.pool.providers.docker_labels import DockerDiscovery

        providers.append(DockerDiscovery(settings.docker, settings.gateway_name))
    if settings.kubernetes is not None:
        from gateway.pool.providers.kubernetes import KubernetesDiscovery

        providers.append(KubernetesDiscovery(settings.kubernetes))
    return providers


class Providers:
    def __init__(
        self, providers: list[Provider], pool: Pool, make_backend: Callable[[str], Backend]
    ) -> None:
        self.providers = [(p, Membership(pool, make_backend, p.name)) for p in providers]
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """A first look by every provider, then the loops of those with an interval."""
        await asyncio.gather(*(self._look(p, m) for p, m in self.providers))
        for provider, membership in self.providers:
            if provider.interval is not None:
                self._tasks.append(
                    asyncio.create_task(self._run(provider, membership), name=provider.name)
                )

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for provider, membership in self.providers:
            await membership.close()
            await provider.close()

    async def _run(self, provider: Provider, membership: Membership) -> None:
        assert provider.interval is not None
        while True:
            await asyncio.sleep(provider.interval)
            await self._look(provider, membership)

    async def _look(self, provider: Provider, membership: Membership) -> None:
        try:
            urls = await provider.discover()
        except Exception as exc:
            log.warning(
                "%s discovery failed (keeping %d backends): %s",
                provider.name,
                len(membership.members),
                exc,
            )
            return
        await membership.sync(urls)
