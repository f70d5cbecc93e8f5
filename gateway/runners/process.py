"""A ``llama-server`` runner as a local subprocess — the embedded default, like the runner
Ollama forks: the gateway picks a free port, starts it, waits until ``/health`` is 200, keeps
its log, and stops it with the gateway. A crash of the runner is only the runner's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections import deque
from pathlib import Path

import aiohttp

from gateway.config import ModelSpec
from gateway.runners.binary import RunnerError

log = logging.getLogger(__name__)

_LOG_TAIL = 40


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def server_args(spec: ModelSpec, *, host: str, port: int, api_key: str | None) -> list[str]:
    """The ``llama-server`` command line for ``spec`` (without the binary)."""
    args = [
        "-m",
        spec.path,
        "--host",
        host,
        "--port",
        str(port),
        "--alias",
        spec.model_id,
        "-np",
        str(spec.parallel),
        "-c",
        str(spec.ctx_size),
        "--metrics",
    ]
    if spec.embeddings:
        args.append("--embeddings")
        if spec.pooling:
            args += ["--pooling", spec.pooling]
    if api_key:
        args += ["--api-key", api_key]
    return args + list(spec.extra_args)


class ProcessRunner:
    def __init__(
        self,
        spec: ModelSpec,
        binary: Path,
        *,
        host: str = "127.0.0.1",
        api_key: str | None = None,
    ) -> None:
        self.spec = spec
        self.binary = binary
        self.host = host
        self.api_key = api_key
        self.port: int | None = None
        self.process: asyncio.subprocess.Process | None = None
        self.log_tail: deque[str] = deque(maxlen=_LOG_TAIL)
        self._pump: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self, timeout: float) -> None:
        if not Path(self.spec.path).is_file():
            raise RunnerError(f"model file {self.spec.path!r} does not exist")
        self.port = free_port(self.host)
        args = server_args(self.spec, host=self.host, port=self.port, api_key=self.api_key)
        log.info("starting runner for %s on port %d", self.spec.model_id, self.port)
        self.process = await asyncio.create_subprocess_exec(
            str(self.binary),
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        self._pump = asyncio.create_task(self._keep_log(self.process.stdout))
        try:
            await self._wait_healthy(timeout)
        except BaseException:
            await self.stop()
            raise

    async def _wait_healthy(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with aiohttp.ClientSession() as session:
            while loop.time() < deadline:
                if self.process is None or self.process.returncode is not None:
                    raise RunnerError(self._died_message())
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(
                        f"{self.url}/health", timeout=aiohttp.ClientTimeout(total=2)
                    ) as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(0.1)
        raise RunnerError(
            f"runner for {self.spec.model_id} did not become healthy within {timeout:g} s"
        )

    def _died_message(self) -> str:
        code = self.process.returncode if self.process else None
        tail = "\n".join(list(self.log_tail)[-10:])
        name = self.spec.model_id
        return f"llama-server for {name} exited with code {code} while loading:\n{tail}"

    async def _keep_log(self, stream: asyncio.StreamReader | None) -> None:
        if stream is None:
            return
        async for raw in stream:
            line = raw.decode(errors="replace").rstrip()
            self.log_tail.append(line)
            log.debug("[%s] %s", self.spec.model_id, line)

    async def stop(self, grace: float = 10.0) -> None:
        process = self.process
        if process is not None and process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), grace)
            except TimeoutError:
                process.kill()
                await process.wait()
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
