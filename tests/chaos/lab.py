"""The processes a chaos scenario runs against — real ``llama-server`` runners on the real model,
real ``redis-server`` (and Sentinels), real gateways through the command line — all on loopback
ports, each stopped when the scenario ends, whatever happened."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.processes import Gateway, LlamaServer
from tests.support.redis_sentinel import Sentinels
from tests.support.redis_server import RedisServer

ADMIN = "chaos-admin-token"


@dataclass
class Lab:
    model: str
    llama_bin: str
    workdir: Path
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    _shared: list[LlamaServer] = field(default_factory=list)

    def backends(self) -> list[LlamaServer]:
        """Two 4-slot runners serving the model as ``smollm2``, shared by the scenarios of one
        run (a scenario that kills a runner starts its own with :meth:`runner`)."""
        if not self._shared:
            self._shared = [LlamaServer(self.llama_bin, self.model).start() for _ in range(2)]
        return self._shared

    def runner(self, **options: object) -> LlamaServer:
        server = LlamaServer(self.llama_bin, self.model, **options).start()  # type: ignore[arg-type]
        self._stack.callback(server.stop)
        return server

    def redis(self, name: str = "redis") -> RedisServer:
        server = RedisServer(self._folder(name))
        server.start()
        self._stack.callback(server.stop)
        return server

    def sentinels(self) -> Sentinels:
        deployment = Sentinels(self._folder("sentinels")).start()
        self._stack.callback(deployment.stop)
        return deployment

    def gateway(self, backends: list[LlamaServer], *args: str) -> Gateway:
        flags = [a for b in backends for a in ("--backend", b.url)]
        return self.started(Gateway(*flags, *args))

    def started(self, gw: Gateway) -> Gateway:
        """``gw`` started, and stopped when the scenario ends."""
        gw.start()
        self._stack.callback(gw.stop)
        return gw

    def create_key(self, gw: Gateway, **fields: object) -> str:
        """A key made through the admin API of ``gw`` (started with ``--admin-token ADMIN``)."""
        return gw.create_key(ADMIN, **fields)

    @contextlib.contextmanager
    def scenario(self) -> Iterator[Lab]:
        """Everything a scenario started is stopped when it ends; the shared runners stay."""
        with self._stack:
            yield self
        self._stack = contextlib.ExitStack()

    def close(self) -> None:
        for server in self._shared:
            server.stop()

    def _folder(self, name: str) -> Path:
        folder = self.workdir / name
        shutil.rmtree(folder, ignore_errors=True)
        return folder
