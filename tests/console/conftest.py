"""The console's fixtures: a real gateway over the session's two real backends with an admin
token, and a real headless Chromium (Debian's, installed by ``make browser``) driven by
selenium. Screenshots go to ``tests/console/artifacts/`` (ignored by git)."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from tests.support.processes import Gateway, LlamaServer

ADMIN_TOKEN = "console-test-admin-token"
ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
#: The flags Chromium needs here: no sandbox (root in a container), no network of its own.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
)


class Browser:
    """One Chromium window on one gateway, with the waits and checks the tests share."""

    def __init__(self, driver: webdriver.Chrome, base_url: str) -> None:
        self.driver = driver
        self.base_url = base_url

    def open(self, path: str = "/ui") -> None:
        self.driver.get(self.base_url + path)

    def wait(self, condition: Callable[[webdriver.Chrome], Any], timeout: float = 30) -> Any:
        """Poll ``condition`` until it is truthy; the pool tab redraws every second, so an
        element found may be replaced before it is read: that try is simply repeated."""
        waiting = WebDriverWait(
            self.driver,
            timeout,
            poll_frequency=0.1,
            ignored_exceptions=(NoSuchElementException, StaleElementReferenceException),
        )
        return waiting.until(condition)

    def click(self, css: str) -> None:
        """Click the element ``css`` names, found afresh if a redraw replaced it."""
        self.wait(lambda d: self.find(css).click() or True)

    def find(self, css: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def visible(self, css: str, timeout: float = 30) -> WebElement:
        return self.wait(
            lambda d: next((e for e in self.find_all(css) if e.is_displayed()), None), timeout
        )

    def sign_in(self, token: str = ADMIN_TOKEN) -> None:
        self.open()
        self.visible("#token").send_keys(token)
        self.click("#login-form button")
        self.wait(lambda d: d.execute_script("return document.body.dataset.ready === '1'"))

    def tab(self, name: str) -> None:
        self.click(f"#tabs button[data-tab='{name}']")
        self.visible(f"#tab-{name}")

    def errors(self) -> list[dict[str, Any]]:
        """The browser console's errors since the last call (reading empties the log)."""
        return [e for e in self.driver.get_log("browser") if e["level"] == "SEVERE"]

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path


@pytest.fixture(scope="module")
def console_gateway(backends: list[LlamaServer]) -> Iterator[Gateway]:
    """Keys required (no --no-auth), an admin token, both chat backends."""
    args = []
    for server in backends:
        args += ["--backend", server.url]
    gw = Gateway(*args, "--admin-token", ADMIN_TOKEN, "--probe-interval", "0.5")
    try:
        yield gw.start()
    finally:
        gw.stop()


@pytest.fixture(scope="module")
def admin(console_gateway: Gateway) -> Iterator[httpx.Client]:
    """The admin API, as a script would call it."""
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with httpx.Client(base_url=console_gateway.url, headers=headers, timeout=30) as client:
        yield client


@contextlib.contextmanager
def chromium() -> Iterator[webdriver.Chrome]:
    """Debian's Chromium, headless, on a fresh profile that is removed afterwards."""
    if not Path(CHROMIUM).exists() or not Path(CHROMEDRIVER).exists():
        pytest.fail("Debian's chromium and chromium-driver are missing: run `make browser`")
    profile = tempfile.mkdtemp(prefix="console-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    chrome = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield chrome
    finally:
        chrome.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def driver(console_gateway: Gateway) -> Iterator[webdriver.Chrome]:
    """Made after (so closed before) the gateway: its page's stream ends with the browser."""
    with chromium() as chrome:
        yield chrome


@pytest.fixture
def browser(driver: webdriver.Chrome, console_gateway: Gateway) -> Iterator[Browser]:
    """A signed-out window; each test ends with no error in the browser console."""
    driver.get("about:blank")  # closes the last page's stream before its cookie goes
    driver.execute_cdp_cmd("Network.clearBrowserCookies", {})
    driver.get_log("browser")  # what earlier tests left
    yield Browser(driver, console_gateway.url)
