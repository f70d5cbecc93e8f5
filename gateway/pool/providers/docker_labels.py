"""The ``docker`` provider: running containers that carry this gateway's label join the pool.

Containers started by ``docker compose`` (see ``deploy/``) are labelled
``llama-gateway.gateway=<gateway_name>``; the port ``llama-server`` listens on inside is
``llama-gateway.port`` (8080 by default). The gateway reaches one through the port it
publishes, or else through its address on a Docker network. Containers the scheduler started
itself (``llama-gateway.managed=scheduler``) are its own business and skipped here.

The ``docker`` SDK is synchronous: each call runs in a thread.
"""

from __future__ import annotations

import asyncio

from docker.client import DockerClient

from gateway.config import DockerSettings
from gateway.docker_engine import (
    LABEL_GATEWAY,
    LABEL_MANAGED,
    LABEL_PORT,
    SERVER_PORT,
    connect,
    container_url,
)


class DockerDiscovery:
    name = "docker"

    def __init__(self, settings: DockerSettings, gateway_name: str) -> None:
        self.settings = settings
        self.gateway_name = gateway_name
        self.interval: float | None = settings.discover_interval
        self._client: DockerClient | None = None

    async def discover(self) -> set[str]:
        return await asyncio.to_thread(self._discover)

    def _discover(self) -> set[str]:
        if self._client is None:
            self._client = connect(self.settings)
        containers = self._client.containers.list(
            filters={"label": f"{LABEL_GATEWAY}={self.gateway_name}", "status": "running"}
        )
        found = set()
        for container in containers:
            labels = container.labels or {}
            if labels.get(LABEL_MANAGED) == "scheduler":
                continue
            url = container_url(container.attrs, int(labels.get(LABEL_PORT, SERVER_PORT)))
            if url:
                found.add(url)
        return found

    async def close(self) -> None:
        if self._client is not None:
            await asyncio.to_thread(self._client.close)
