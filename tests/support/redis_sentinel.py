"""A real Redis Sentinel deployment on loopback for tests: a primary, a replica and three
``redis-server --sentinel`` processes watching them, each on a free port in a temporary
folder. A test kills the primary and waits until the Sentinels have promoted the replica."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import redis

from tests.support.redis_server import RedisServer, _free_port, redis_binary

SERVICE = "gateway"
#: Milliseconds without an answer before a Sentinel deems the primary down: short, so a test's
#: failover takes a few seconds.
DOWN_AFTER_MS = 1000


class Sentinels:
    def __init__(self, workdir: Path, count: int = 3) -> None:
        self.workdir = workdir
        self.primary = RedisServer(workdir / "primary", "--repl-diskless-sync-delay", "0")
        self.replica: RedisServer | None = None
        self.ports = [_free_port() for _ in range(count)]
        self.processes: list[subprocess.Popen] = []

    @property
    def url(self) -> str:
        """The gateway's ``--redis-url`` for this deployment."""
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.ports)
        return f"redis+sentinel://{hosts}/{SERVICE}/0"

    def start(self) -> Sentinels:
        self.primary.start()
        self.replica = RedisServer(
            self.workdir / "replica", "--replicaof", "127.0.0.1", str(self.primary.port)
        )
        self.replica.start()
        self._wait(lambda: self._role(self.replica.port) == ("slave", "up"), "replication")
        for i, port in enumerate(self.ports):
            folder = self.workdir / f"sentinel{i}"
            folder.mkdir(parents=True, exist_ok=True)
            conf = folder / "sentinel.conf"  # a Sentinel rewrites its own file
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {folder}\nprotected-mode no\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary.port} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {SERVICE} 10000\n"
                f"sentinel parallel-syncs {SERVICE} 1\n"
            )
            self.processes.append(
                subprocess.Popen(
                    [redis_binary(), str(conf), "--sentinel"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        self._wait(lambda: all(self._sees_replica(port) for port in self.ports), "sentinels")
        return self

    def primary_port(self) -> int | None:
        """The primary's port as the first Sentinel that answers names it."""
        for port in self.ports:
            try:
                found = redis.Redis(port=port, socket_timeout=1).sentinel_get_master_addr_by_name(
                    SERVICE
                )
            except redis.RedisError:
                continue
            if found:
                return int(found[1])
        return None

    def kill_primary(self) -> RedisServer:
        """``kill -9`` the primary; returns it (its AOF stays, for a restart as a replica)."""
        self.primary.kill()
        return self.primary

    def wait_failover(self, timeout: float = 30) -> None:
        """Until the Sentinels name the replica as primary and it takes writes."""
        assert self.replica is not None
        replica = self.replica.port
        self._wait(
            lambda: self.primary_port() == replica and self._role(replica)[0] == "master",
            "failover",
            timeout,
        )

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
                process.wait(10)
        if self.replica is not None:
            self.replica.stop()
        self.primary.stop()

    # -- steps ------------------------------------------------------------------------------

    @staticmethod
    def _role(port: int) -> tuple[str, str]:
        try:
            info = redis.Redis(port=port, socket_timeout=1).info("replication")
        except redis.RedisError:
            return ("", "")
        return (str(info.get("role")), str(info.get("master_link_status", "")))

    def _sees_replica(self, port: int) -> bool:
        try:
            client = redis.Redis(port=port, socket_timeout=1)
            return bool(client.sentinel_slaves(SERVICE)) and bool(
                client.sentinel_sentinels(SERVICE)
            )
        except redis.RedisError:
            return False

    @staticmethod
    def _wait(ready, what: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis sentinel test deployment: no {what} in {timeout} s")
            time.sleep(0.1)
