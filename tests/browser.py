"""Debian's headless Chromium driven by selenium, for tests of the page `paralign serve` serves.

A plain module (not a conftest) that tests import from:

    from tests.browser import chromium, screenshot  # noqa: F401  (chromium is a fixture)

    def test_page(chromium):
        chromium.get(url)
        ...
        screenshot(chromium, tmp_path / "page.png")

`chromium` is a pytest fixture yielding a `selenium.webdriver.Chrome`; `open_chromium()` is the same as a context
manager, for a fixture of another scope. Browser and driver are Debian's `chromium` and `chromium-driver` (installed
by `bash scripts/setup_browser.sh`, which `make test` runs), found on PATH and handed to selenium, so its
selenium-manager never downloads a browser or driver (there is no internet here but PyPI and apt). Where either is
missing, or selenium cannot start them, the test skips with a one-line reason that names what is missing.
"""
from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Iterator

import pytest

INSTALL = "bash scripts/setup_browser.sh"
ARGUMENTS = (
    "--headless=new",
    "--no-sandbox",               # tests run as root in containers, where Chromium's sandbox cannot start
    "--disable-dev-shm-usage",    # a container's /dev/shm is often 64 MB: shared memory goes to /tmp instead
    "--disable-gpu",
    "--window-size=1200,900",
    "--use-fake-ui-for-media-stream",      # grant microphone permission without a prompt ...
    "--use-fake-device-for-media-stream",  # ... to a fake microphone (a beep), as no machine here has one
)
# Generous: the machine running the tests may be busy training on both cores.
PAGE_LOAD_TIMEOUT_S = 60


def _skip(reason: str) -> None:
    pytest.skip(" ".join(reason.split()))  # one line, whatever the exception's message looked like


@contextlib.contextmanager
def open_chromium(*extra_arguments: str) -> Iterator:
    """A headless Chromium (selenium `webdriver.Chrome`), quit on exit; skips the test when it cannot start."""
    try:
        from selenium import webdriver
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _skip("selenium is not installed (pip install -e '.[dev]')")
    binary, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    missing = [name for name, path in (("chromium", binary), ("chromedriver", driver_path)) if path is None]
    if missing:
        _skip(f"{' and '.join(missing)} not found on PATH (install: {INSTALL})")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in (*ARGUMENTS, *extra_arguments):
        options.add_argument(argument)
    try:
        driver = webdriver.Chrome(service=Service(driver_path), options=options)
    except (WebDriverException, OSError) as err:
        first = (getattr(err, "msg", None) or str(err) or type(err).__name__).strip().splitlines()[0]
        _skip(f"selenium could not start {binary} with {driver_path}: {first} (install: {INSTALL})")
    try:
        driver.set_page_load_timeout(PAGE_LOAD_TIMEOUT_S)
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def chromium():
    """A fresh headless Chromium for one test (see `open_chromium`)."""
    with open_chromium() as driver:
        yield driver


def screenshot(driver, path) -> Path:
    """Save what the browser's window shows as a PNG at `path` (its folder made if needed); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not driver.save_screenshot(str(path)):
        raise OSError(f"chromium could not write a screenshot to {path}")
    return path
