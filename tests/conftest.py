"""Fixtures shared by the whole suite: the real model, real llama-server backends and real
gateways. Backends are started once per session and shared; tests that kill a backend make
their own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.processes import Gateway, LlamaServer, asset
from tests.support.redis_server import RedisServer


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real redis-server (AOF on) on a free port, shared by the session."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def model_path() -> str:
    return asset("model", "LLAMA_GATEWAY_TEST_MODEL")


@pytest.fixture(scope="session")
def llama_bin(model_path: str) -> str:
    return asset("llama-server", "LLAMA_SERVER_BIN")


@pytest.fixture(scope="session")
def backends(llama_bin: str, model_path: str) -> Iterator[list[LlamaServer]]:
    """Two 4-slot chat backends serving the model as ``smollm2``."""
    servers = [LlamaServer(llama_bin, model_path) for _ in range(2)]
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()


@pytest.fixture(scope="session")
def embedding_backend(llama_bin: str, model_path: str) -> Iterator[LlamaServer]:
    server = LlamaServer(
        llama_bin,
        model_path,
        parallel=2,
        ctx_size=2048,
        alias="smollm2-embed",
        extra=("--embeddings", "--pooling", "mean"),
    )
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def gateway(backends: list[LlamaServer], embedding_backend: LlamaServer) -> Iterator[Gateway]:
    """A gateway over both chat backends and the embeddings backend."""
    args = []
    for server in [*backends, embedding_backend]:
        args += ["--backend", server.url]
    gw = Gateway(
        *args,
        "--no-auth",
        "--probe-interval",
        "0.5",
        "--queue-timeout",
        "300",
        env={"LLAMA_GATEWAY_ALIASES": "smol=smollm2"},
    )
    try:
        yield gw.start()
    finally:
        gw.stop()
