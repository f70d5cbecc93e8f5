"""The gateway's pooled connections to a real ``llama-server``: an idle one is dropped by the
gateway before the backend drops it, so no request goes out on a connection being closed
(a 502, and a failure counted against a healthy backend)."""

from __future__ import annotations

import re
import time

import httpx

from gateway.upstream.client import KEEPALIVE_SECONDS
from tests.support.processes import Gateway, LlamaServer

CHAT = {"model": "smollm2", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}


def _backend_keepalive(server: LlamaServer) -> float:
    answer = httpx.get(f"{server.url}/health", timeout=10)
    found = re.search(r"timeout=(\d+)", answer.headers.get("keep-alive", ""))
    assert found, answer.headers
    return float(found.group(1))


def test_idle_connections_go_before_the_backend_closes_them(
    gateway: Gateway, backends: list[LlamaServer]
) -> None:
    backend_keepalive = _backend_keepalive(backends[0])
    assert KEEPALIVE_SECONDS < backend_keepalive
    with httpx.Client(base_url=gateway.url, timeout=120) as client:
        assert client.post("/v1/chat/completions", json=CHAT).status_code == 200
        time.sleep(backend_keepalive + 0.5)  # every backend has closed its idle connections
        for _ in range(4):  # on both backends, whichever the routing picks
            answer = client.post("/v1/chat/completions", json=CHAT)
            assert answer.status_code == 200, answer.text
