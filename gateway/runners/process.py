"""The ``process`` driver: a ``llama-server`` runner as a local subprocess — the embedded
default, like the runner Ollama forks. The gateway picks a free port, starts it (on one GPU
through ``CUDA_VISIBLE_DEVICES`` when placed on one), waits until ``/health`` is 200, keeps the
tail of its log, and notices at once when it exits. A crash of the runner is only the runner's.

A runner never outlives its gateway: on Linux it is started with ``PR_SET_PDEATHSIG``, so the
kernel kills it when the gateway dies, even by ``kill -9`` — otherwise it would run on under
PID 1, holding its port, its memory and its GPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.config import ModelSpec
from gateway.errors import RunnerError
from gateway.runners.args import server_args
from gateway.runners.health import wait_healthy

log = logging.getLogger(__name__)

_LOG_TAIL = 40
#: ``prctl(2)`` option: the signal the kernel sends this process when its parent dies.
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child die (SIGKILL) when this process does; ``None``
    where the kernel offers no such thing (not Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    # Resolved before the fork: the child should only make the one system call.
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def preexec() -> None:
        if prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            os._exit(126)  # an unguarded runner is worse than none
        if os.getppid() != parent:  # the gateway died between fork and prctl
            os._exit(1)

    return preexec


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class ProcessRunner:
    """One ``llama-server`` subprocess for one model."""

    def __init__(
        self,
        spec: ModelSpec,
        binary: Path,
        *,
        gpu: str | None = None,
        host: str = "127.0.0.1",
        api_key: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.spec = spec
        self.binary = binary
        self.gpu = gpu
        self.host = host
        self.api_key = api_key
        self.env = dict(env or {})
        self.port: int | None = None
        #: Where it answers, once :meth:`start` chose the port.
        self.url = ""
        self.process: asyncio.subprocess.Process | None = None
        self.log_tail: deque[str] = deque(maxlen=_LOG_TAIL)
        #: Set when the process has exited, for whatever reason.
        self.exited = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, timeout: float) -> None:
        if self.spec.path and not Path(self.spec.path).is_file():
            # The message can reach a client (a model that failed to load): no path in it.
            log.warning("model file %s of %s does not exist", self.spec.path, self.spec.model_id)
            raise RunnerError(f"the model file of {self.spec.model_id} does not exist")
        self.port = free_port(self.host)
        self.url = f"http://{self.host}:{self.port}"
        args = server_args(self.spec, host=self.host, port=self.port, api_key=None)
        key_dir = None
        if self.api_key:
            # In a private file, not on the command line, where any local user's ps sees it.
            key_dir = tempfile.mkdtemp(prefix="llama-gateway-")  # mode 0700
            key_file = Path(key_dir) / "api-key"
            key_file.write_text(self.api_key + "\n")
            args += ["--api-key-file", str(key_file)]
        env = dict(self.env)
        if self.gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = self.gpu
        log.info(
            "starting runner for %s on port %d%s",
            self.spec.model_id,
            self.port,
            f" (GPU {self.gpu})" if self.gpu is not None else "",
        )
        self.process = await asyncio.create_subprocess_exec(
            str(self.binary),
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, **env} if env else None,
            preexec_fn=die_with_parent(),
        )
        self._tasks = [
            asyncio.create_task(self._keep_log(self.process.stdout)),
            asyncio.create_task(self._watch(self.process)),
        ]
        try:
            await wait_healthy(self.url, timeout, self.exited, self._died_message, self.api_key)
        except BaseException:
            await self.stop()
            raise
        finally:
            if key_dir is not None:  # read at start: no copy of the key stays on disk
                shutil.rmtree(key_dir, ignore_errors=True)

    def describe(self) -> dict[str, Any]:
        process = self.process
        return {
            "driver": "process",
            "url": self.url,
            "pid": process.pid if process else None,
            "exit_code": process.returncode if process else None,
        }

    def _died_message(self) -> str:
        code = self.process.returncode if self.process else None
        tail = "\n".join(list(self.log_tail)[-10:])
        name = self.spec.model_id
        return f"llama-server for {name} exited with code {code} while loading:\n{tail}"

    async def _watch(self, process: asyncio.subprocess.Process) -> None:
        await process.wait()
        self.exited.set()

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
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.exited.set()


class ProcessDriver:
    """Starts :class:`ProcessRunner` s with one binary and one environment."""

    name = "process"

    def __init__(
        self, binary: Path, *, api_key: str | None = None, hf_endpoint: str | None = None
    ) -> None:
        self.binary = binary
        self.api_key = api_key
        self.env = {"HF_ENDPOINT": hf_endpoint} if hf_endpoint else {}

    async def prepare(self) -> None:
        pass

    def runner(self, spec: ModelSpec, gpu: str | None) -> ProcessRunner:
        return ProcessRunner(spec, self.binary, gpu=gpu, api_key=self.api_key, env=self.env)

    async def close(self) -> None:
        pass
