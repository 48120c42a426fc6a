"""What the browser tests and the snippet benchmark share: Debian's Chromium
under Playwright, and a page server that answers on real-looking hosts.

Chromium maps ``*.example.test`` and ``*.partner.test`` to 127.0.0.1, so one
local server is ``http://shop.example.test:PORT``, ``http://blog.example.test:PORT``
(the same top domain: shared cookies) and ``http://shop.partner.test:PORT``
(another site of the same owner: cross-domain links).
"""

from __future__ import annotations

import html
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SNIPPET_DIR = ROOT / "snippet"
BUILT = SNIPPET_DIR / "dist" / "ct.min.js"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--host-resolver-rules=MAP *.example.test 127.0.0.1, MAP *.partner.test 127.0.0.1",
    # Plain http on the .test hosts, as the local stack serves them.
    "--disable-features=HttpsUpgrades,HttpsFirstBalancedModeAutoEnable",
]
DEFAULT = "+74951230000"  # the test site's own number, written in its pages
NUMBER = "+74957654321"  # the one number in the test site's pool
DISPLAY = "+7 (495) 765-43-21"  # NUMBER in the test site's display format
SHOP = "shop.example.test"
BLOG = "blog.example.test"
PARTNER = "shop.partner.test"
# A stand-in endpoint that answers only after the snippet has given up (1.5 s).
HANG_S = 4.0


def launch(playwright):
    """Debian's Chromium, headless (Playwright's own browser download is not used)."""
    return playwright.chromium.launch(
        executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
    )


class PageServer:
    """Serves registered pages on any host name, the built snippet at
    ``/ct.min.js`` (and ``/dist/ct.min.js``, where the demo page looks),
    ``/hang/`` (an endpoint that answers too late) and ``/fail/`` (one that
    answers 500).

    ``add(path, body, headers)`` registers a page; ``url(host, path)`` is its
    address on a host. Pages are looked up by path alone, whatever the host.
    """

    def __init__(self, snippet: Path = BUILT) -> None:
        self.snippet = snippet
        self.pages: dict[str, tuple[bytes, dict]] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802 (http.server's naming)
                path = self.path.split("?", 1)[0]
                if path in ("/ct.min.js", "/dist/ct.min.js"):  # the tag's, the demo's
                    body = server.snippet.read_bytes()
                    self._send(200, body, {"Content-Type": "text/javascript"})
                elif path in server.pages:
                    body, headers = server.pages[path]
                    self._send(
                        200,
                        body,
                        {"Content-Type": "text/html; charset=utf-8", **headers},
                    )
                else:
                    self._send(404, b"not found", {"Content-Type": "text/plain"})

            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                if self.path.startswith("/hang"):
                    time.sleep(HANG_S)
                # /fail/ answers as a function that crashed, readable by the page.
                status = 500 if self.path.startswith("/fail") else 200
                origin = self.headers.get("Origin") or "*"
                self._send(
                    status,
                    b"{}",
                    {
                        "Content-Type": "application/json",
                        "Access-Control-Allow-Origin": origin,
                    },
                )

            def _send(self, status, body, headers):
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass  # a tab closed mid-answer (the /hang/ endpoint) is no news

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> PageServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def origin(self, host: str = SHOP) -> str:
        return f"http://{host}:{self.port}"

    def url(self, host: str, path: str) -> str:
        return self.origin(host) + path

    def add(self, path: str, body: str, headers: dict | None = None) -> str:
        self.pages[path] = (body.encode(), dict(headers or {}))
        return path


def snippet_tag(site: str, endpoint: str, src: str = "/ct.min.js", **data) -> str:
    """The paste-in tag of docs/snippet.md; ``data`` adds data- attributes
    (``domains="a b"`` becomes ``data-domains="a b"``)."""
    attrs = {"site": site, "endpoint": endpoint, **data}
    rendered = " ".join(
        f'data-{name.replace("_", "-")}="{html.escape(str(value))}"'
        for name, value in attrs.items()
    )
    return f'<script async src="{src}" {rendered}></script>'


QUEUE_STUB = (
    "<script>window.calltrack=window.calltrack||function(){var a=arguments;"
    "return new Promise(function(r){(calltrack.q=calltrack.q||[]).push([a,r])})}"
    "</script>"
)


def page(body: str, tag: str, head: str = "", stub: bool = True) -> str:
    """A landing page: ``head`` first, the queue stub, then the tag, then ``body``."""
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Shop</title>"
        "<link rel='icon' href='data:,'>"
        f"{head}{QUEUE_STUB if stub else ''}{tag}</head><body>{body}</body></html>"
    )
