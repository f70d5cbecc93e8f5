"""The Docker engine as the gateway sees it, shared by the ``docker`` provider (containers
found by label) and the ``docker`` runner driver (containers it starts): the labels, the
port ``llama-server`` listens on inside, how to connect, and where a container is reached.

The ``docker`` SDK is synchronous: call these in a thread.
"""

from __future__ import annotations

from typing import Any

import docker
from docker.client import DockerClient

from gateway.config import DockerSettings

__all__ = [
    "LABEL_GATEWAY",
    "LABEL_MANAGED",
    "LABEL_MODEL",
    "LABEL_PORT",
    "SERVER_PORT",
    "connect",
    "container_url",
]

LABEL_GATEWAY = "llama-gateway.gateway"
LABEL_MODEL = "llama-gateway.model"
LABEL_MANAGED = "llama-gateway.managed"
LABEL_PORT = "llama-gateway.port"
SERVER_PORT = 8080


def connect(settings: DockerSettings) -> DockerClient:
    """A client for the configured engine (blocking: call it in a thread)."""
    if settings.host:
        return docker.DockerClient(base_url=settings.host, timeout=30)
    return docker.from_env(timeout=30)


def container_url(attrs: dict[str, Any], port: int = SERVER_PORT) -> str | None:
    """Where the gateway reaches ``port`` of a container (from its inspect data)."""
    network = attrs.get("NetworkSettings") or {}
    for binding in (network.get("Ports") or {}).get(f"{port}/tcp") or []:
        host = binding.get("HostIp") or "127.0.0.1"
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1"
        if binding.get("HostPort"):
            return f"http://{host}:{binding['HostPort']}"
    for net in (network.get("Networks") or {}).values():
        if net.get("IPAddress"):
            return f"http://{net['IPAddress']}:{port}"
    return None
