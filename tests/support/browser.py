"""Headless Chromium for the console's browser tests, driven by Playwright's Python API.

The browser is Debian's `chromium` package (`.ci/run` installs it where missing); nothing
is ever downloaded by Playwright. Without it the browser tests skip saying why, and under
CI=true they fail instead, like the PostgreSQL tests. Every page opened through
`ConsolePage` records the requests it makes, so a test can assert that none left Loom.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

CHROMIUM = os.environ.get("LOOM_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(
    os.environ.get("LOOM_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "tmp" / "artifacts")
)


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def launch_chromium() -> Iterator[object]:
    """One headless Chromium, closed when the generator ends (a session fixture's body)."""
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        _unavailable(
            f"no Chromium at {CHROMIUM}; install Debian's `chromium` package"
            " (apt-get install chromium) to run the console's browser tests"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:  # the test extra is not installed
        _unavailable(f"playwright is not installed ({exc}); run `make install`")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class ConsolePage:
    """A page of one browser context on a Loom server; remembers every request URL."""

    def __init__(self, browser, base_url: str, color_scheme: str = "light") -> None:
        self.base_url = base_url
        self.context = browser.new_context(
            color_scheme=color_scheme, viewport={"width": 1280, "height": 860}
        )
        self.context.set_default_timeout(20_000)
        self.requests: list[str] = []
        self.errors: list[str] = []  # uncaught script errors
        self.page = self.context.new_page()
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))

    def open(self, path: str, key: str | None = None):
        """Go to a console path; with `key`, store it the way the key form does first."""
        if key is not None:
            self.page.goto(f"{self.base_url}/console/static/console.css")
            self.page.evaluate("k => sessionStorage.setItem('loom.console.key', k)", key)
        self.page.goto(f"{self.base_url}{path}")
        return self.page

    def foreign_requests(self) -> list[str]:
        """Requests to any host other than the Loom server (a `data:` URL is no request)."""
        loom = urlsplit(self.base_url).netloc
        return [
            url
            for url in self.requests
            if not url.startswith("data:") and urlsplit(url).netloc != loom
        ]

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=False)
        return path

    def first_paint_ms(self) -> float:
        """First contentful paint of the current page, from the browser's Paint Timing."""
        return self.page.evaluate(
            """() => new Promise((resolve) => {
                const seen = () => performance.getEntriesByName('first-contentful-paint')[0];
                if (seen()) return resolve(seen().startTime);
                new PerformanceObserver(() => seen() && resolve(seen().startTime))
                    .observe({type: 'paint', buffered: true});
            })"""
        )

    def close(self) -> None:
        self.context.close()
