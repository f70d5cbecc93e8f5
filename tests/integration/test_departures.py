"""A client that leaves takes its request with it (#15, item 1): on a one-slot backend, three
clients that give up while queued behind a long request never run, and one that gives up
while its whole answer is generated frees the slot at once — for every API, streamed or not."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.support.processes import Gateway, LlamaServer

LONG = {
    "model": "smollm2",
    "messages": [{"role": "user", "content": "Tell me a long story."}],
    "max_tokens": 300,
    "ignore_eos": True,
}


@pytest.fixture(scope="module")
def one_slot(llama_bin: str, model_path: str) -> Iterator[tuple[Gateway, LlamaServer]]:
    backend = LlamaServer(llama_bin, model_path, parallel=1, ctx_size=1024).start()
    gateway = Gateway(
        "--backend", backend.url, "--no-auth", "--probe-interval", "0.3", "--queue-timeout", "60"
    )
    try:
        yield gateway.start(), backend
    finally:
        gateway.stop()
        backend.stop()


def _leave_after(url: str, body: dict, seconds: float, path: str = "/v1/chat/completions") -> None:
    with pytest.raises(httpx.TimeoutException):
        httpx.post(f"{url}{path}", json=body, timeout=seconds)


def _leave_stream(url: str, body: dict, seconds: float, path: str) -> None:
    """Read a streamed answer for ``seconds`` (or the first 0.8 s of a whole one), then go."""
    started = time.monotonic()
    try:
        with httpx.stream("POST", f"{url}{path}", json=body, timeout=seconds) as answer:
            for _ in answer.iter_bytes():
                if time.monotonic() - started > seconds:
                    return
    except httpx.TimeoutException:
        return


def _statuses(gateway: Gateway) -> list[int]:
    return [
        json.loads(line)["status"]
        for line in gateway.log().splitlines()
        if line.startswith("{") and '"message": "request"' in line
    ]


def _wait_idle(backend: LlamaServer, timeout: float = 10.0) -> float:
    start = time.monotonic()
    while backend.busy_slots() and time.monotonic() - start < timeout:
        time.sleep(0.05)
    assert backend.busy_slots() == 0
    return time.monotonic() - start


def test_clients_that_leave_the_queue_never_run(one_slot: tuple[Gateway, LlamaServer]) -> None:
    gateway, backend = one_slot
    before = backend.metric("tokens_predicted_total")
    first = threading.Thread(
        target=lambda: httpx.post(f"{gateway.url}/v1/chat/completions", json=LONG, timeout=120)
    )
    first.start()
    time.sleep(0.5)  # the long request holds the only slot
    leavers = [
        threading.Thread(target=_leave_after, args=(gateway.url, LONG, 0.7)) for _ in range(3)
    ]
    for leaver in leavers:
        leaver.start()
    for leaver in leavers:
        leaver.join()
    first.join()
    time.sleep(1.0)  # had a departed waiter been granted the slot, it would be running now
    assert backend.busy_slots() == 0
    assert backend.metric("tokens_predicted_total") - before == 300  # the first one's only
    assert _statuses(gateway).count(499) >= 3


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", {**LONG, "stream": True}),
        ("/v1/messages", {**LONG, "stream": True}),
        ("/completion", {"prompt": "Once upon a time", "n_predict": 300, "stream": True}),
        # Ollama's whole answers are streamed from the backend, so they stop too.
        ("/api/chat", {**LONG, "stream": False, "options": {"num_predict": 300}}),
    ],
)
def test_a_client_that_leaves_a_stream_frees_the_slot_at_once(
    one_slot: tuple[Gateway, LlamaServer], path: str, body: dict
) -> None:
    gateway, backend = one_slot
    _wait_idle(backend)
    before = backend.metric("tokens_predicted_total")
    _leave_stream(gateway.url, {**body, "ignore_eos": True}, 0.8, path)
    _wait_idle(backend)  # aborted upstream, not generated to the end
    assert backend.metric("tokens_predicted_total") - before < 300


def test_a_whole_answer_whose_client_left_keeps_its_slot_until_it_ends(
    one_slot: tuple[Gateway, LlamaServer],
) -> None:
    """llama-server goes on generating a non-streamed answer whose client left; the gateway
    keeps that slot leased until it ends, so the next request waits for it rather than
    being sent to a busy slot — llama-server's own queue stays empty — and is then served."""
    gateway, backend = one_slot
    _wait_idle(backend)
    _leave_after(gateway.url, LONG, 0.8)
    assert backend.busy_slots() == 1  # still generating for nobody
    short = {**LONG, "max_tokens": 4}
    answer = threading.Thread(
        target=lambda: httpx.post(f"{gateway.url}/v1/chat/completions", json=short, timeout=120)
    )
    answer.start()
    deferred = []
    while answer.is_alive():
        deferred.append(backend.metric("requests_deferred"))
        time.sleep(0.1)
    answer.join()
    assert max(deferred) == 0  # never sent while the slot was still taken
    assert _statuses(gateway)[-2:] == [499, 200]  # the one that left, then the short one


def test_a_split_request_whose_client_leaves_gives_every_slot_back(
    one_slot: tuple[Gateway, LlamaServer],
) -> None:
    """Four choices on one slot run one after another; the client leaves after some have
    answered and others still wait: every part's lease comes back, none is left taken."""
    gateway, backend = one_slot
    _wait_idle(backend)
    body = {**LONG, "n": 4, "max_tokens": 12}
    _leave_after(gateway.url, body, 1.0)
    _wait_idle(backend, timeout=30)
    deadline = time.monotonic() + 10
    while gateway.metric("llama_gateway_inflight_requests") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert gateway.metric("llama_gateway_inflight_requests") == 0
    short = {**LONG, "max_tokens": 2}
    assert (
        httpx.post(f"{gateway.url}/v1/chat/completions", json=short, timeout=30).status_code == 200
    )
