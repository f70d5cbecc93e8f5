"""The seam between the scheduler and what runs ``llama-server``: a *driver* makes *runner
handles*, each of which starts one server for one model on one device, says where it
answers, signals when it is gone, and stops it. ``process`` and ``docker`` are the two."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from gateway.config import ModelSpec, Settings


class RunnerHandle(Protocol):
    #: Where the started server answers (valid once :meth:`start` returned).
    url: str
    #: Set when the server has gone (exited, container stopped), for whatever reason.
    exited: asyncio.Event

    async def start(self, timeout: float) -> None:
        """Start and wait until ``/health`` is 200; :class:`RunnerError` if it fails."""

    async def stop(self, grace: float = 10.0) -> None:
        """Stop it (terminate, then kill after ``grace`` seconds) and clean up."""

    def describe(self) -> dict[str, Any]:
        """What to show in ``/runners``: driver, url, pid or container id…"""


class Driver(Protocol):
    name: str

    async def prepare(self) -> None:
        """Check the driver can work (binary found, engine reachable) before any start."""

    def runner(self, spec: ModelSpec, gpu: str | None) -> RunnerHandle: ...

    async def close(self) -> None: ...


def make_driver(settings: Settings) -> Driver:
    """The driver ``settings.runner_driver`` names (imports only what it needs)."""
    if settings.runner_driver == "docker":
        from gateway.runners.docker_driver import DockerDriver

        return DockerDriver(settings)
    from gateway.runners.binary import find_llama_server
    from gateway.runners.process import ProcessDriver

    return ProcessDriver(
        find_llama_server(settings.llama_server_bin, settings.cache_dir),
        api_key=settings.backend_api_key,
        hf_endpoint=settings.hf_endpoint,
    )
