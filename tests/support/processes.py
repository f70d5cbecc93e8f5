"""Real processes for the integration tests: ``llama-server`` backends on the real SmolLM2
model, and gateways started through the real command line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

# One copy of the process helpers, shared with the benchmark harness.
from loadtest.procs import asset, free_port, llama_server_args, wait_http

__all__ = ["ROOT", "Gateway", "LlamaServer", "asset", "free_port", "wait_http"]

ROOT = Path(__file__).resolve().parents[2]


class LlamaServer:
    """One real ``llama-server`` on a free port."""

    def __init__(
        self,
        binary: str,
        model: str,
        *,
        parallel: int = 4,
        ctx_size: int = 4096,
        alias: str = "smollm2",
        extra: tuple[str, ...] = (),
        port: int | None = None,
    ) -> None:
        self.port = port or free_port()
        self.args = [
            *llama_server_args(
                binary, model, self.port, parallel=parallel, ctx_size=ctx_size, alias=alias
            ),
            *extra,
        ]
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LlamaServer:
        self.process = subprocess.Popen(
            self.args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_http(f"{self.url}/health", timeout=60, process=self.process)
        return self

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def slots(self) -> list[dict]:
        return httpx.get(f"{self.url}/slots", timeout=5).json()

    def busy_slots(self) -> int:
        return sum(1 for slot in self.slots() if slot.get("is_processing"))

    def metric(self, name: str) -> float:
        """One ``llamacpp:*`` counter from the backend's own ``/metrics``."""
        text = httpx.get(f"{self.url}/metrics", timeout=5).text
        for line in text.splitlines():
            if line.startswith(f"llamacpp:{name} ") or line.startswith(f"llamacpp:{name}{{"):
                return float(line.rsplit(" ", 1)[1])
        raise KeyError(name)


class Gateway:
    """``llama-gateway serve`` as a subprocess, exactly as a user starts it."""

    def __init__(
        self, *args: str, env: dict[str, str] | None = None, wait_ready: bool = True
    ) -> None:
        self.port = free_port()
        self.args = [sys.executable, "-m", "gateway", "serve", "--port", str(self.port), *args]
        self.env = {**os.environ, **(env or {})}
        self.wait_ready = wait_ready
        self.process: subprocess.Popen | None = None
        self.log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"gateway-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90) -> Gateway:
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            self.args, env=self.env, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT
        )
        path = "/ready" if self.wait_ready else "/health"
        try:
            wait_http(f"{self.url}{path}", timeout=timeout, process=self.process)
        except RuntimeError as exc:
            self.stop()
            raise RuntimeError(f"{exc}\n--- gateway log ---\n{self.log()}") from None
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if getattr(self, "_log", None):
            self._log.close()

    def metric(self, name: str, **labels: str) -> float:
        """Sum of a gateway metric's samples whose labels include ``labels``."""
        text = httpx.get(f"{self.url}/metrics", timeout=5).text
        total = 0.0
        for line in text.splitlines():
            if not line.startswith(name):
                continue
            head, _, value = line.rpartition(" ")
            if head != name and not head.startswith(name + "{"):
                continue
            if all(f'{k}="{v}"' in head for k, v in labels.items()):
                total += float(value)
        return total
