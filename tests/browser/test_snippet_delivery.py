"""Delivery: the built file's size and freshness, what it must never contain,
its one global, a strict CSP, and the demo page."""

from __future__ import annotations

import gzip
import re
import shutil
import subprocess
from urllib.parse import urlencode, urlsplit

import pytest

from tests.browser.harness import BUILT, SHOP, SNIPPET_DIR

GZIP_BUDGET = 3072  # bytes: the 3 KB for the minified build


def test_the_built_file_is_within_3_kb_gzipped():
    size = len(gzip.compress(BUILT.read_bytes(), compresslevel=9, mtime=0))
    assert size <= GZIP_BUDGET, (
        f"Expected at most {GZIP_BUDGET} B gzipped, found {size} B."
    )


def test_the_built_file_is_up_to_date_with_the_source(tmp_path):
    if not shutil.which("node"):
        pytest.fail("Expected Node.js to rebuild snippet/dist/ct.min.js, found none.")
    if not (SNIPPET_DIR / "node_modules" / "terser").is_dir():
        pytest.fail("Expected snippet/node_modules; run `npm ci --prefix snippet`.")
    run = subprocess.run(
        ["node", "build.mjs", "--out", str(tmp_path)],
        cwd=SNIPPET_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "ct.min.js").read_bytes() == BUILT.read_bytes(), (
        "snippet/dist/ct.min.js is stale: run `npm run build --prefix snippet`."
    )


def test_the_built_file_has_no_eval_and_no_string_timers():
    code = BUILT.read_text()
    assert not re.search(r"\beval\s*\(|\bFunction\s*\(|setTimeout\s*\(\s*[\"'`]", code)
    assert "innerHTML" not in code and "document.write" not in code


@pytest.mark.browser
def test_the_snippet_adds_one_global_and_nothing_else(site, open_tab):
    plain = site.pages.add("/d/plain", "<!doctype html><p>8 (495) 123-00-00</p>")
    path = site.serve("/d/global", "<p id='main'>8 (495) 123-00-00</p>", stub=False)
    keys = "Object.keys(window).sort()"
    before = open_tab(site.pages.url(SHOP, plain)).page.evaluate(keys)
    tab = open_tab(site.pages.url(SHOP, path))
    tab.wait_text("#main", "8 (495) 765-43-21")

    assert sorted(set(tab.page.evaluate(keys)) - set(before)) == ["calltrack"]


@pytest.mark.browser
def test_it_works_under_a_strict_csp_that_allows_its_own_origin(
    site, open_tab, context
):
    assign = urlsplit(site.endpoint)
    csp = (
        "default-src 'none'; script-src 'self'; img-src data:; "
        f"connect-src {assign.scheme}://{assign.netloc}"
    )
    context.add_init_script("""
      window.violations = [];
      document.addEventListener('securitypolicyviolation',
        e => window.violations.push(e.violatedDirective + ' ' + e.blockedURI));
    """)
    path = site.serve(
        "/d/csp",
        "<p id='main'>8 (495) 123-00-00</p>"
        "<a id='link' href='tel:+74951230000'>call</a>",
        stub=False,
        headers={"Content-Security-Policy": csp},
    )
    tab = open_tab(site.pages.url(SHOP, path))

    tab.wait_text("#main", "8 (495) 765-43-21")
    assert tab.page.get_attribute("#link", "href") == "tel:+74957654321"
    assert tab.page.evaluate("window.violations") == []
    assert tab.problems() == []


@pytest.mark.browser
def test_the_demo_page_swaps_its_number(site, open_tab):
    """As ``make demo-serve`` serves it: the snippet folder on 127.0.0.1, the
    endpoint and site in the page's address."""
    local = site.pages.origin("127.0.0.1")
    site.configure(allowed_origins=[local])
    site.pages.add("/demo/", (SNIPPET_DIR / "demo" / "index.html").read_text())
    query = urlencode({"endpoint": site.endpoint, "site": site.site_id})
    tab = open_tab(f"{local}/demo/?{query}&utm_source=google&utm_medium=cpc")

    tab.wait_text("#hero-phone", "+7 (495) 765-43-21")
    assert tab.page.get_attribute("#header-phone", "href") == "tel:+74957654321"
    assert "8 495 123-00-00" in tab.text("[data-ct-exclude]")
    tab.page.click("#callback")
    tab.wait_text("#popup-phone", "8 (495) 765-43-21")
    tab.page.wait_for_function(
        "document.getElementById('number').textContent.includes('dynamic')"
    )
    assert tab.assigns()[0]["last_touch"]["utm_source"] == "google"
    assert tab.problems() == []
