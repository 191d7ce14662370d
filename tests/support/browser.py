"""Headless Chromium and Firefox for the console's browser tests, driven by Playwright's
Python API.

The browsers are Debian's packages, `chromium` and `firefox-esr` (`.ci/run` installs them
where missing); Playwright never downloads a browser. Chromium is driven over CDP as usual.
Firefox is Debian's own build, not Playwright's patched one, so Playwright drives it over
WebDriver BiDi (its `moz-firefox` channel). Firefox ESR has no BiDi command to emulate the
colour scheme, so a Firefox is launched per scheme with the pref that sets it. Without a
browser its tests skip saying why, and under CI=true they fail instead, like the
PostgreSQL tests. Every page opened through `ConsolePage` records the requests it makes,
so a test can assert that none left Loom.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

CHROMIUM = os.environ.get("LOOM_TEST_CHROMIUM", "/usr/bin/chromium")
FIREFOX = os.environ.get("LOOM_TEST_FIREFOX", "/usr/bin/firefox-esr")
# browser -> (executable, the Debian package that installs it)
PACKAGES = {"chromium": (CHROMIUM, "chromium"), "firefox": (FIREFOX, "firefox-esr")}
BROWSERS = list(PACKAGES)
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
# Firefox's `prefers-color-scheme` for web content: 0 dark, 1 light.
FIREFOX_SCHEME_PREF = "layout.css.prefers-color-scheme.content-override"
FIREFOX_SCHEMES = {"dark": 0, "light": 1}
# Playwright's screenshots briefly add `<style>body {}</style>` to the page; the console's
# CSP blocks it, and Firefox reports that as a page error. It is the test tool's, not the
# console's, so that one report (named by the style's CSP hash) is not counted.
SCREENSHOT_STYLE_HASH = base64.b64encode(hashlib.sha256(b"body {}").digest()).decode()
ARTIFACTS = Path(
    os.environ.get("LOOM_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "tmp" / "artifacts")
)


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


class ConsoleBrowser:
    """One kind of browser for a test module: `get(scheme)` gives a launched browser whose
    pages show that colour scheme. Chromium takes the scheme per context, so it is one
    browser; Firefox takes it at launch, so it is one browser per scheme asked for."""

    def __init__(self, playwright, name: str) -> None:
        self.name = name
        self._playwright = playwright
        self._launched: dict[str, object] = {}

    def get(self, scheme: str = "light"):
        key = "any" if self.name == "chromium" else scheme
        if key not in self._launched:
            self._launched[key] = self._launch(scheme)
        return self._launched[key]

    def _launch(self, scheme: str):
        if self.name == "chromium":
            return self._playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        return self._playwright.firefox.launch(
            channel="moz-firefox",
            executable_path=FIREFOX,
            headless=True,
            firefox_user_prefs={FIREFOX_SCHEME_PREF: FIREFOX_SCHEMES[scheme]},
        )

    def close(self) -> None:
        for browser in self._launched.values():
            browser.close()


def launch_browser(name: str) -> Iterator[ConsoleBrowser]:
    """Chromium or Firefox, closed when the generator ends (a fixture's body)."""
    path, package = PACKAGES[name]
    if not (os.path.exists(path) or shutil.which(path)):
        _unavailable(
            f"no {name} at {path}; install Debian's `{package}` package"
            f" (apt-get install {package}) to run the console's browser tests in {name}"
        )
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError as exc:  # the test extra is not installed
        _unavailable(f"playwright is not installed ({exc}); run `make install`")
    # expect()'s 5 s default is short on a loaded 2-core machine; match the page timeout.
    expect.set_options(timeout=20_000)
    with sync_playwright() as playwright:
        browser = ConsoleBrowser(playwright, name)
        try:
            browser.get()  # launch now, so a browser that cannot start fails here
            yield browser
        finally:
            browser.close()


class ConsolePage:
    """A page of one browser context on a Loom server; remembers every request URL."""

    def __init__(self, browser: ConsoleBrowser, base_url: str, color_scheme: str = "light"):
        self.browser_name = browser.name
        self.base_url = base_url
        self.context = browser.get(color_scheme).new_context(
            color_scheme=color_scheme, viewport={"width": 1280, "height": 860}
        )
        self.context.set_default_timeout(20_000)
        self.requests: list[str] = []
        self.errors: list[str] = []  # uncaught script errors and CSP violations
        self.page = self.context.new_page()
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("pageerror", lambda error: self._error(str(error)))
        self.page.on("console", self._console)

    def _error(self, text: str) -> None:
        if SCREENSHOT_STYLE_HASH not in text:
            self.errors.append(text)

    def _console(self, message) -> None:
        # Chromium logs a CSP violation (an inline style the policy blocks, say) to the
        # console only; Firefox reports it as a page error too.
        if message.type == "error" and "Content Security Policy" in message.text:
            self._error(message.text)

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
        """A screenshot in the artifacts folder; Chromium's keep their plain names (the
        README shows two), other browsers' are suffixed with the browser's name."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        suffix = "" if self.browser_name == "chromium" else f"-{self.browser_name}"
        path = ARTIFACTS / f"{name}{suffix}.png"
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
