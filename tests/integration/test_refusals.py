"""Bad input and refusals: each gets OpenAI's error shape and the right status, from the
real gateway over real backends."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import httpx
import pytest

from tests.support.processes import Gateway, LlamaServer

CHAT_URL = "/v1/chat/completions"


def _error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) >= {"message", "type", "code"}
    assert body["error"]["message"]
    return body["error"]


@pytest.fixture(scope="module")
def http(gateway: Gateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, timeout=60) as client:
        yield client


def test_invalid_json(http: httpx.Client) -> None:
    response = http.post(
        CHAT_URL,
        content=b'{"model": "smollm2", "messages": [',
        headers={"Content-Type": "application/json"},
    )
    error = _error(response, 400)
    assert error["type"] == "invalid_request_error"
    assert "param" in error


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "smollm2"}, "messages"),
        ({"model": "smollm2", "messages": "hello"}, "messages"),
        ({"model": "smollm2", "messages": []}, "messages"),
        ({"model": "smollm2", "messages": [{"content": "no role"}]}, "messages[0]"),
        ({"messages": [{"role": "user", "content": "hi"}]}, "model"),
        ({"model": 7, "messages": [{"role": "user", "content": "hi"}]}, "model"),
        (
            {"model": "smollm2", "messages": [{"role": "user", "content": "x"}], "stream": "yes"},
            "stream",
        ),
        (
            {"model": "smollm2", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0},
            "max_tokens",
        ),
    ],
)
def test_wrong_or_missing_fields(http: httpx.Client, body: dict, param: str) -> None:
    assert _error(http.post(CHAT_URL, json=body), 400)["param"] == param


def test_missing_prompt_on_completions(http: httpx.Client) -> None:
    assert _error(http.post("/v1/completions", json={"model": "smollm2"}), 400)["param"] == "prompt"


def test_unknown_model(http: httpx.Client) -> None:
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
    error = _error(http.post(CHAT_URL, json=body), 404)
    assert error["code"] == "model_not_found"
    assert "gpt-4o" in error["message"]


def test_body_too_large(http: httpx.Client) -> None:
    huge = "x" * (9 * 1024 * 1024)  # over the 8 MiB default
    body = {"model": "smollm2", "messages": [{"role": "user", "content": huge}]}
    assert _error(http.post(CHAT_URL, json=body), 413)["type"] == "invalid_request_error"


def test_unknown_path_and_method(http: httpx.Client) -> None:
    _error(http.get("/v1/nothing"), 404)
    _error(http.get(CHAT_URL), 405)


def test_backend_errors_pass_through(http: httpx.Client) -> None:
    # More choices than the gateway splits a request into: its own 400 (exchange/batch.py).
    body = {"model": "smollm2", "messages": [{"role": "user", "content": "hi"}], "n": 65}
    error = _error(http.post(CHAT_URL, json=body), 400)
    assert error["param"] == "n"
    # The chat backend has no embeddings, the embeddings backend no chat: 501 from it.
    error = _error(http.post("/v1/embeddings", json={"model": "smollm2", "input": "x"}), 501)
    assert error["type"] == "not_supported_error"


@contextlib.contextmanager
def _busy(gateway: Gateway, count: int, max_tokens: int = 1000) -> Iterator[list[int]]:
    """Hold ``count`` long streams open through the gateway; yields the chunks each read."""
    stop = threading.Event()
    started = threading.Barrier(count + 1, timeout=60)
    chunks = [0] * count

    def hold(i: int) -> None:
        body = {
            "model": "smollm2",
            "max_tokens": max_tokens,
            "stream": True,
            "ignore_eos": True,
            "messages": [{"role": "user", "content": f"Tell a very long story, part {i}."}],
        }
        with httpx.stream("POST", f"{gateway.url}{CHAT_URL}", json=body, timeout=120) as r:
            for _ in r.iter_raw():
                chunks[i] += 1
                if chunks[i] == 1:
                    started.wait()
                if stop.is_set():
                    return

    threads = [threading.Thread(target=hold, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    started.wait()
    try:
        yield chunks
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)


def test_prompt_over_the_context_is_refused_before_queueing(
    gateway: Gateway, http: httpx.Client, backends: list[LlamaServer]
) -> None:
    long_prompt = " ".join(f"word{i}" for i in range(1500))  # > 1024 tokens per slot
    body = {"model": "smollm2", "messages": [{"role": "user", "content": long_prompt}]}
    with _busy(gateway, 8):  # every slot of both backends taken
        assert sum(b.busy_slots() for b in backends) == 8
        error = _error(http.post(CHAT_URL, json=body, timeout=30), 400)
        still_busy = sum(b.busy_slots() for b in backends)
    assert error["code"] == "context_length_exceeded"
    assert "1024" in error["message"]
    assert still_busy == 8  # answered while every slot was still busy: it never queued


@pytest.fixture
def small_queue_gateway(backends: list[LlamaServer]) -> Iterator[Gateway]:
    gw = Gateway(
        "--backend", backends[0].url, "--no-auth", "--queue-size", "1", "--queue-timeout", "1.5"
    )
    try:
        yield gw.start()
    finally:
        gw.stop()


def test_full_queue_and_queue_deadline(small_queue_gateway: Gateway) -> None:
    gw = small_queue_gateway
    body = {"model": "smollm2", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}
    results: dict[str, httpx.Response] = {}

    def waiter() -> None:
        results["waiter"] = httpx.post(f"{gw.url}{CHAT_URL}", json=body, timeout=30)

    with _busy(gw, 4):  # all four slots of the only backend
        thread = threading.Thread(target=waiter)
        thread.start()
        # Wait until the waiter is queued, then one more finds the queue full.
        for _ in range(100):
            if gw.metric("llama_gateway_queue_depth", model="smollm2") >= 1:
                break
            threading.Event().wait(0.02)
        full = httpx.post(f"{gw.url}{CHAT_URL}", json=body, timeout=30)
        thread.join(30)

    error = _error(full, 429)
    assert error["code"] == "queue_full"
    assert int(full.headers["retry-after"]) >= 1
    timed_out = results["waiter"]
    assert _error(timed_out, 503)["code"] == "queue_timeout"
    assert int(timed_out.headers["retry-after"]) >= 1
