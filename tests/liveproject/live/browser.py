"""A headless Chromium (Debian's chromium and chromium-driver), or why not."""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import unittest
from typing import Any

CHROMIUM = ("chromium", "chromium-browser", "google-chrome")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1024,768",
)


def problem() -> str | None:
    """What the browser test lacks, or None."""
    missing = []
    if not any(shutil.which(name) for name in CHROMIUM):
        missing.append("chromium")
    if not shutil.which("chromedriver"):
        missing.append("chromedriver")
    if importlib.util.find_spec("selenium") is None:
        missing.append("selenium")
    if not missing:
        return None
    return (
        f"the browser test needs {', '.join(missing)}: run scripts/bootstrap, or "
        "apt-get install chromium chromium-driver and pip install selenium"
    )


def start() -> Any:
    """A Selenium driver for a fresh headless Chromium; skips the test if
    there is none, except under CI=true, where that is an error."""
    found = problem()
    if found:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            raise RuntimeError(f"CI=true, but {found}")
        raise unittest.SkipTest(found)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = next(p for n in CHROMIUM if (p := shutil.which(n)))
    for flag in FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="testbed-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    service = Service(shutil.which("chromedriver"))
    try:
        driver = webdriver.Chrome(service=service, options=options)
    except BaseException:
        shutil.rmtree(profile, ignore_errors=True)
        raise
    driver.testbed_profile = profile
    return driver


def stop(driver: Any) -> None:
    try:
        driver.quit()
    finally:
        shutil.rmtree(driver.testbed_profile, ignore_errors=True)
