"""The admin's actions on a runner the gateway supervises (load, unload, restart) and the
guard around them, on a real gateway that starts a real llama-server itself."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.console.conftest import ADMIN_TOKEN, Browser, chromium
from tests.support.processes import Gateway

pytestmark = pytest.mark.llama


@pytest.fixture(scope="module")
def supervised(
    model_path: str, llama_bin: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    """One declared model, loaded at start and unloaded after ten idle minutes."""
    config = tmp_path_factory.mktemp("control") / "gateway.yaml"
    model = {"name": "smollm2", "path": model_path, "keep_alive": "10m", "preload": True}
    config.write_text(json.dumps({"models": [model]}))  # JSON is YAML
    gw = Gateway(
        "--config",
        str(config),
        "--admin-token",
        ADMIN_TOKEN,
        "--no-auth",
        "--probe-interval",
        "0.5",
        env={"LLAMA_SERVER_BIN": llama_bin},
    )
    try:
        yield gw.start()
    finally:
        gw.stop()


@pytest.fixture(scope="module")
def admin(supervised: Gateway) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with httpx.Client(base_url=supervised.url, headers=headers, timeout=30) as client:
        yield client


def _until(check: Callable[[], Any], timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout} s")


def _ready_runner(admin: httpx.Client) -> dict[str, Any] | None:
    runners = admin.get("/runners").json()["runners"]
    return next((r for r in runners if r["state"] == "ready"), None)


def test_actions_need_the_admin_token_or_a_console_session(supervised: Gateway) -> None:
    url = f"{supervised.url}/admin/runners/unload"
    assert httpx.post(url, json={"model": "smollm2"}).status_code == 401
    wrong = {"Authorization": "Bearer wrong"}
    assert httpx.post(url, json={"model": "smollm2"}, headers=wrong).status_code == 401
    with httpx.Client(base_url=supervised.url) as browser_like:
        assert browser_like.post("/ui/login", json={"token": ADMIN_TOKEN}).status_code == 204
        # The cookie alone is not enough for a change: a cross-site form could send that.
        refused = browser_like.post("/admin/runners/load", json={"model": "smollm2"})
        assert refused.status_code == 401
        assert "x-console" in refused.json()["error"]["message"]
        done = browser_like.post(
            "/admin/runners/load", json={"model": "smollm2"}, headers={"x-console": "1"}
        )
        assert done.status_code == 200


def test_bad_actions_are_clear_errors(admin: httpx.Client) -> None:
    unknown = admin.post("/admin/runners/explode", json={"model": "smollm2"})
    assert (
        unknown.status_code == 400 and "load, unload, restart" in unknown.json()["error"]["message"]
    )
    missing = admin.post("/admin/runners/load", json={"model": "nope"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"
    shapeless = admin.post("/admin/runners/load", json={"name": "smollm2"})
    assert shapeless.status_code == 400 and shapeless.json()["error"]["param"] == "model"
    nobody = admin.post("/admin/backends/drain", json={"backend": "10.0.0.1:1"})
    assert nobody.status_code == 404 and nobody.json()["error"]["code"] == "backend_not_found"


def test_restart_a_runner(admin: httpx.Client) -> None:
    first = _until(lambda: _ready_runner(admin))
    assert 0 < first["unload_in_seconds"] <= 600  # the keep-alive countdown the console shows
    assert admin.post("/admin/runners/restart", json={"model": "smollm2"}).json()["runners"] == 1
    second = _until(lambda: (r := _ready_runner(admin)) and r["pid"] != first["pid"] and r)
    assert second["state"] == "ready"
    assert admin.get("/runners").json()["restarts"] == 0  # asked for: not counted as a crash


def test_the_console_shows_the_countdown_and_unloads_and_loads(
    supervised: Gateway, admin: httpx.Client
) -> None:
    with chromium() as chrome:
        page = Browser(chrome, supervised.url)
        page.sign_in()
        row = "#models tr[data-model='smollm2']"
        countdown = page.wait(lambda d: page.find(f"{row} .keep-alive").text)
        assert countdown.startswith("unloads in ")
        assert "unloads in" in page.visible(".card.backend .runner").text
        page.click(f"{row} button[data-action='unload']")
        page.wait(lambda d: page.find(f"{row} .badge").text == "unloaded", timeout=120)
        page.wait(lambda d: page.find_all(".card.backend") == [])
        _until(lambda: admin.get("/runners").json()["runners"] == [])  # its process is gone
        page.click(f"{row} button[data-action='load']")
        page.wait(lambda d: page.find(f"{row} .badge").text == "loaded", timeout=120)
        page.wait(lambda d: page.find_all(".card.backend .slot"))
        page.screenshot("supervised")
        answer = httpx.post(
            f"{supervised.url}/v1/chat/completions",
            json={
                "model": "smollm2",
                "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 2,
            },
            timeout=60,
        )
        assert answer.status_code == 200
        assert page.errors() == []
