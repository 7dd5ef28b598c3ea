"""Real headless Chromium (Debian's package, driven by Playwright) for the browser tests.

`chromium_page(monkeypatch)` yields a page in Africa/Nairobi at a laptop's size; each area's
browser tests wrap it in a `page` fixture next to the live server.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from django.db import connections

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_page(monkeypatch: Any, *, width: int = 1360, height: int = 1000) -> Iterator[Any]:
    # Playwright's sync API runs an event loop in this thread; the ORM calls the test itself
    # makes are still synchronous and safe. Scoped to these tests, not the whole session.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=os.environ.get("CHROMIUM_PATH") or "/usr/bin/chromium", args=CHROMIUM_ARGS
        )
        context = browser.new_context(viewport={"width": width, "height": height}, timezone_id="Africa/Nairobi")
        page = context.new_page()
        page.set_default_timeout(15_000)
        yield page
        context.close()
        browser.close()
        # While Playwright's loop runs, Django keeps this thread's connections in another context
        # slot: close them here, or the test database cannot be dropped at the end of the run.
        connections.close_all()
