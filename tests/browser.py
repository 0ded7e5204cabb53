"""Helpers for tests of the web UI in a real browser: Debian's headless Chromium driven
by Selenium through Debian's chromedriver, and a CI server app served by uvicorn in a
thread on 127.0.0.1 (for tests that need no agent)."""

from __future__ import annotations

import contextlib
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.waiting import wait_until

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).parent.parent / "test-artifacts" / "browser"
CHROMIUM_FLAGS = (  # no traffic beyond loopback, nothing left behind
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
)


@contextlib.contextmanager
def chromium(width: int = 1280, height: int = 800) -> Iterator:
    """A headless Chromium with a fresh profile; skips the test where there is none."""
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip("needs Debian's chromium and chromium-driver (scripts/install-deps)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="dockyard-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def console_errors(driver) -> list[str]:
    """The browser console's errors since the last call (CSP violations among them)."""
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def screenshot(driver, name: str) -> Path:
    """Saves the page as ``test-artifacts/browser/NAME.png`` (kept by CI)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def sign_in(driver, base_url: str, token: str) -> None:
    """Signs in with an API token."""
    from selenium.webdriver.common.by import By

    driver.get(base_url + "/login")
    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "#token-form button").click()
    wait_until(lambda: "/login" not in driver.current_url, what="the sign-in redirect")


def sign_in_as(driver, base_url: str, name: str, password: str) -> None:
    """Signs in as a user with a password."""
    from selenium.webdriver.common.by import By

    driver.get(base_url + "/login")
    driver.find_element(By.ID, "name").send_keys(name)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "#password-form button").click()
    wait_until(lambda: "/login" not in driver.current_url, what="the sign-in redirect")


@contextlib.contextmanager
def served(app) -> Iterator[str]:
    """``app`` served by uvicorn on a port of loopback in a thread; yields its URL. The
    socket is bound and listening before uvicorn starts: no other process can take its
    port, and no request finds it closed."""
    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="web-ui-server", daemon=True
    )
    thread.start()
    try:
        wait_until(lambda: server.started or not thread.is_alive(), what="uvicorn")
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
