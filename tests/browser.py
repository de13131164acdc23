"""A headless Chromium for the browser tests, driven by Selenium.

A test module takes the fixture with ``from tests import browser as chromium`` and
``browser = chromium.browser`` (one browser for the module), then ``def test_x(browser): ...``.

Debian's ``chromium`` and ``chromium-driver`` packages are used, named explicitly
(:data:`CHROMIUM`, :data:`CHROMEDRIVER`), so Selenium Manager never downloads a browser or a
driver. Without them the tests skip, unless ``ARCHCALC_REQUIRE_BROWSER=1`` (CI sets it): then a
missing browser fails the tests instead.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
#: The window the tests (and scripts/screenshots.py) draw in, in CSS pixels.
WINDOW = (1600, 1000)


def _missing() -> str | None:
    """Why the browser cannot run here, or None."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            return f"{path} is missing (Debian: apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    return None


def start_chromium(window: tuple[int, int] = WINDOW) -> Any:
    """A headless Chromium under Selenium (the caller quits it)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     f"--window-size={window[0]},{window[1]}", "--hide-scrollbars"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # console errors, for console_errors()
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def console_errors(driver: Any) -> list[str]:
    """The page's console errors since the last call (uncaught exceptions included)."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def require_browser() -> None:
    """Skip the calling test when Chromium cannot run, or fail it when ARCHCALC_REQUIRE_BROWSER=1."""
    why = _missing()
    if why is None:
        return
    if os.environ.get("ARCHCALC_REQUIRE_BROWSER") == "1":
        pytest.fail(f"ARCHCALC_REQUIRE_BROWSER=1 but the browser cannot run: {why}")
    pytest.skip(why)


@pytest.fixture(scope="module")
def browser() -> Any:
    """One headless Chromium for the whole test module (a Selenium WebDriver)."""
    require_browser()
    driver = start_chromium()
    try:
        yield driver
    finally:
        driver.quit()


def file_url(path: str | Path) -> str:
    """The ``file://`` URL of a local file."""
    return Path(path).resolve().as_uri()
