"""A fake GA4 Measurement Protocol endpoint on a local port.

``/mp/collect`` and ``/debug/mp/collect`` both validate the body with the rules
of the debug endpoint (docs/stitching.md, shared/reference api-contracts.md)
and record the request. Like GA4, ``/mp/collect`` answers 204 whatever the
body holds; ``/debug/mp/collect`` answers 200 with ``validationMessages``.
Tests read ``SERVER.received()`` to see both what was sent and whether GA4
would have accepted it.

The server starts when this module is imported, on a free port chosen then,
so the local stack's functions can be pointed at it (``stack_env()``).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

MEASUREMENT_ID = "G-TEST12345"
API_SECRETS = {"demo": "mp-secret-demo", "e2e": "mp-secret-e2e"}

MAX_BODY_BYTES = 130_000
MAX_EVENTS = 25
MAX_PARAMS = 25
MAX_USER_PROPERTIES = 25
MAX_NAME = 40
MAX_USER_PROPERTY_NAME = 24
MAX_VALUE = 100
MAX_USER_PROPERTY_VALUE = 36
MAX_AGE = dt.timedelta(hours=72)
# GA4 tolerates a little clock skew on timestamps from the future.
FUTURE_SKEW = dt.timedelta(minutes=15)

NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
RESERVED_PREFIXES = ("google_", "ga_", "firebase_")
RESERVED_EVENTS = frozenset("""
ad_activeview ad_click ad_exposure ad_impression ad_query ad_reward adunit_exposure
app_background app_clear_data app_exception app_remove app_store_refund
app_store_subscription_cancel app_store_subscription_convert
app_store_subscription_renew app_update app_upgrade dynamic_link_app_open
dynamic_link_app_update dynamic_link_first_open error first_open first_visit
in_app_purchase notification_dismiss notification_foreground notification_open
notification_receive os_update session_start session_start_with_rollout
user_engagement
""".split())
RESERVED_PARAMS = frozenset({"firebase_conversion"})
RESERVED_USER_PROPERTIES = frozenset({
    "first_open_time", "first_visit_time", "last_deep_link_referrer", "user_id",
    "first_open_after_install",
})
CONSENT_VALUES = ("GRANTED", "DENIED")


@dataclass
class Received:
    path: str
    query: dict
    body: dict | None
    messages: list[dict]
    at: float = field(default_factory=time.time)

    @property
    def valid(self) -> bool:
        return not self.messages


def _message(path: str, description: str, code: str) -> dict:
    return {"fieldPath": path, "description": description, "validationCode": code}


class _Duplicates(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _no_duplicates(pairs):
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise _Duplicates(key)
        seen[key] = value
    return seen


def _check_name(path: str, name, limit: int, reserved: frozenset, out: list) -> None:
    if not isinstance(name, str) or not name:
        out.append(_message(path, "Name is required.", "VALUE_REQUIRED"))
    elif len(name) > limit or not NAME.match(name):
        out.append(_message(path, f"Name {name!r} must be at most {limit} letters, "
                            "digits and underscores, starting with a letter.",
                            "NAME_INVALID"))
    elif name in reserved or name.startswith(RESERVED_PREFIXES):
        out.append(_message(path, f"Name {name!r} is reserved.", "NAME_RESERVED"))


def _check_params(path: str, params, out: list) -> None:
    if not isinstance(params, dict):
        out.append(_message(path, "Params must be an object.", "VALUE_INVALID"))
        return
    if len(params) > MAX_PARAMS:
        out.append(_message(path, f"At most {MAX_PARAMS} params per event.",
                            "EXCEEDED_MAX_ENTITIES"))
    for name, value in params.items():
        where = f"{path}.{name}"
        _check_name(where, name, MAX_NAME, RESERVED_PARAMS, out)
        if name == "items" and isinstance(value, list):
            continue
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            out.append(_message(where, "Param values must be strings or numbers.",
                                "VALUE_INVALID"))
        elif isinstance(value, str) and len(value) > MAX_VALUE:
            out.append(_message(where, f"Value is longer than {MAX_VALUE} characters.",
                                "VALUE_OUT_OF_BOUNDS"))


def _check_timestamp(value, now: dt.datetime, out: list) -> None:
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        out.append(_message("timestamp_micros", "Must be an integer.", "VALUE_INVALID"))
        return
    at = dt.datetime.fromtimestamp(value / 1_000_000, dt.UTC)
    if at < now - MAX_AGE:
        out.append(_message("timestamp_micros", "Timestamp is more than 72 hours in "
                            "the past.", "VALUE_OUT_OF_BOUNDS"))
    elif at > now + FUTURE_SKEW:
        out.append(_message("timestamp_micros", "Timestamp is in the future.",
                            "VALUE_OUT_OF_BOUNDS"))


def _check_user_properties(props, out: list) -> None:
    if not isinstance(props, dict):
        out.append(_message("user_properties", "Must be an object.", "VALUE_INVALID"))
        return
    if len(props) > MAX_USER_PROPERTIES:
        out.append(_message("user_properties", f"At most {MAX_USER_PROPERTIES} user "
                            "properties.", "EXCEEDED_MAX_ENTITIES"))
    for name, prop in props.items():
        where = f"user_properties.{name}"
        _check_name(where, name, MAX_USER_PROPERTY_NAME, RESERVED_USER_PROPERTIES, out)
        value = prop.get("value") if isinstance(prop, dict) else None
        if not isinstance(prop, dict) or "value" not in prop:
            out.append(_message(where, "Must be an object with a value.",
                                "VALUE_INVALID"))
        elif isinstance(value, str) and len(value) > MAX_USER_PROPERTY_VALUE:
            out.append(_message(where, "Value is longer than "
                                f"{MAX_USER_PROPERTY_VALUE} characters.",
                                "VALUE_OUT_OF_BOUNDS"))


def validate(raw: bytes, now: dt.datetime | None = None) -> list[dict]:
    """The validationMessages GA4's debug endpoint would answer for ``raw``."""
    now = now or dt.datetime.now(dt.UTC)
    if len(raw) >= MAX_BODY_BYTES:
        return [_message("", f"Body must be smaller than {MAX_BODY_BYTES} bytes.",
                         "VALUE_OUT_OF_BOUNDS")]
    try:
        body = json.loads(raw, object_pairs_hook=_no_duplicates)
    except _Duplicates as dup:
        return [_message(dup.key, f"Name {dup.key!r} appears twice.",
                         "NAME_DUPLICATED")]
    except ValueError:
        return [_message("", "Body is not valid JSON.", "VALUE_INVALID")]
    if not isinstance(body, dict):
        return [_message("", "Body must be a JSON object.", "VALUE_INVALID")]

    out: list[dict] = []
    client_id = body.get("client_id")
    if client_id is None and body.get("app_instance_id") is None:
        out.append(_message("client_id", "client_id is required.", "VALUE_REQUIRED"))
    elif client_id is not None and not isinstance(client_id, str):
        out.append(_message("client_id", "Must be a string.", "VALUE_INVALID"))
    if "timestamp_micros" in body:
        _check_timestamp(body["timestamp_micros"], now, out)
    consent = body.get("consent")
    if consent is not None:
        if not isinstance(consent, dict):
            out.append(_message("consent", "Must be an object.", "VALUE_INVALID"))
        else:
            for key, value in consent.items():
                if key not in ("ad_user_data", "ad_personalization"):
                    out.append(_message(f"consent.{key}", "Unknown consent field.",
                                        "NAME_INVALID"))
                elif value not in CONSENT_VALUES:
                    out.append(_message(f"consent.{key}", "Must be GRANTED or DENIED.",
                                        "VALUE_INVALID"))
    if "user_properties" in body:
        _check_user_properties(body["user_properties"], out)

    events = body.get("events")
    if not isinstance(events, list) or not events:
        out.append(_message("events", "At least one event is required.",
                            "VALUE_REQUIRED"))
        return out
    if len(events) > MAX_EVENTS:
        out.append(_message("events", f"At most {MAX_EVENTS} events per request.",
                            "EXCEEDED_MAX_ENTITIES"))
    for index, event in enumerate(events):
        where = f"events[{index}]"
        if not isinstance(event, dict):
            out.append(_message(where, "Must be an object.", "VALUE_INVALID"))
            continue
        _check_name(f"{where}.name", event.get("name"), MAX_NAME, RESERVED_EVENTS,
                    out)
        if "params" in event:
            _check_params(f"{where}.params", event["params"], out)
    return out


class FakeGA4:
    """The server; thread-safe recording of every request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._received: list[Received] = []
        self._failures: list[int] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                fake._handle(self)

            def log_message(self, *args):  # keep pytest output quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True,
                                        name="fake-ga4")

    def start(self) -> FakeGA4:
        self._thread.start()
        return self

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length)
        if parts.path not in ("/mp/collect", "/debug/mp/collect"):
            self._answer(handler, 404, b"")
            return
        with self._lock:
            failure = self._failures.pop(0) if self._failures else None
        if failure is not None:
            self._answer(handler, failure, b"")
            return

        messages = validate(raw)
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        with self._lock:
            self._received.append(Received(parts.path, query, body, messages))
        if parts.path == "/debug/mp/collect":
            answer = json.dumps({"validationMessages": messages}).encode()
            self._answer(handler, 200, answer, "application/json")
        else:
            self._answer(handler, 204, b"")

    @staticmethod
    def _answer(handler, status: int, body: bytes, content_type: str = "") -> None:
        handler.send_response(status)
        if content_type:
            handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def fail_next(self, status: int, times: int = 1) -> None:
        """Answer the next ``times`` requests with ``status`` (an outage)."""
        with self._lock:
            self._failures.extend([status] * times)

    def received(self, path: str = "/mp/collect") -> list[Received]:
        with self._lock:
            return [r for r in self._received if r.path == path]

    def for_client(self, client_id: str) -> list[Received]:
        return [r for r in self.received()
                if isinstance(r.body, dict) and r.body.get("client_id") == client_id]

    def clear(self) -> None:
        with self._lock:
            self._received.clear()
            self._failures.clear()


SERVER = FakeGA4().start()


def stack_env() -> dict:
    """Environment entries that point the local stack's functions at the fake."""
    return {
        "CALLTRACK_GA4_ENDPOINT": SERVER.url,
        "CALLTRACK_GA4_SECRETS": json.dumps(API_SECRETS),
    }
