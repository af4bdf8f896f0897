"""A real headless browser for the dashboard's tests: Debian's Chromium, driven by Selenium.

    with browser() as page:
        page.get("http://127.0.0.1:8082/")
        page.find_element(By.CSS_SELECTOR, "#rollouts")

Chromium comes from Debian (tests/cluster/install-browser.sh, run by .ci/run), driven through
Debian's chromedriver: Selenium is given both paths and never downloads anything (SE_OFFLINE).
Each browser gets a fresh profile directory, removed afterwards. Without Chromium the test is
skipped, except under CI=true, where it fails.

`screenshot(page, name)` saves a full-page PNG under $HERDSMAN_ARTIFACTS (default
.cluster/artifacts/) and returns its path: the tests' screenshots are their artifacts.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness.cluster import ROOT, unavailable

CHROMIUM = os.environ.get("HERDSMAN_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("HERDSMAN_CHROMEDRIVER", "/usr/bin/chromedriver")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,1000",
]


def artifacts() -> Path:
    path = Path(os.environ.get("HERDSMAN_ARTIFACTS", ROOT / ".cluster" / "artifacts"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def browser() -> Iterator[Any]:
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        unavailable(
            f"no {CHROMIUM} or {CHROMEDRIVER}: run tests/cluster/install-browser.sh "
            "(Debian's chromium and chromium-driver)"
        )
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never fetch a driver or browser
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="herdsman-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def screenshot(driver: Any, name: str) -> Path:
    """The whole page (the window grown to its height), as artifacts()/name.png."""
    height = int(driver.execute_script("return document.body.scrollHeight"))
    driver.set_window_size(1400, max(800, height + 40))
    path = artifacts() / f"{name}.png"
    driver.save_screenshot(str(path))
    driver.set_window_size(1400, 1000)
    return path
