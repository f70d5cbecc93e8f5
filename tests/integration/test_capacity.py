"""Slots are a hard limit: the gateway never sends a backend more requests than it has slots,
frees a slot the moment a client goes away, and survives a backend dying."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.support.processes import Gateway, LlamaServer

CHAT = [{"role": "user", "content": "Write a short poem about the sea."}]


def _watch_busy(backends: list[LlamaServer], stop: threading.Event) -> list[list[int]]:
    """Poll every backend's /slots until ``stop``; returns the busy counts seen."""
    seen: list[list[int]] = [[] for _ in backends]

    def watch() -> None:
        while not stop.is_set():
            for i, backend in enumerate(backends):
                try:
                    seen[i].append(backend.busy_slots())
                except httpx.HTTPError:  # a slow answer on a loaded machine: look again
                    continue
            time.sleep(0.02)

    threading.Thread(target=watch, daemon=True).start()
    return seen


async def test_forty_concurrent_requests_never_exceed_the_slots(
    gateway: Gateway, backends: list[LlamaServer]
) -> None:
    client = openai.AsyncOpenAI(
        base_url=f"{gateway.url}/v1", api_key="x", max_retries=0, timeout=600
    )
    stop = threading.Event()
    seen = _watch_busy(backends, stop)
    try:
        answers = await asyncio.gather(
            *(
                client.chat.completions.create(model="smollm2", messages=CHAT, max_tokens=24)
                for _ in range(40)
            )
        )
    finally:
        stop.set()
    assert len(answers) == 40
    assert all(a.choices[0].message.content for a in answers)
    for counts in seen:
        assert max(counts) <= 4
    # Both backends were used, and both were full at some point: the limit was exercised.
    assert all(max(counts) == 4 for counts in seen)


def test_client_disconnect_mid_stream_frees_the_slot(
    gateway: Gateway, backends: list[LlamaServer]
) -> None:
    # ignore_eos (a llama-server field the gateway passes through) makes it run all 2000.
    body = {
        "model": "smollm2",
        "messages": CHAT,
        "max_tokens": 2000,
        "stream": True,
        "ignore_eos": True,
    }
    with httpx.stream(
        "POST", f"{gateway.url}/v1/chat/completions", json=body, timeout=60
    ) as response:
        # Keep the iterator: dropping it would close the connection before the checks.
        lines = response.iter_lines()
        for _ in range(6):
            next(lines)
        assert sum(b.busy_slots() for b in backends) == 1
        assert gateway.metric("llama_gateway_slots_busy") == 1
    # The client hung up after a few tokens of 2000: the slot must be free again soon.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if (
            sum(b.busy_slots() for b in backends) == 0
            and gateway.metric("llama_gateway_slots_busy") == 0
        ):
            break
        time.sleep(0.1)
    assert sum(b.busy_slots() for b in backends) == 0
    assert gateway.metric("llama_gateway_slots_busy") == 0
    assert gateway.metric("llama_gateway_requests_total", status="499") >= 1


@pytest.fixture
def doomed_pool(llama_bin: str, model_path: str) -> Iterator[list[LlamaServer]]:
    servers = [LlamaServer(llama_bin, model_path, parallel=2, ctx_size=2048) for _ in range(2)]
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()


def test_failover_when_a_backend_is_killed(doomed_pool: list[LlamaServer]) -> None:
    first, second = doomed_pool
    # Slow probes: requests discover the death. round-robin: every other request is sent to
    # the dead backend first, until it is taken out of rotation.
    gw = Gateway(
        "--backend",
        first.url,
        "--backend",
        second.url,
        "--no-auth",
        "--probe-interval",
        "30",
        "--routing",
        "round-robin",
    )
    gw.start()
    try:
        client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0)
        first.kill()
        for _ in range(6):
            answer = client.chat.completions.create(model="smollm2", messages=CHAT, max_tokens=3)
            assert answer.choices[0].message.content
        ready = httpx.get(f"{gw.url}/ready").json()
        states = {b["backend"]: b["state"] for b in ready["backends"]}
        assert states[f"127.0.0.1:{first.port}"] == "unhealthy"
        assert states[f"127.0.0.1:{second.port}"] == "ready"
    finally:
        gw.stop()


def test_backend_returns_to_rotation_after_a_good_probe(
    doomed_pool: list[LlamaServer], llama_bin: str, model_path: str
) -> None:
    first, second = doomed_pool
    gw = Gateway(
        "--backend", first.url, "--backend", second.url, "--no-auth", "--probe-interval", "0.3"
    )
    gw.start()
    revived = LlamaServer(llama_bin, model_path, parallel=2, ctx_size=2048, port=first.port)
    try:
        first.kill()
        _wait_state(gw, first.port, "unhealthy")
        revived.start()
        _wait_state(gw, first.port, "ready")
        second.kill()
        client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0)
        answer = client.chat.completions.create(model="smollm2", messages=CHAT, max_tokens=3)
        assert answer.choices[0].message.content
    finally:
        revived.stop()
        gw.stop()


def _wait_state(gw: Gateway, port: int, state: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    states: dict = {}
    while time.monotonic() < deadline:
        backends = httpx.get(f"{gw.url}/ready").json()["backends"]
        states = {b["backend"]: b["state"] for b in backends}
        if states.get(f"127.0.0.1:{port}") == state:
            return
        time.sleep(0.1)
    raise AssertionError(f"backend on port {port} never became {state}: {states}")
