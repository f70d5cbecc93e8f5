"""The processes a scenario runs against, each on a free port and, on a machine with two cores
or more, pinned: the gateway alone on the last core, everything else (emulator, llama-server,
Redis, the load generator) on the others.

Each class is a context manager that starts the process and always stops it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
CORES = os.cpu_count() or 1
#: The gateway's core, and the rest's, when there are two or more.
GATEWAY_CORES = str(CORES - 1) if CORES > 1 else None
OTHER_CORES = ",".join(str(c) for c in range(CORES - 1)) if CORES > 1 else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pinned(args: list[str], cores: str | None) -> list[str]:
    """``args`` run under ``taskset -c cores`` when pinning is possible."""
    if cores is None or shutil.which("taskset") is None:
        return args
    return ["taskset", "-c", cores, *args]


def pin_self() -> None:
    """Keep the harness (the load generator) off the gateway's core."""
    if OTHER_CORES is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(c) for c in OTHER_CORES.split(",")})


def asset(what: str, env_name: str) -> str:
    """The model or the llama-server binary: from the environment, else ``scripts/assets.py``."""
    if os.environ.get(env_name):
        return os.environ[env_name]
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "assets.py"), what],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def wait_http(
    url: str, *, timeout: float, process: subprocess.Popen | None = None, status: int = 200
) -> None:
    """Poll ``url`` until it answers ``status``; fail early if ``process`` exits."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before {url} answered")
        try:
            last = httpx.get(url, timeout=2).status_code
            if last == status:
                return
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer {status} within {timeout} s (last: {last})")


class Process:
    """One server process on a free port: started, waited for until ``ready_path`` answers,
    its output in a log file, always stopped. Shared by the benchmarks and the tests
    (``tests/support/processes.py``); ``keep_log`` keeps the file after the stop."""

    args: list[str]
    ready_path = "/health"
    start_timeout = 60.0
    keep_log = False
    #: Where the process starts (a gateway from another source tree: ``loadtest.ab``).
    cwd: Path = ROOT

    def __init__(self, *, port: int | None = None, env: dict[str, str] | None = None) -> None:
        self.port = port or free_port()
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen | None = None
        self.log_path = (
            Path(tempfile.gettempdir()) / f"llama-gateway-{type(self).__name__}-{self.port}.log"
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, env: dict[str, str] | None = None, *, timeout: float | None = None):
        self.launch(env)
        return self.wait_ready(timeout)

    def launch(self, env: dict[str, str] | None = None) -> None:
        """Start the process without waiting (start several, then :meth:`wait_ready` each)."""
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            self.args,
            cwd=self.cwd,
            env={**self.env, **(env or {})},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float | None = None):
        assert self.process is not None
        try:
            wait_http(
                self.url + self.ready_path,
                timeout=timeout or self.start_timeout,
                process=self.process,
            )
        except RuntimeError as exc:
            tail = self.log_tail()
            self.stop()
            raise RuntimeError(f"{exc}\n--- {' '.join(self.args)} ---\n{tail}") from None
        return self

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if getattr(self, "_log", None):
            self._log.close()
        if not self.keep_log:
            self.log_path.unlink(missing_ok=True)

    def __enter__(self):
        return self.start() if self.process is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Emulator(Process):
    """``loadtest.emulator`` in its own process, on the load generator's cores."""

    def __init__(
        self,
        *,
        alias: str = "emulated",
        slots: int = 4,
        tokens: int = 16,
        token_delay: float = 0.0,
        prefill_delay: float = 0.0,
    ) -> None:
        super().__init__()
        self.alias = alias
        self.args = pinned(
            [
                sys.executable,
                "-m",
                "loadtest.emulator",
                "--port",
                str(self.port),
                "--alias",
                alias,
                "--slots",
                str(slots),
                "--tokens",
                str(tokens),
                "--token-delay",
                str(token_delay),
                "--prefill-delay",
                str(prefill_delay),
            ],
            OTHER_CORES,
        )


def llama_server_args(
    binary: str,
    model: str,
    port: int,
    *,
    parallel: int = 4,
    ctx_size: int = 4096,
    alias: str = "smollm2",
    threads: int | None = None,
) -> list[str]:
    """The command line of one ``llama-server`` on ``model`` (tests and benchmarks alike)."""
    args = [binary, "-m", model, "--host", "127.0.0.1", "--port", str(port)]
    args += ["-np", str(parallel), "-c", str(ctx_size), "--alias", alias, "--metrics"]
    if threads:
        args += ["-t", str(threads), "-tb", str(threads)]
    return args


class LlamaServer(Process):
    """A real ``llama-server`` on the model, on the load generator's cores."""

    def __init__(
        self,
        binary: str,
        model: str,
        *,
        parallel: int = 4,
        ctx_size: int = 4096,
        alias: str = "smollm2",
        threads: int | None = None,
    ) -> None:
        super().__init__()
        self.alias = alias
        self.args = llama_server_args(
            binary,
            model,
            self.port,
            parallel=parallel,
            ctx_size=ctx_size,
            alias=alias,
            threads=threads,
        )


class Gateway(Process):
    """``llama-gateway serve`` exactly as a user starts it, pinned to its own core if
    ``pin``. ``admin_token`` mounts the admin API; without it the gateway runs ``--no-auth``."""

    ready_path = "/ready"
    start_timeout = 90.0

    def __init__(
        self,
        backends: list[str],
        *,
        admin_token: str | None = None,
        pin: bool = True,
        extra: tuple[str, ...] = (),
    ) -> None:
        super().__init__()
        self.admin_token = admin_token
        args = [sys.executable, "-m", "gateway", "serve", "--port", str(self.port)]
        for url in backends:
            args += ["--backend", url]
        args += ["--admin-token", admin_token] if admin_token else ["--no-auth"]
        args += ["--log-level", "warning", *extra]
        self.args = pinned(args, GATEWAY_CORES if pin else None)

    def create_key(self, name: str, **fields: object) -> str:
        """A new API key through the admin API; its secret."""
        answer = httpx.post(
            f"{self.url}/admin/keys",
            json={"name": name, **fields},
            headers={"Authorization": f"Bearer {self.admin_token}"},
            timeout=10,
        )
        answer.raise_for_status()
        return answer.json()["key"]


class RelayFloor(Process):
    """``loadtest.floor`` (the HTTP stack relaying, nothing else), pinned as the gateway is."""

    def __init__(self, upstream: str) -> None:
        super().__init__()
        args = [sys.executable, "-m", "loadtest.floor", "--port", str(self.port)]
        self.args = pinned([*args, "--upstream", upstream], GATEWAY_CORES)


class RedisServer(Process):
    """A ``redis-server`` without persistence (the figures are about the request path)."""

    def __init__(self) -> None:
        super().__init__()
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.args = pinned(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
            ],
            OTHER_CORES,
        )

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, env: dict[str, str] | None = None) -> RedisServer:
        import redis

        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(self.args, stdout=self._log, stderr=subprocess.STDOUT)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if client.ping():
                    return self
            except redis.ConnectionError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not start on port {self.port}")
