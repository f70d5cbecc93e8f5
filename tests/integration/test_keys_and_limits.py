"""API keys and per-key limits through the gateway (default ``memory://`` store): keys made
with the admin API, every refusal with its status and headers, revocation, no secret in logs
or metrics."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import redis

from gateway.store import keys
from tests.support.processes import Gateway, LlamaServer
from tests.support.redis_server import RedisServer

ADMIN = "admin-secret-for-tests"
CHAT = {"model": "smollm2", "max_tokens": 3, "messages": [{"role": "user", "content": "Hi"}]}


@pytest.fixture(scope="module")
def keyed_gateway(backends: list[LlamaServer]) -> Iterator[Gateway]:
    gw = Gateway(
        "--backend",
        backends[0].url,
        "--backend",
        backends[1].url,
        "--admin-token",
        ADMIN,
        "--queue-timeout",
        "300",
    )
    try:
        yield gw.start()
    finally:
        gw.stop()


def _create(gw: Gateway, **fields) -> dict:
    response = httpx.post(
        f"{gw.url}/admin/keys", json=fields, headers={"Authorization": f"Bearer {ADMIN}"}
    )
    assert response.status_code == 201, response.text
    return response.json()


def _chat(gw: Gateway, secret: str | None, body: dict = CHAT) -> httpx.Response:
    headers = {"Authorization": f"Bearer {secret}"} if secret else {}
    return httpx.post(f"{gw.url}/v1/chat/completions", json=body, headers=headers, timeout=120)


def _error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


def test_a_key_is_required_and_checked(keyed_gateway: Gateway) -> None:
    assert _error(_chat(keyed_gateway, None), 401)["code"] == "invalid_api_key"
    assert _error(_chat(keyed_gateway, "sk-lg-not-a-real-key"), 401)["code"] == "invalid_api_key"
    key = _create(keyed_gateway, name="alice")
    assert key["key"].startswith("sk-lg-")
    answer = _chat(keyed_gateway, key["key"])
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"]
    models = httpx.get(
        f"{keyed_gateway.url}/v1/models", headers={"Authorization": f"Bearer {key['key']}"}
    )
    assert models.status_code == 200
    assert httpx.get(f"{keyed_gateway.url}/v1/models").status_code == 401


def test_admin_api_needs_the_admin_token(keyed_gateway: Gateway) -> None:
    assert _error(httpx.get(f"{keyed_gateway.url}/admin/keys"), 401)
    key = _create(keyed_gateway, name="not-an-admin")
    listing = httpx.get(
        f"{keyed_gateway.url}/admin/keys", headers={"Authorization": f"Bearer {key['key']}"}
    )
    _error(listing, 401)


def test_model_allow_list(keyed_gateway: Gateway) -> None:
    key = _create(keyed_gateway, name="embed-only", models=["smollm2-embed"])
    error = _error(_chat(keyed_gateway, key["key"]), 403)
    assert error["param"] == "model"


def test_requests_per_minute(keyed_gateway: Gateway) -> None:
    key = _create(keyed_gateway, name="slow", rpm=2)
    first = _chat(keyed_gateway, key["key"])
    assert first.status_code == 200
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    assert _chat(keyed_gateway, key["key"]).status_code == 200
    refused = _chat(keyed_gateway, key["key"])
    error = _error(refused, 429)
    assert error["code"] == "rate_limit_exceeded"
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert refused.headers["x-ratelimit-reset-requests"]


def test_tokens_per_minute_is_corrected_by_real_usage(keyed_gateway: Gateway) -> None:
    key = _create(keyed_gateway, name="tokens", tpm=400)
    first = _chat(keyed_gateway, key["key"], {**CHAT, "max_tokens": 100})
    assert first.status_code == 200
    # Charged ~100 tokens up front, then corrected to the real total (far fewer).
    used = first.json()["usage"]["total_tokens"]
    second = _chat(keyed_gateway, key["key"])
    remaining = int(second.headers["x-ratelimit-remaining-tokens"])
    assert remaining >= 400 - used - 3 - 10 - 10  # the second request's estimate, and a refill
    big = _chat(keyed_gateway, key["key"], {**CHAT, "max_tokens": 1000})
    assert _error(big, 429)["code"] == "rate_limit_exceeded"
    assert "x-ratelimit-remaining-tokens" in big.headers


def test_max_concurrency(keyed_gateway: Gateway) -> None:
    key = _create(keyed_gateway, name="one-at-a-time", max_concurrency=1)
    body = {**CHAT, "max_tokens": 400, "stream": True, "ignore_eos": True}
    headers = {"Authorization": f"Bearer {key['key']}"}
    with httpx.stream(
        "POST", f"{keyed_gateway.url}/v1/chat/completions", json=body, headers=headers, timeout=120
    ) as running:
        lines = running.iter_lines()
        next(lines)
        error = _error(_chat(keyed_gateway, key["key"]), 429)
        assert "concurren" in error["message"].lower()
    # Once the stream is gone, the key may run again.
    deadline = time.monotonic() + 10
    while (answer := _chat(keyed_gateway, key["key"])).status_code == 429:
        assert time.monotonic() < deadline, answer.text
        time.sleep(0.2)
    assert answer.status_code == 200


@pytest.mark.parametrize("store", ["memory", "redis"])
def test_max_concurrency_one_answer_after_another(
    store: str, backends: list[LlamaServer], redis_server: RedisServer
) -> None:
    """A client that sends each request once it has the last answer is never refused by
    ``max_concurrency: 1``: a whole answer goes out once its lease and place are given back
    to the store — written to it, not yet answered — and the store runs them before the
    client's next request is checked."""
    extra = ["--redis-url", redis_server.url] if store == "redis" else []
    gw = Gateway("--backend", backends[0].url, "--admin-token", ADMIN, *extra).start()
    try:
        key = _create(gw, name=f"one-after-another-{store}", max_concurrency=1)
        headers = {"Authorization": f"Bearer {key['key']}"}
        with httpx.Client(base_url=gw.url, headers=headers, timeout=120) as client:
            statuses = [client.post("/v1/chat/completions", json=CHAT) for _ in range(20)]
        assert [s.status_code for s in statuses] == [200] * 20, [s.text for s in statuses]
    finally:
        gw.stop()


def test_whole_answer_waits_for_its_settlement_to_be_written_not_answered(
    backends: list[LlamaServer], redis_server: RedisServer
) -> None:
    """While Redis holds its writes back (``CLIENT PAUSE … WRITE``), a whole answer
    generated meanwhile still arrives, its request still counted in flight: the answer waited
    for its release and settlement to be written to Redis, not for Redis to run them (a round
    trip less). The client's next request, sent at once, waits in Redis behind them and is
    not refused by ``max_concurrency: 1``: Redis runs what it was sent in order."""
    gw = Gateway(
        "--backend", backends[0].url, "--admin-token", ADMIN, "--redis-url", redis_server.url
    ).start()  # fmt: skip
    store = redis.Redis.from_url(redis_server.url)
    try:
        key = _create(gw, name="settled-in-order", max_concurrency=1)
        in_flight = keys.limit(key["id"], "conc")
        headers = {"Authorization": f"Bearer {key['key']}"}
        long = {**CHAT, "max_tokens": 64, "ignore_eos": True}
        with (
            httpx.Client(base_url=gw.url, headers=headers, timeout=120) as client,
            ThreadPoolExecutor(1) as send,
        ):
            assert client.post("/v1/chat/completions", json=CHAT).status_code == 200  # warm
            first = send.submit(client.post, "/v1/chat/completions", json=long)
            deadline = time.monotonic() + 30
            while backends[0].busy_slots() == 0:
                assert time.monotonic() < deadline, "the answer never started"
                time.sleep(0.01)
            store.execute_command("CLIENT", "PAUSE", 20000, "WRITE")
            try:
                assert first.result(timeout=15).status_code == 200
                assert store.zcard(in_flight) == 1  # settled only once Redis runs writes again
                following = send.submit(client.post, "/v1/chat/completions", json=CHAT)
                time.sleep(0.3)  # (it reaches Redis, behind the settlement, while paused)
            finally:
                store.execute_command("CLIENT", "UNPAUSE")
            assert following.result(timeout=60).status_code == 200, following.result().text
        assert store.zcard(in_flight) == 0
    finally:
        store.close()
        gw.stop()


def test_a_refused_request_gives_back_the_slot_asked_for_beside_its_limits(
    backends: list[LlamaServer], redis_server: RedisServer
) -> None:
    """With one backend, the gateway asks for a free slot in the same round trip as the
    limits check, before knowing its verdict: a request its limits refuse has its lease given
    back before its 429 goes out — no slot stays taken, nothing reaches the backend."""
    gw = Gateway(
        "--backend", backends[0].url, "--admin-token", ADMIN, "--redis-url", redis_server.url
    ).start()  # fmt: skip
    store = redis.Redis.from_url(redis_server.url)
    leases = keys.leases("smollm2", f"127.0.0.1:{backends[0].port}")
    try:
        key = _create(gw, name="refused-beside-its-lease", rpm=1)
        assert _chat(gw, key["key"]).status_code == 200
        served = backends[0].metric("tokens_predicted")
        for _ in range(3):
            _error(_chat(gw, key["key"]), 429)
            assert store.zcard(leases) == 0
        assert backends[0].metric("tokens_predicted") == served
        assert _chat(gw, None).status_code == 401  # (and the next key's requests are served)
        other = _create(gw, name="served-after-the-refusals", rpm=5)
        assert _chat(gw, other["key"]).status_code == 200
        assert store.zcard(leases) == 0
    finally:
        store.close()
        gw.stop()


def test_revocation_lands_within_seconds(keyed_gateway: Gateway) -> None:
    key = _create(keyed_gateway, name="short-lived")
    assert _chat(keyed_gateway, key["key"]).status_code == 200
    revoked = httpx.delete(
        f"{keyed_gateway.url}/admin/keys/{key['id']}", headers={"Authorization": f"Bearer {ADMIN}"}
    )
    assert revoked.status_code == 200
    deadline = time.monotonic() + 5
    while _chat(keyed_gateway, key["key"]).status_code == 200:
        assert time.monotonic() < deadline, "revoked key still works after 5 s"
        time.sleep(0.2)
    assert _error(_chat(keyed_gateway, key["key"]), 401)["code"] == "invalid_api_key"


def test_no_secret_in_logs_or_metrics(keyed_gateway: Gateway) -> None:
    key = _create(keyed_gateway, name="secretive")
    assert _chat(keyed_gateway, key["key"]).status_code == 200
    metrics = httpx.get(f"{keyed_gateway.url}/metrics").text
    assert 'key="secretive"' in metrics
    for secret in (key["key"], key["key"][6:], ADMIN):
        assert secret not in metrics
        assert secret not in keyed_gateway.log()


def test_fair_share_between_a_flood_and_a_single_request(llama_bin: str, model_path: str) -> None:
    """One key floods a one-slot backend; another key's single request is served within
    about one request's service time, not after the flood."""
    server = LlamaServer(llama_bin, model_path, parallel=1, ctx_size=1024).start()
    gw = Gateway("--backend", server.url, "--admin-token", ADMIN, "--queue-timeout", "600")
    gw.start()
    try:
        flood, light = _create(gw, name="flood")["key"], _create(gw, name="light")["key"]
        finished: list[str] = []
        lock = threading.Lock()

        def send(secret: str, tag: str) -> None:
            response = _chat(gw, secret, {**CHAT, "max_tokens": 8, "ignore_eos": True})
            assert response.status_code == 200, response.text
            with lock:
                finished.append(tag)

        threads = [threading.Thread(target=send, args=(flood, f"flood-{i}")) for i in range(12)]
        for thread in threads:
            thread.start()
        while gw.metric("llama_gateway_queue_depth", model="smollm2") < 11:
            time.sleep(0.05)
        light_thread = threading.Thread(target=send, args=(light, "light"))
        light_thread.start()
        for thread in [*threads, light_thread]:
            thread.join(600)
        # Eleven flood requests were queued before it; it finished within the next two.
        assert "light" in finished[:3], finished
    finally:
        gw.stop()
        server.stop()
