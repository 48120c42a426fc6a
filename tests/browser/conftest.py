"""Browser fixtures: Debian's Chromium under Playwright, a page server on
real-looking hosts, a site on the local stack that allows those hosts, and tabs
that record what the page sent and printed."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import sync_playwright

from tests.browser.harness import (
    BLOG,
    DEFAULT,
    NUMBER,
    PARTNER,
    SHOP,
    PageServer,
    launch,
    page,
    snippet_tag,
)
from tests.conftest import wait_for


@pytest.fixture(scope="session")
def pages():
    server = PageServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def browser():
    with sync_playwright() as playwright:
        chromium = launch(playwright)
        yield chromium
        chromium.close()


@pytest.fixture
def context(browser):
    ctx = browser.new_context()
    yield ctx
    ctx.close()


@dataclass
class Site:
    """The test site on the local stack and its paste-in tag."""

    site_id: str
    endpoint: str
    pages: PageServer
    make: object
    config: dict

    def configure(self, **changes) -> None:
        """Store the site again with some settings changed (e.g. ``renew_s=1``)."""
        self.make(site_id=self.site_id, **{**self.config, **changes})

    def tag(self, **data) -> str:
        return snippet_tag(self.site_id, data.pop("endpoint", self.endpoint), **data)

    def serve(
        self,
        path: str,
        body: str,
        head: str = "",
        stub: bool = True,
        headers: dict | None = None,
        **data,
    ) -> str:
        """Register a landing page carrying the tag; returns its path."""
        return self.pages.add(path, page(body, self.tag(**data), head, stub), headers)


@pytest.fixture(scope="session")
def warm_assign(stack):
    """One request first, so no test's first assign pays the function's cold
    start (which may well exceed the snippet's 1.5 s patience)."""
    request = urllib.request.Request(stack.urls["assign"] + "/?site=warm-up", b"{}")
    try:
        urllib.request.urlopen(request, timeout=30).close()
    except urllib.error.HTTPError:
        pass  # 404 for the unknown site: the function is up all the same
    return stack.urls["assign"]


@pytest.fixture
def site(warm_assign, make_site, pages) -> Site:
    """Site ``shop``: every visit gets the one pool number, heartbeat every 40 s."""
    config = {
        "allowed_origins": [pages.origin(h) for h in (SHOP, BLOG, PARTNER)],
        "default_number": DEFAULT,
        "dynamic_numbers": [NUMBER],
        "display_format": "+7 (###) ###-##-##",
        "dynamic_rule": {"everyone": True},
        "cooldown_s": 0,
    }
    make_site(site_id="shop", **config)
    return Site("shop", warm_assign, pages, make_site, config)


@dataclass
class Tab:
    """A page and what it did: assign/renew/release bodies, console lines, errors."""

    page: object
    posts: list[tuple[str, dict]] = field(default_factory=list)
    console: list[tuple[str, str, str]] = field(default_factory=list)  # type, text, url
    errors: list[str] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)  # of the snippet's requests

    def assigns(self) -> list[dict]:
        return [body for url, body in self.posts if "/?site=" in url]

    def renews(self) -> list[dict]:
        return [body for url, body in self.posts if "/renew?" in url]

    def number(self) -> dict | None:
        """The snippet's answer, through its API, once the assign has settled."""
        return self.page.evaluate("calltrack('number')")

    def text(self, selector: str) -> str:
        return self.page.text_content(selector)

    def wait_text(self, selector: str, expected: str, timeout: float = 10_000) -> None:
        try:
            self.page.wait_for_function(
                "([s, t]) => document.querySelector(s)?.textContent === t",
                arg=[selector, expected],
                timeout=timeout,
            )
        except PlaywrightTimeout:
            found = self.page.text_content(selector)
            raise AssertionError(
                f"Expected {selector} to read {expected!r}, found {found!r}; "
                f"console {self.console}, errors {self.errors}, posts {self.posts}"
            ) from None

    def wait_until(self, expression: str, timeout: float = 10.0) -> None:
        """Poll an expression that may return a promise until it is truthy.

        Playwright's ``wait_for_function`` takes a returned promise itself as
        truthy, so it cannot wait on the snippet's promise API; ``evaluate``
        awaits the promise.
        """
        wait_for(lambda: self.page.evaluate(expression), timeout, interval=0.05)

    def problems(self) -> list[str]:
        """Uncaught errors and console errors or warnings the page printed."""
        return self.errors + [
            f"{kind}: {text}"
            for kind, text, _ in self.console
            if kind in ("error", "warning")
        ]

    def script_problems(self) -> list[str]:
        """problems() less the browser's own reports of a failed request
        ("Failed to load resource", a CORS refusal), which no script can
        silence; what is left came from a script."""
        return [
            p
            for p in self.problems()
            if not p.startswith(
                ("error: Failed to load resource", "error: Access to fetch at")
            )
        ]

    def debug_lines(self) -> list[str]:
        return [text for kind, text, _ in self.console if kind == "debug"]


def _record(tab: Tab, request) -> None:
    if request.method == "POST":
        try:
            body = json.loads(request.post_data or "null")
        except ValueError:
            body = request.post_data
        tab.posts.append((request.url, body))


@pytest.fixture
def open_tab(context):
    """``open_tab(url, referer=None)``: a new tab that records, on ``url``."""

    def open_(url: str, referer: str | None = None, ctx=None) -> Tab:
        pg = (ctx or context).new_page()
        tab = Tab(pg)
        pg.on("request", lambda r: _record(tab, r))
        pg.on(
            "console", lambda m: tab.console.append((m.type, m.text, m.location["url"]))
        )
        pg.on("pageerror", lambda e: tab.errors.append(str(e)))
        pg.on("response", lambda r: "?site=" in r.url and tab.statuses.append(r.status))
        pg.goto(url, referer=referer)
        return tab

    return open_
