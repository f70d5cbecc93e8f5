"""What both fuzzers share: one real ``llama-server`` with a tiny context and at most 8
generated tokens per request (one that happens to be valid ends in well under a second), and
gateways over it with keys, an admin token and a metrics token, as a team runs one."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.support.processes import Gateway, LlamaServer

ADMIN = "fuzz-admin-token"
METRICS = "fuzz-metrics-token"


@pytest.fixture(scope="session")
def fuzz_backend(llama_bin: str, model_path: str) -> Iterator[LlamaServer]:
    # -n 8 caps every generation however many tokens a fuzzed request asks for.
    server = LlamaServer(llama_bin, model_path, parallel=2, ctx_size=256, extra=("-n", "8"))
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def fuzz_gateway(fuzz_backend: LlamaServer) -> Iterator[Callable[[], tuple[Gateway, str]]]:
    """Starts a gateway over the backend (each fuzzer its own: admin actions one of them
    stumbles on, such as a drain, stay with it); returns it and an API key it knows."""
    started: list[Gateway] = []

    def start() -> tuple[Gateway, str]:
        gw = Gateway(
            "--backend",
            fuzz_backend.url,
            "--admin-token",
            ADMIN,
            "--queue-timeout",
            "5",
            env={"LLAMA_GATEWAY_METRICS_TOKEN": METRICS, "LLAMA_GATEWAY_ALIASES": "smol=smollm2"},
        )
        started.append(gw)
        gw.start()
        created = httpx.post(
            f"{gw.url}/admin/keys",
            json={"name": "fuzzer"},
            headers={"Authorization": f"Bearer {ADMIN}"},
        )
        assert created.status_code == 201, created.text
        return gw, created.json()["key"]

    try:
        yield start
    finally:
        for gw in started:
            gw.stop()
