"""Runners the gateway supervises (#15 items 8, 10 and 12), with real ``llama-server``
processes on the real model:

- they answer only the gateway: started with a random internal API key, which the gateway
  sends (its requests and health checks succeed) and nobody else has;
- they die with their gateway, even by ``kill -9``, and a gateway started again on the same
  port finds none of them holding a port;
- a model that failed to load says so without the runner's address or the model's path.
"""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import httpx
import pytest

from tests.support.processes import Gateway
from tests.support.runners import chat, config_gateway, pid_alive, runners, wait_for

pytestmark = pytest.mark.llama

MODEL = "smol-edge"


def _supervising(tmp: Path, model_path: str, llama_bin: str, *args: str, port: int = 0) -> Gateway:
    config = {
        "models": [
            {"name": MODEL, "path": model_path, "ctx_size": 512, "parallel": 1, "preload": True}
        ]
    }
    gw = config_gateway(tmp, config, *args, env={"LLAMA_SERVER_BIN": llama_bin})
    if port:  # started again where the killed one listened
        gw.port = port
        gw.args[gw.args.index("--port") + 1] = str(port)
    return gw


def _port_is_free(port: int) -> bool:
    """Nothing listens there (SO_REUSEADDR: the killed runner's closed connections may sit in
    TIME_WAIT, which holds no one's port — llama-server binds with it too)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
        except OSError:
            return False
    return True


def test_runner_answers_only_the_gateway(tmp_path: Path, model_path: str, llama_bin: str) -> None:
    gw = _supervising(tmp_path, model_path, llama_bin).start()
    try:
        wait_for("the runner", lambda: runners(gw)["runners"] != [], 60)
        (runner,) = runners(gw)["runners"]
        assert chat(gw, MODEL).status_code == 200  # the gateway's own key works

        body = {"prompt": "Hello", "n_predict": 1}
        direct = httpx.post(f"{runner['url']}/completion", json=body, timeout=30)
        assert direct.status_code == 401, direct.text
        guessed = httpx.post(
            f"{runner['url']}/completion",
            json=body,
            headers={"Authorization": "Bearer not-the-key"},
            timeout=30,
        )
        assert guessed.status_code == 401
        # Not on the command line either, where any local user's ps would show it.
        with open(f"/proc/{runner['pid']}/cmdline", "rb") as cmdline:
            assert b"--api-key\0" not in cmdline.read()
        assert "Bearer" not in gw.log()
    finally:
        gw.stop()


def test_runners_die_with_a_killed_gateway(tmp_path: Path, model_path: str, llama_bin: str) -> None:
    gw = _supervising(tmp_path, model_path, llama_bin).start()
    try:
        wait_for("the runner", lambda: runners(gw)["runners"] != [], 60)
        (runner,) = runners(gw)["runners"]
        runner_port = int(runner["url"].rsplit(":", 1)[1])
        assert pid_alive(runner["pid"])

        assert gw.process is not None
        os.kill(gw.process.pid, signal.SIGKILL)
        gw.process.wait()
        wait_for("the orphaned runner to die", lambda: not pid_alive(runner["pid"]), 10)
        wait_for("the runner's port to be free", lambda: _port_is_free(runner_port), 10)
    finally:
        gw.stop()

    again = _supervising(tmp_path, model_path, llama_bin, port=gw.port).start()
    try:
        assert chat(again, MODEL).status_code == 200
    finally:
        again.stop()


def test_a_failed_load_names_no_address_or_path(
    tmp_path: Path, model_path: str, llama_bin: str
) -> None:
    """A start timeout far shorter than a load: the runner is given up on, and a request in
    the backoff that follows is told the model failed to load — not where the runner
    listened or where its file is."""
    config = {"runner_start_timeout": 0.05, "models": [{"name": MODEL, "path": model_path}]}
    gw = config_gateway(
        tmp_path, config, "--queue-timeout", "2", env={"LLAMA_SERVER_BIN": llama_bin}
    ).start()
    try:
        assert chat(gw, MODEL, timeout=60).status_code == 503  # asks for the load; it fails
        wait_for("the failed load", lambda: _model(gw)["last_error"] is not None, 30)
        messages = []
        for _ in range(5):  # one may land while a retried load runs, and time out queued
            answer = chat(gw, MODEL, timeout=60)
            assert answer.status_code == 503, answer.text
            messages.append(answer.json()["error"]["message"])
            if "failed to load" in messages[-1]:
                break
        assert "failed to load" in messages[-1] and "healthy" in messages[-1], messages
        for internal in ("127.0.0.1", "http://", "localhost", model_path, Path(model_path).name):
            assert not any(internal in message for message in messages), messages
    finally:
        gw.stop()


def _model(gw: Gateway) -> dict:
    return next(m for m in runners(gw)["models"] if m["id"] == MODEL)
