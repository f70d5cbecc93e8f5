"""The console in a real browser, on a real gateway over two real llama-server backends.

Each test ends by checking that the browser console holds no error (a CSP violation, a failed
fetch, an exception in a module would all show there)."""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
from pathlib import Path

import httpx
import pytest
from selenium.common.exceptions import NoAlertPresentException

from tests.console.conftest import ADMIN_TOKEN, Browser
from tests.support.processes import Gateway, LlamaServer

pytestmark = pytest.mark.llama

HOSTILE = "<img src=x onerror=alert(1)>"
DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "console.png"


def _chat(gateway: Gateway, secret: str, max_tokens: int = 2, **extra: object) -> httpx.Response:
    return httpx.post(
        f"{gateway.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {secret}"},
        json={
            "model": "smollm2",
            "messages": [{"role": "user", "content": "Tell me a long story about a lighthouse."}],
            "max_tokens": max_tokens,
            **extra,
        },
        timeout=120,
    )


def _no_alert(browser: Browser) -> bool:
    try:
        browser.driver.switch_to.alert  # noqa: B018 - raises when there is none
    except NoAlertPresentException:
        return True
    return False


def test_refuses_without_the_token(browser: Browser, console_gateway: Gateway) -> None:
    page = httpx.get(f"{console_gateway.url}/ui")
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp and "unsafe" not in csp
    for path in ("/ui/events", "/ui/api/keys", "/ui/api/requests"):
        assert httpx.get(f"{console_gateway.url}{path}").status_code == 401, path
    assert httpx.post(f"{console_gateway.url}/admin/backends/drain", json={}).status_code == 401

    browser.open()
    browser.visible("#login-form")
    assert not browser.find("#tab-pool").is_displayed()
    assert browser.find_all(".card.backend") == []
    browser.find("#token").send_keys("not-the-token")
    browser.find("#login-form button").click()
    error = browser.wait(lambda d: browser.find("#login-error").text)
    assert "Invalid admin token" in error
    assert not browser.find("#tab-pool").is_displayed()
    assert browser.driver.get_cookies() == []  # no session for a wrong token
    browser.screenshot("refused")
    # The refused login is the one error the console may show: the 401 of its POST.
    errors = browser.errors()
    assert all("/ui/login" in e["message"] and "401" in e["message"] for e in errors), errors


def test_signed_in_shows_both_backends_with_their_slots(
    browser: Browser, backends: list[LlamaServer]
) -> None:
    browser.sign_in()
    cookie = browser.driver.get_cookie("lg_console")
    assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert ADMIN_TOKEN not in cookie["value"]
    assert ADMIN_TOKEN not in browser.driver.current_url
    names = {server.url.removeprefix("http://") for server in backends}
    browser.wait(lambda d: len(browser.find_all(".card.backend")) == 2)
    for card in browser.find_all(".card.backend"):
        assert card.get_attribute("data-backend") in names
        slots = card.find_elements("css selector", ".slot")
        assert len(slots) == 4  # -np 4
        assert "ready" in card.text
    assert "smollm2" in browser.find("#models tbody").text
    browser.screenshot("pool")
    assert browser.errors() == []


def test_a_request_in_flight_shows_a_busy_slot_then_idle(
    browser: Browser, admin: httpx.Client, console_gateway: Gateway
) -> None:
    secret = admin.post("/admin/keys/", json={"name": "storyteller"}).json()["key"]
    browser.sign_in()
    browser.wait(lambda d: len(browser.find_all(".slot")) == 8)
    done = threading.Event()

    def long_request() -> None:
        try:
            _chat(console_gateway, secret, max_tokens=600, ignore_eos=True)
        finally:
            done.set()

    worker = threading.Thread(target=long_request)
    worker.start()
    try:
        busy = browser.wait(lambda d: browser.find_all(".slot.busy"), timeout=120)
        assert busy[0].get_attribute("data-state") == "busy"
        holders = browser.wait(lambda d: browser.find_all(".holders"))
        assert "storyteller" in holders[0].text
        # A short request beside it: once it ends, the backends' counters (and the plot)
        # show the tokens it generated. The picture, taken while the long one runs, is the
        # README's with UPDATE_CONSOLE_SCREENSHOT=1.
        assert _chat(console_gateway, secret, max_tokens=64, ignore_eos=True).status_code == 200
        browser.wait(lambda d: re.fullmatch(r"[1-9][\d,]* tok/s", browser.find("#tokens-now").text))
        picture = browser.screenshot("busy")
        if os.environ.get("UPDATE_CONSOLE_SCREENSHOT") and not done.is_set():
            shutil.copyfile(picture, DOCS_SCREENSHOT)  # the README's, on request only
    finally:
        worker.join(120)
    assert done.is_set()
    browser.wait(lambda d: not browser.find_all(".slot.busy") and not browser.find_all(".holders"))
    assert len(browser.find_all(".slot")) == 8
    # The finished request is in the requests tab, under its key's name.
    browser.tab("requests")
    rows = browser.wait(lambda d: len(rows := browser.find_all("#requests tbody tr")) >= 2 and rows)
    assert all("storyteller" in row.text and "200" in row.text for row in rows[:2])
    assert browser.errors() == []


def test_a_key_created_in_the_ui_works_until_revoked_in_the_ui(
    browser: Browser, console_gateway: Gateway
) -> None:
    browser.sign_in()
    browser.tab("keys")
    form = browser.find("#key-form")
    form.find_element("name", "name").send_keys("made-in-the-ui")
    form.find_element("name", "daily_tokens").send_keys("100000")
    browser.find("#key-submit").click()
    secret = browser.wait(lambda d: browser.find("#key-secret-value").text)
    assert secret.startswith("sk-lg-")
    assert _chat(console_gateway, secret).status_code == 200

    row = browser.wait(
        lambda d: next(
            (r for r in browser.find_all("#keys tbody tr") if "made-in-the-ui" in r.text), None
        )
    )
    key_id = row.get_attribute("data-key")
    browser.find("#key-secret-hide").click()
    assert browser.find("#key-secret-value").text == ""  # the secret leaves the page
    # Usage against the budget, once the page reads the keys again.
    browser.tab("pool")
    browser.tab("keys")
    used = f"#keys tr[data-key='{key_id}'] td:nth-child(8)"
    usage = browser.wait(lambda d: (text := browser.find(used).text) != "0 / 100,000" and text)
    assert usage.endswith(" / 100,000") and int(usage.split(" ")[0].replace(",", "")) > 0

    # Change a limit from the page: the row and the admin API show it.
    browser.click(f"#keys tr[data-key='{key_id}'] button[data-action='edit']")
    rpm = browser.find("#key-form").find_element("name", "rpm")
    rpm.send_keys("77")
    browser.click("#key-submit")
    browser.wait(
        lambda d: browser.find(f"#keys tr[data-key='{key_id}'] td:nth-child(5)").text == "77"
    )
    shown = httpx.get(
        f"{console_gateway.url}/admin/keys/{key_id}",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    ).json()
    assert shown["rpm"] == 77 and shown["daily_tokens"] == 100000  # the others kept

    browser.click(f"#keys tr[data-key='{key_id}'] button[data-action='revoke']")
    browser.click(f"#keys tr[data-key='{key_id}'] button[data-action='confirm-revoke']")
    browser.wait(
        lambda d: (
            browser.find(f"#keys tr[data-key='{key_id}']").get_attribute("data-state") == "revoked"
        )
    )
    refused = _chat(console_gateway, secret)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "invalid_api_key"
    assert browser.errors() == []


def test_a_hostile_key_name_is_shown_as_text(
    browser: Browser, admin: httpx.Client, console_gateway: Gateway
) -> None:
    browser.sign_in()
    browser.tab("keys")
    browser.find("#key-form").find_element("name", "name").send_keys(HOSTILE)
    browser.find("#key-submit").click()
    secret = browser.wait(lambda d: browser.find("#key-secret-value").text)
    cell = browser.wait(
        lambda d: next((c for c in browser.find_all("#keys .key-name") if c.text == HOSTILE), None)
    )
    assert cell.get_attribute("textContent") == HOSTILE
    assert browser.find_all("main img") == []
    # The name also reaches the requests tab (through the event stream) as text.
    assert _chat(console_gateway, secret).status_code == 200
    browser.tab("requests")
    browser.wait(lambda d: any(HOSTILE in r.text for r in browser.find_all("#requests tbody tr")))
    # Filtered by that key (the name typed as text into the filter), only its request is left.
    browser.find("#request-filters").find_element("name", "key").send_keys(HOSTILE)
    browser.wait(lambda d: len(browser.find_all("#requests tbody tr")) == 1)
    assert HOSTILE in browser.find("#requests tbody tr").text
    assert browser.find_all("main img") == []
    time.sleep(0.5)  # an injected onerror would fire as the image fails to load
    assert _no_alert(browser)
    assert browser.driver.execute_script("return document.querySelectorAll('img').length") == 0
    assert browser.errors() == []


def test_drain_and_resume_a_backend_from_the_ui(
    browser: Browser, admin: httpx.Client, console_gateway: Gateway, backends: list[LlamaServer]
) -> None:
    browser.sign_in()
    name = backends[0].url.removeprefix("http://")
    card = f".card.backend[data-backend='{name}']"
    browser.wait(lambda d: browser.find_all(card))
    browser.click(f"{card} .actions button")  # Drain
    browser.wait(lambda d: "draining" in browser.find(f"{card} .badge").text)
    # A drained backend takes no new request: the next one goes to the other backend.
    secret = admin.post("/admin/keys/", json={"name": "while-draining"}).json()["key"]
    for _ in range(3):
        assert _chat(console_gateway, secret).status_code == 200
    served = admin.get("/ui/api/requests", params={"key": "while-draining"}).json()["data"]
    assert len(served) == 3 and all(r["backend"] != name for r in served), served
    browser.wait(lambda d: browser.find(f"{card} .actions button").text == "Resume")
    browser.click(f"{card} .actions button")
    browser.wait(lambda d: "ready" in browser.find(f"{card} .badge").text)
    assert browser.errors() == []


def test_the_playground_streams_a_chat_with_ttft_and_speed(
    browser: Browser, admin: httpx.Client
) -> None:
    secret = admin.post("/admin/keys/", json={"name": "playground"}).json()["key"]
    browser.sign_in()
    browser.tab("playground")
    browser.wait(lambda d: browser.find_all("#chat-model option"))
    browser.find("#chat-key").send_keys(secret)
    max_tokens = browser.find("#chat-form").find_element("name", "max_tokens")
    max_tokens.clear()
    max_tokens.send_keys("16")
    browser.find("#chat-message").send_keys("Say hello.")
    browser.find("#chat-send").click()
    browser.wait(
        lambda d: browser.find("#chat-send").is_enabled() and browser.find("#chat-stats").text
    )
    assert browser.find("#chat-error").text == ""
    assert browser.find("#chat-output").text.strip()
    stats = browser.find("#chat-stats").text
    assert "TTFT" in stats and "tokens/s" in stats
    browser.screenshot("playground")
    assert browser.errors() == []
