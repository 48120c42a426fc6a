"""What the ad platform fakes share: a threaded local server with routes,
recording, and failures on demand (status codes, slow answers).

Each fake (``ads_google``, ``ads_yandex``, ``ads_meta``, ``ads_vk``) starts on
import on a free port; ``stack_env()`` of each points the product at it.
Handlers validate strictly against shared/reference/api-contracts.md and
answer like the platform, refusals included.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str
    raw_query: str
    headers: dict
    body: bytes
    at: float = field(default_factory=time.time)

    @property
    def query(self) -> dict:
        return {
            k: v[0] for k, v in parse_qs(self.raw_query, keep_blank_values=True).items()
        }

    def json(self):
        return json.loads(self.body)


@dataclass
class Answer:
    status: int
    body: bytes | dict | list | None = None
    headers: dict = field(default_factory=dict)


@dataclass
class _Fault:
    status: int | None
    delay_s: float
    times: int
    match: str | None
    headers: dict


class FakeServer:
    """Routes: (method, compiled path regex) -> handler(request, match)."""

    name = "fake"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._received: list[Request] = []
        self._faults: list[_Fault] = []
        self.routes: list[tuple[str, re.Pattern, object]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802 (http.server's naming)
                fake._handle(self, "GET")

            def do_POST(self):  # noqa: N802
                fake._handle(self, "POST")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def route(self, method: str, pattern: str, handler) -> None:
        self.routes.append((method, re.compile(f"^{pattern}$"), handler))

    # -- test controls ---------------------------------------------------------

    def fail_next(
        self,
        status: int,
        times: int = 1,
        match: str | None = None,
        headers: dict | None = None,
    ) -> None:
        """Answer the next ``times`` requests (whose path contains ``match``)
        with ``status`` before looking at them."""
        with self._lock:
            self._faults.append(_Fault(status, 0.0, times, match, headers or {}))

    def delay_next(
        self, seconds: float, times: int = 1, match: str | None = None
    ) -> None:
        """Handle the next requests normally but answer after ``seconds`` (a
        client timeout: the platform did take the request)."""
        with self._lock:
            self._faults.append(_Fault(None, seconds, times, match, {}))

    def received(self, contains: str = "") -> list[Request]:
        with self._lock:
            return [r for r in self._received if contains in r.path]

    def clear(self) -> None:
        with self._lock:
            self._received.clear()
            self._faults.clear()
        self.reset()

    def reset(self) -> None:
        """Forget platform state (subclasses)."""

    # -- serving ---------------------------------------------------------------

    def _fault(self, path: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.match is None or fault.match in path:
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        req = Request(
            method,
            parts.path,
            parts.query,
            {k.lower(): v for k, v in handler.headers.items()},
            body,
        )
        fault = self._fault(parts.path)
        if fault and fault.status is not None:
            with self._lock:
                self._received.append(req)
            self._answer(
                handler,
                Answer(
                    fault.status,
                    {"error": {"code": fault.status, "message": "injected failure"}},
                    fault.headers,
                ),
            )
            return

        answer = Answer(404, {"error": {"code": 404, "message": "no such path"}})
        for route_method, pattern, fn in self.routes:
            match = pattern.match(parts.path)
            if match and route_method == method:
                with self._lock:
                    self._received.append(req)
                answer = fn(req, match)
                break
        if fault:
            time.sleep(fault.delay_s)
        self._answer(handler, answer)

    @staticmethod
    def _answer(handler, answer: Answer) -> None:
        body = answer.body
        ctype = "application/json"
        if isinstance(body, bytes):
            ctype = answer.headers.pop("Content-Type", "application/octet-stream")
        else:
            body = json.dumps(body).encode() if body is not None else b""
        try:
            handler.send_response(answer.status)
            handler.send_header("Content-Type", ctype)
            handler.send_header("Content-Length", str(len(body)))
            for name, value in answer.headers.items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test)


HEX64 = re.compile(r"^[0-9a-f]{64}$")
CURRENCY = re.compile(r"^[A-Z]{3}$")


def unknown_keys(obj: dict, allowed: set, where: str, out: list) -> None:
    for key in obj:
        if key not in allowed:
            out.append(f"{where}: unknown field {key!r}")
