"""The ``docker`` driver: each runner is a container from the configured image, on one GPU
(a ``device_request`` for that device id), with the models folder mounted read-only at
``/models`` and labels naming the model and the gateway. Stopped runners are removed; at
start the driver removes what a previous run of this gateway left behind.

The ``docker`` SDK is synchronous: every call runs in a thread (``asyncio.to_thread``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
from pathlib import Path
from typing import Any

import docker.errors
from docker.client import DockerClient
from docker.models.containers import Container
from docker.types import DeviceRequest

from gateway.config import ModelSpec, Settings
from gateway.docker_engine import (
    LABEL_GATEWAY,
    LABEL_MANAGED,
    LABEL_MODEL,
    LABEL_PORT,
    SERVER_PORT,
    connect,
    container_url,
)
from gateway.errors import RunnerError
from gateway.runners.args import server_args
from gateway.runners.health import wait_healthy

log = logging.getLogger(__name__)

MODELS_MOUNT = "/models"
_WATCH_INTERVAL = 1.0


class DockerDriver:
    name = "docker"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings.docker
        self.gateway_name = settings.gateway_name
        self.api_key = settings.backend_api_key
        self.hf_endpoint = settings.hf_endpoint
        self._client: DockerClient | None = None

    @property
    def client(self) -> DockerClient:
        if self._client is None:
            raise RunnerError("the docker driver is not prepared")
        return self._client

    async def prepare(self) -> None:
        try:
            self._client = client = await asyncio.to_thread(connect, self.settings)
            await asyncio.to_thread(client.ping)
            leftovers = await asyncio.to_thread(
                client.containers.list,
                all=True,
                filters={"label": [f"{LABEL_GATEWAY}={self.gateway_name}", f"{LABEL_MANAGED}"]},
            )
        except docker.errors.DockerException as exc:
            raise RunnerError(f"cannot reach the Docker engine: {exc}") from exc
        for container in leftovers:
            if (container.labels or {}).get(LABEL_MANAGED) == "scheduler":
                log.info("removing runner container %s left by an earlier run", container.name)
                with contextlib.suppress(docker.errors.APIError):
                    await asyncio.to_thread(container.remove, force=True)

    def runner(self, spec: ModelSpec, gpu: str | None) -> DockerRunner:
        return DockerRunner(self, spec, gpu)

    async def close(self) -> None:
        if self._client is not None:
            await asyncio.to_thread(self._client.close)

    def container_path(self, path: str) -> str:
        """``path`` on this machine as the container sees it under ``/models``."""
        if not self.settings.models_dir:
            raise RunnerError("the docker driver needs docker.models_dir for models with a path")
        root = Path(self.settings.models_dir).resolve()
        try:
            relative = Path(path).resolve().relative_to(root)
        except ValueError:
            raise RunnerError(f"model file {path} is not under docker.models_dir {root}") from None
        return f"{MODELS_MOUNT}/{relative.as_posix()}"

    def create_kwargs(self, spec: ModelSpec, gpu: str | None) -> dict[str, Any]:
        """The ``containers.run`` arguments of a runner for ``spec`` on ``gpu``."""
        uses_files = spec.path is not None or spec.mmproj is not None
        suffix = secrets.token_hex(3)
        name = re.sub(r"[^a-zA-Z0-9_.-]", "-", f"{self.gateway_name}-{spec.model_id}-{suffix}")
        environment = {"LLAMA_ARG_HOST": "0.0.0.0", "LLAMA_ARG_PORT": str(SERVER_PORT)}
        if self.hf_endpoint:
            environment["HF_ENDPOINT"] = self.hf_endpoint
        kwargs: dict[str, Any] = {
            "image": self.settings.image,
            "command": server_args(
                spec, host=None, port=None, api_key=self.api_key, path=self.container_path
            ),
            "name": name,
            "detach": True,
            "environment": environment,
            "labels": {
                LABEL_GATEWAY: self.gateway_name,
                LABEL_MODEL: spec.model_id,
                LABEL_MANAGED: "scheduler",
                LABEL_PORT: str(SERVER_PORT),
            },
        }
        if uses_files:
            kwargs["volumes"] = {
                str(Path(str(self.settings.models_dir)).resolve()): {
                    "bind": MODELS_MOUNT,
                    "mode": "ro",
                }
            }
        if gpu is not None:
            kwargs["device_requests"] = [
                DeviceRequest(driver="nvidia", device_ids=[gpu], capabilities=[["gpu"]])
            ]
        if self.settings.network:
            kwargs["network"] = self.settings.network
        else:
            kwargs["ports"] = {f"{SERVER_PORT}/tcp": ("127.0.0.1", None)}
        return kwargs


class DockerRunner:
    """One runner container."""

    def __init__(self, driver: DockerDriver, spec: ModelSpec, gpu: str | None) -> None:
        self.driver = driver
        self.spec = spec
        self.gpu = gpu
        self.url = ""
        self.container: Container | None = None
        self.exited = asyncio.Event()
        self.exit_code: int | None = None
        self.logs = ""
        self._watcher: asyncio.Task[None] | None = None

    async def start(self, timeout: float) -> None:
        kwargs = self.driver.create_kwargs(self.spec, self.gpu)
        log.info("starting container %s for %s", kwargs["name"], self.spec.model_id)
        client = self.driver.client
        try:
            self.container = container = await asyncio.to_thread(client.containers.run, **kwargs)
            await asyncio.to_thread(container.reload)
        except docker.errors.DockerException as exc:
            await self.stop()
            raise RunnerError(f"cannot start a container for {self.spec.model_id}: {exc}") from exc
        if self.driver.settings.network:
            self.url = f"http://{container.name}:{SERVER_PORT}"
        else:
            self.url = container_url(container.attrs) or ""
        self._watcher = asyncio.create_task(self._watch(container))
        try:
            await wait_healthy(self.url, timeout, self.exited, self._died, self.driver.api_key)
        except BaseException:
            await self.stop()
            raise

    def describe(self) -> dict[str, Any]:
        container = self.container
        return {
            "driver": "docker",
            "url": self.url,
            "container": container.name if container else None,
            "container_id": container.short_id if container else None,
            "exit_code": self.exit_code,
        }

    def _died(self) -> str:
        tail = "\n".join(self.logs.splitlines()[-10:])
        return (
            f"container for {self.spec.model_id} exited with code {self.exit_code} "
            f"while loading:\n{tail}"
        )

    async def _watch(self, container: Container) -> None:
        """Poll the container's state; set :attr:`exited` (with its logs) once it is gone."""
        while True:
            try:
                await asyncio.to_thread(container.reload)
                running = container.status == "running"
            except docker.errors.NotFound:
                running = False
            except docker.errors.DockerException as exc:
                log.debug("inspecting %s failed: %s", container.name, exc)
                running = True  # the engine hiccupped; the pool's probes watch the server
            if not running:
                break
            await asyncio.sleep(_WATCH_INTERVAL)
        self.exit_code = (container.attrs.get("State") or {}).get("ExitCode")
        with contextlib.suppress(docker.errors.DockerException):
            raw = await asyncio.to_thread(container.logs, tail=40)
            self.logs = raw.decode(errors="replace")
        self.exited.set()

    async def stop(self, grace: float = 10.0) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        container = self.container
        if container is not None:
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                await asyncio.to_thread(container.stop, timeout=max(1, round(grace)))
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                await asyncio.to_thread(container.remove, force=True)
        self.exited.set()
