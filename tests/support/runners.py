"""Helpers for the runner tests: gateways started from a YAML config, and polling their
``/runners`` and ``/v1/models`` views."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.support.processes import Gateway

CHAT = [{"role": "user", "content": "Say hi."}]


def config_gateway(
    tmp: Path, config: dict[str, Any], *args: str, env: dict[str, str] | None = None
) -> Gateway:
    """A gateway (not started) over ``config`` written as YAML; ready means HTTP answers,
    since lazily loaded models leave ``/ready`` at 503 until the first request."""
    path = tmp / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    return Gateway(
        "--config",
        str(path),
        "--no-auth",
        "--probe-interval",
        "0.3",
        "--queue-timeout",
        "120",
        *args,
        env=env,
        wait_ready=False,
    )


def runners(gw: Gateway) -> dict[str, Any]:
    return httpx.get(f"{gw.url}/runners", timeout=5).json()


def model(gw: Gateway, model_id: str) -> dict[str, Any]:
    return next(m for m in runners(gw)["models"] if m["id"] == model_id)


def card(gw: Gateway, model_id: str) -> dict[str, Any]:
    """The model's entry in ``GET /v1/models``."""
    data = httpx.get(f"{gw.url}/v1/models", timeout=5).json()["data"]
    return next(c for c in data if c["id"] == model_id)


def wait_for(what: str, check: Callable[[], bool], timeout: float = 30.0) -> float:
    """Poll ``check`` until true; the seconds it took. Fails the test on timeout."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def chat(gw: Gateway, model_id: str, timeout: float = 120, **fields: Any) -> httpx.Response:
    body = {"model": model_id, "messages": CHAT, "max_tokens": 4, **fields}
    return httpx.post(f"{gw.url}/v1/chat/completions", json=body, timeout=timeout)


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False
