"""Benchmark ``snippet``: how long after DOMContentLoaded the page shows the
tracking number, and the built snippet's gzipped size.

Loads a landing page 20 times in headless Chromium (Debian's ``chromium``), each
time as a new visitor (a fresh browser context), against the real ``assign``
function of a local stack that runs only it. The time is measured in the page:
from the navigation's DOMContentLoaded to the mutation that put the new number
into the text (0 when the swap came first). Two loads before the measured ones
warm the function and the browser. Prints one line:

    {"bench": "snippet", "gzip_bytes": ..., "swap_ms_p50": ..., "swap_ms_p95": ...,
     "loads": 20}
"""

from __future__ import annotations

import gzip

from devstack.bench import bench, emit, percentile
from devstack.stack import Stack

SITE = "snippet-bench"
DEFAULT = "+74951230000"
LOADS = 20
WARM_UP = 2
# Records, in page time, when #main first shows a pool number (495 765-xx-xx).
PROBE = """<script>
  new MutationObserver(function () {
    var el = document.getElementById('main');
    if (el && / 765-/.test(el.textContent) && !window.swapAt) {
      window.swapAt = performance.now();
    }
  }).observe(document.documentElement,
             {subtree: true, childList: true, characterData: true});
</script>"""
SWAP_MS = """() => new Promise((resolve, reject) => {
  const nav = performance.getEntriesByType('navigation')[0];
  const t0 = Date.now();
  (function poll() {
    if (window.swapAt && nav.domContentLoadedEventStart) {
      resolve(Math.max(0, window.swapAt - nav.domContentLoadedEventStart));
    } else if (Date.now() - t0 > 10000) {
      reject(new Error('the number was not swapped within 10 s'));
    } else {
      setTimeout(poll, 5);
    }
  })();
})"""


def measure_swap(stack: Stack, n: int = LOADS) -> dict:
    """The figure for ``n`` measured page loads on ``stack``."""
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    from shared import pool_admin
    from tests.browser.harness import BUILT, SHOP, PageServer, launch, page, snippet_tag

    pages = PageServer().start()
    try:
        client = stack.firestore()
        pool_admin.put_site(
            client,
            {
                "site_id": SITE,
                "default_number": DEFAULT,
                "allowed_origins": [pages.origin(SHOP)],
                "cooldown_s": 0,
                "dynamic_rule": {"everyone": True},
            },
        )
        # A number per load: every visitor gets a pool number, none waits on a
        # release.
        numbers = [{"number": f"+7495765{i:04d}"} for i in range(n + WARM_UP + 8)]
        pool_admin.import_numbers(client, SITE, numbers)

        # A page of some size, so the swap scans a realistic document.
        body = "<p id='main'>8 (495) 123-00-00</p>" + "<p>Каталог окон.</p>" * 200
        tag = snippet_tag(SITE, stack.urls["assign"])
        url = pages.url(SHOP, pages.add("/bench/landing", page(body, tag, head=PROBE)))

        samples = []
        with sync_playwright() as playwright:
            browser = launch(playwright)
            try:
                for i in range(WARM_UP + n):
                    context = browser.new_context()
                    tab = context.new_page()
                    lines = []
                    tab.on("console", lambda m, lines=lines: lines.append(m.text))
                    tab.goto(url)
                    if i < WARM_UP:  # a cold function may miss the 1.5 s: not counted
                        tab.evaluate("calltrack('number')")
                    else:
                        try:
                            samples.append(tab.evaluate(SWAP_MS))
                        except PlaywrightError as exc:
                            msg = f"load {i}: {exc.message}; console {lines}"
                            raise RuntimeError(msg) from None
                    context.close()
            finally:
                browser.close()
    finally:
        pages.stop()

    return {
        "bench": "snippet",
        "gzip_bytes": len(gzip.compress(BUILT.read_bytes(), compresslevel=9, mtime=0)),
        "swap_ms_p50": round(percentile(samples, 0.5), 1),
        "swap_ms_p95": round(percentile(samples, 0.95), 1),
        "loads": n,
    }


@bench("snippet")
def snippet_bench() -> None:
    stack = Stack(
        functions=("assign",),
        quiet=True,
        env_overrides={"CALLTRACK_LOG_LEVEL": "WARNING"},
    ).start()
    try:
        emit(measure_swap(stack))
    finally:
        stack.stop()
