"""The scheduler with the ``process`` driver, on real ``llama-server`` runners and the real
model: load on first request (a second request joins the same load), keep-alive unload,
``keep_alive: 0``, restart after ``kill -9``, LRU eviction under a declared GPU budget."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from gateway.config import ModelSpec
from gateway.gguf import read_geometry
from gateway.runners.placement import footprint
from tests.support.processes import Gateway, scrape
from tests.support.runners import (
    card,
    chat,
    config_gateway,
    model,
    pid_alive,
    runners,
    wait_for,
)

pytestmark = pytest.mark.llama

LAZY = "smol-lazy"


@pytest.fixture(scope="module")
def lazy(
    tmp_path_factory: pytest.TempPathFactory, llama_bin: str, model_path: str
) -> Iterator[Gateway]:
    """One declared model, loaded on demand, kept 5 s when idle."""
    config = {
        "models": [
            {"name": LAZY, "path": model_path, "ctx_size": 1024, "parallel": 2, "keep_alive": "5s"}
        ]
    }
    gw = config_gateway(
        tmp_path_factory.mktemp("lazy"), config, env={"LLAMA_SERVER_BIN": llama_bin}
    )
    gw.start()
    try:
        yield gw
    finally:
        gw.stop()


def test_first_request_loads_and_a_second_joins_the_same_load(lazy: Gateway) -> None:
    assert model(lazy, LAZY)["state"] == "unloaded"
    assert card(lazy, LAZY)["meta"]["state"] == "unloaded"
    assert runners(lazy)["runners"] == []

    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda _: chat(lazy, LAZY, keep_alive="5m"), range(2)))
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]

    (runner,) = runners(lazy)["runners"]
    assert runner["state"] == "ready" and runner["driver"] == "process"
    assert lazy.log().count(f"loading {LAZY} on host") == 1  # one load, shared
    meta = card(lazy, LAZY)["meta"]
    assert meta["state"] == "loaded" and meta["replicas"] == {"ready": 1, "desired": 1}

    listed = subprocess.run(
        [sys.executable, "-m", "gateway", "models", "--url", lazy.url],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    assert LAZY in listed and "loaded" in listed and f"pid {runner['pid']}" in listed


def test_idle_runner_unloads_after_its_keep_alive(lazy: Gateway) -> None:
    assert chat(lazy, LAZY).status_code == 200  # keep-alive back to the model's 5 s
    (runner,) = runners(lazy)["runners"]
    took = wait_for("the idle unload", lambda: model(lazy, LAZY)["state"] == "unloaded", 20)
    assert 3.5 < took < 12
    # The runner stays listed (draining) until its process has ended: on a loaded machine
    # that can outlast the model's own "unloaded".
    wait_for("the runner to leave the list", lambda: runners(lazy)["runners"] == [], 10)
    wait_for("the runner process to end", lambda: not pid_alive(runner["pid"]), 10)


def test_keep_alive_zero_unloads_right_after_the_request(lazy: Gateway) -> None:
    answer = chat(lazy, LAZY, keep_alive=0)
    assert answer.status_code == 200, answer.text
    took = wait_for("the unload", lambda: model(lazy, LAZY)["state"] == "unloaded", 10)
    assert took < 4  # the model's own keep-alive is 5 s


def test_killed_runner_is_restarted_and_a_request_in_the_outage_succeeds(lazy: Gateway) -> None:
    assert chat(lazy, LAZY, keep_alive="5m").status_code == 200
    (runner,) = runners(lazy)["runners"]
    before = runners(lazy)["restarts"]
    os.kill(runner["pid"], signal.SIGKILL)
    wait_for("the gateway to notice", lambda: runners(lazy)["restarts"] == before + 1, 10)
    assert model(lazy, LAZY)["state"] == "loading"  # the outage

    answer = chat(lazy, LAZY)
    assert answer.status_code == 200, answer.text
    (fresh,) = runners(lazy)["runners"]
    assert fresh["pid"] != runner["pid"] and fresh["state"] == "ready"
    assert model(lazy, LAZY)["restarts"] >= 1
    assert lazy.metric("llama_gateway_runner_restarts_total", model=LAZY) >= 1
    assert "exited (code -9); restart #" in lazy.log()


def test_lru_eviction_when_two_models_do_not_fit(
    tmp_path: Path, llama_bin: str, model_path: str
) -> None:
    """Two models from one file on a GPU that holds one: the idle one makes room, the busy
    one is not touched until its request ends. (Placement is arithmetic; they run on CPU.)"""
    spec = {"path": model_path, "ctx_size": 1024, "parallel": 2, "keep_alive": "10m"}
    need = footprint(ModelSpec(**spec), read_geometry(model_path), 64 * 1024**2).total
    config = {
        "gpus": [{"id": "0", "memory": int(need * 1.5)}],
        "runner_overhead": "64MiB",
        "models": [{"name": "first", **spec}, {"name": "second", **spec}],
    }
    gw = config_gateway(
        tmp_path, config, "--queue-timeout", "300", env={"LLAMA_SERVER_BIN": llama_bin}
    )
    gw.start()
    try:
        assert chat(gw, "first").status_code == 200
        (first,) = runners(gw)["runners"]
        assert first["device"] == "GPU 0"

        # A long generation keeps "first" busy while "second" is asked for.
        body = {
            "model": "first",
            "prompt": "Once upon a time",
            "max_tokens": 200,
            "ignore_eos": True,
            "stream": True,
        }
        streaming = threading.Event()
        second: list[httpx.Response] = []
        with httpx.stream("POST", f"{gw.url}/v1/completions", json=body, timeout=120) as stream:
            for _ in stream.iter_lines():
                if not streaming.is_set():
                    streaming.set()
                    asker = threading.Thread(
                        target=lambda: second.append(chat(gw, "second", timeout=300))
                    )
                    asker.start()
                    wait_for("second to wait", lambda: model(gw, "second")["state"] == "loading")
                    states = {r["model"]: r["state"] for r in runners(gw)["runners"]}
                    assert states == {"first": "ready"}, states  # busy: not evicted
        asker.join(300)
        assert second and second[0].status_code == 200, second

        (only,) = runners(gw)["runners"]
        assert only["model"] == "second" and only["device"] == "GPU 0"
        assert model(gw, "first")["state"] == "unloaded"
        assert "making room on GPU 0 for second" in gw.log()
        assert not pid_alive(first["pid"])
    finally:
        gw.stop()


def test_kv_capacity_of_a_supervised_runner_follows_its_cache_types(
    tmp_path: Path, llama_bin: str, model_path: str
) -> None:
    """A runner started with ``-ctk q8_0``: its K cache takes 34 bytes per 32 elements, its V
    cache 2 bytes an element (f16) — the gauge follows the flags the gateway started it with."""
    config = {
        "models": [
            {
                "name": "smol-q8",
                "path": model_path,
                "ctx_size": 1024,
                "parallel": 2,
                "cache_type_k": "q8_0",
                "preload": True,
                "keep_alive": -1,
            }
        ]
    }
    g = read_geometry(model_path)
    elements = 1024 * g.n_layer * g.n_head_kv * g.key_length  # K (and V) elements of 1024 cells
    expected = elements * 34 // 32 + elements * 2
    gw = config_gateway(tmp_path, config, env={"LLAMA_SERVER_BIN": llama_bin}).start()
    try:

        def capacity() -> float | None:
            found = scrape(f"{gw.url}/metrics").get("llama_gateway_kv_cache_capacity_bytes")
            return found[0][1] if found else None

        wait_for("the KV capacity gauge", lambda: capacity() == expected)
    finally:
        gw.stop()
