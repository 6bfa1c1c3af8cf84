"""Headless Chromium (Debian's `chromium`, driven by Playwright) with shop.test, t.shop.test and evil.test
mapped to 127.0.0.1, so pages and the engine have real, distinct origins on loopback."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, sync_playwright

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    path = shutil.which("chromium") or CHROMIUM
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=path,
            args=["--no-sandbox", "--host-resolver-rules=MAP *.test 127.0.0.1, MAP shop.test 127.0.0.1"],
        )
        try:
            yield launched
        finally:
            launched.close()


def console_errors(page: Any) -> list[str]:
    """Collect the page's console errors and uncaught exceptions into the returned (live) list."""
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors
