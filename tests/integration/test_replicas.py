"""Several gateway replicas sharing one real Redis: one view of capacity, no leaked slots when
a replica dies, and a Redis outage answered with 503s rather than hangs or losses."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import redis

from gateway.store import keys
from tests.support.processes import Gateway, LlamaServer
from tests.support.redis_server import RedisServer

CHAT = {
    "model": "smollm2",
    "max_tokens": 16,
    "messages": [{"role": "user", "content": "Write a haiku about rain."}],
}


def _replica(redis_url: str, backends: list[LlamaServer], *extra: str) -> Gateway:
    args = [a for b in backends for a in ("--backend", b.url)]
    return Gateway(*args, "--no-auth", "--redis-url", redis_url, "--queue-timeout", "600", *extra)


@pytest.fixture
def fresh_redis(redis_server: RedisServer) -> str:
    redis.Redis(port=redis_server.port).flushdb()
    return redis_server.url


@pytest.fixture
def three_replicas(fresh_redis: str, backends: list[LlamaServer]) -> Iterator[list[Gateway]]:
    replicas = [_replica(fresh_redis, backends) for _ in range(3)]
    try:
        for replica in replicas:
            replica.start()
        yield replicas
    finally:
        for replica in replicas:
            replica.stop()


async def test_three_replicas_never_exceed_the_slots(
    three_replicas: list[Gateway], backends: list[LlamaServer]
) -> None:
    stop = threading.Event()
    peaks = [0, 0]

    def watch() -> None:
        while not stop.is_set():
            for i, backend in enumerate(backends):
                try:
                    peaks[i] = max(peaks[i], backend.busy_slots())
                except httpx.HTTPError:  # a slow answer on a loaded machine: look again
                    continue
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    async with httpx.AsyncClient(timeout=600) as client:
        answers = await asyncio.gather(
            *(
                client.post(f"{three_replicas[i % 3].url}/v1/chat/completions", json=CHAT)
                for i in range(60)
            )
        )
    stop.set()
    watcher.join()
    assert [a.status_code for a in answers] == [200] * 60
    assert all(a.json()["usage"]["completion_tokens"] > 0 for a in answers)
    assert peaks == [4, 4]  # both full at some moment, never over


def test_a_killed_replica_frees_its_lease_within_the_ttl(
    fresh_redis: str, backends: list[LlamaServer], redis_server: RedisServer
) -> None:
    ttl = 3.0
    doomed = _replica(fresh_redis, backends[:1], "--lease-ttl", str(ttl)).start()
    store = redis.Redis(port=redis_server.port)
    lease_key = keys.leases("smollm2", f"127.0.0.1:{backends[0].port}")
    body = {**CHAT, "max_tokens": 2000, "stream": True, "ignore_eos": True}
    with httpx.stream("POST", f"{doomed.url}/v1/chat/completions", json=body, timeout=60) as stream:
        lines = stream.iter_lines()
        next(lines)
        assert store.zcard(lease_key) == 1
        doomed.process.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        doomed.process.wait()
    # No replica releases it; the lease runs out after its TTL and the next script purges it.
    survivor = _replica(fresh_redis, backends[:1], "--lease-ttl", str(ttl)).start()
    try:
        while time.monotonic() - killed_at < ttl + 1:
            time.sleep(0.2)
        answer = httpx.post(f"{survivor.url}/v1/chat/completions", json=CHAT, timeout=120)
        assert answer.status_code == 200
        assert store.zcard(lease_key) == 0
    finally:
        survivor.stop()


def test_redis_outage_gives_503_and_recovers(tmp_path, backends: list[LlamaServer]) -> None:
    server = RedisServer(tmp_path / "redis")
    server.start()
    gw = _replica(server.url, backends, "--lease-ttl", "3").start()
    try:
        body = {**CHAT, "max_tokens": 200, "stream": True, "ignore_eos": True}
        with httpx.stream(
            "POST", f"{gw.url}/v1/chat/completions", json=body, timeout=120
        ) as admitted:
            lines = admitted.iter_lines()
            next(lines)
            server.stop()
            refused = httpx.post(f"{gw.url}/v1/chat/completions", json=CHAT, timeout=30)
            assert refused.status_code == 503, refused.text
            assert refused.json()["error"]["type"] == "service_unavailable_error"
            assert int(refused.headers["retry-after"]) >= 1
            # The request admitted before the outage runs to its end.
            rest = list(lines)
        assert "data: [DONE]" in rest
        deadline = time.monotonic() + 10
        while httpx.get(f"{gw.url}/ready").status_code != 503:
            assert time.monotonic() < deadline, "/ready still 200 with Redis down"
            time.sleep(0.2)

        server.start()
        deadline = time.monotonic() + 20
        while (
            answer := httpx.post(f"{gw.url}/v1/chat/completions", json=CHAT, timeout=120)
        ).status_code != 200:
            assert time.monotonic() < deadline, answer.text
            time.sleep(0.3)
        deadline = time.monotonic() + 10
        while httpx.get(f"{gw.url}/ready").status_code != 200:
            assert time.monotonic() < deadline, "/ready did not recover"
            time.sleep(0.2)
    finally:
        gw.stop()
        server.stop()
