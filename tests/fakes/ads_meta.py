"""Fake Meta Conversions API (api-contracts.md, "Meta Conversions API").

``POST /{version}/{pixel}/events?access_token=`` with ``data`` (at most
1,000 events). One invalid event refuses the whole batch (400, code 100),
as Meta does: names, event_time within 7 days, action_source, user_data
hashed (ph, em, external_id as SHA-256 hex; fbc ``fb.1.<ms>.<fbclid>``, fbp
not hashed), custom_data value and currency. Deduplicates by
(event_name, event_id).
"""

from __future__ import annotations

import re
import threading
import time

from tests.fakes.ads_common import CURRENCY, HEX64, Answer, FakeServer, unknown_keys

TOKEN = "fake-meta-access-token"
MAX_EVENTS = 1000
WINDOW_S = 7 * 86400
ACTION_SOURCES = {
    "email",
    "website",
    "app",
    "phone_call",
    "chat",
    "physical_store",
    "system_generated",
    "business_messaging",
    "other",
}
HASHED = (
    "ph",
    "em",
    "external_id",
    "fn",
    "ln",
    "ct",
    "st",
    "zp",
    "country",
    "ge",
    "db",
)
_FBC = re.compile(r"^fb\.1\.\d{13}\.[A-Za-z0-9_-]+$")
_FBP = re.compile(r"^fb\.1\.\d{13}\.\d+$")


def _refuse(message: str, subcode: int = 2804050) -> Answer:
    return Answer(
        400,
        {
            "error": {
                "message": message,
                "type": "OAuthException",
                "code": 100,
                "error_subcode": subcode,
                "fbtrace_id": "AfakeTrace",
            }
        },
    )


def check_event(event: dict, now: float) -> str | None:
    problems: list = []
    unknown_keys(
        event,
        {
            "event_name",
            "event_time",
            "user_data",
            "custom_data",
            "event_source_url",
            "opt_out",
            "event_id",
            "action_source",
            "data_processing_options",
        },
        "event",
        problems,
    )
    if problems:
        return problems[0]
    if not isinstance(event.get("event_name"), str) or not event["event_name"]:
        return "event_name required"
    when = event.get("event_time")
    if not isinstance(when, int) or when > now + 60 or when < now - WINDOW_S:
        return "event_time must be unix seconds within the last 7 days"
    if event.get("action_source") not in ACTION_SOURCES:
        return "action_source invalid"
    if not isinstance(event.get("event_id"), str):
        return "event_id required for deduplication"
    user = event.get("user_data") or {}
    for key in HASHED:
        values = user.get(key)
        values = values if isinstance(values, list) else [values]
        if user.get(key) is not None and not all(
            isinstance(v, str) and HEX64.match(v) for v in values
        ):
            return f"user_data.{key} must be SHA-256 hex"
    if "fbc" in user and not _FBC.match(str(user["fbc"])):
        return "user_data.fbc must be fb.1.<creation ms>.<fbclid>"
    if "fbp" in user and not _FBP.match(str(user["fbp"])):
        return "user_data.fbp must be fb.1.<ms>.<random>"
    if not any(user.get(k) for k in (*HASHED, "fbc", "fbp", "client_ip_address")):
        return "user_data needs a customer information parameter"
    custom = event.get("custom_data") or {}
    if "value" in custom and (
        not isinstance(custom["value"], (int, float))
        or not CURRENCY.match(str(custom.get("currency", "")))
    ):
        return "custom_data value must be a number with an ISO currency"
    if event["event_name"] == "Purchase" and "value" not in custom:
        return "Purchase needs custom_data.value and currency"
    return None


class FakeMeta(FakeServer):
    name = "meta"

    def __init__(self) -> None:
        super().__init__()
        self._state = threading.Lock()
        self.reset()
        self.route("POST", r"/(v\d+\.\d+)/(\d+)/events", self._events)

    def reset(self) -> None:
        self.events: dict[tuple, dict] = {}  # (event_name, event_id) -> event
        self.received_events = 0  # repeats included
        self.refuse_ids: set[str] = set()

    def _events(self, req, m) -> Answer:
        if req.query.get("access_token") != TOKEN:
            return Answer(
                401,
                {
                    "error": {
                        "message": "Invalid OAuth access token.",
                        "type": "OAuthException",
                        "code": 190,
                    }
                },
            )
        try:
            body = req.json()
        except ValueError:
            return _refuse("body must be JSON")
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list) or not data:
            return _refuse("data must be a non-empty array")
        if len(data) > MAX_EVENTS:
            return _refuse(f"at most {MAX_EVENTS} events per request")
        now = time.time()
        for i, event in enumerate(data):
            problem = check_event(event, now)
            if problem is None and event.get("event_id") in self.refuse_ids:
                problem = "event refused by the test"
            if problem:
                return _refuse(f"data[{i}]: {problem}")
        with self._state:
            for event in data:
                self.received_events += 1
                self.events.setdefault((event["event_name"], event["event_id"]), event)
        return Answer(
            200,
            {"events_received": len(data), "messages": [], "fbtrace_id": "AfakeTrace"},
        )


SERVER = FakeMeta().start()
SECRETS = {"meta_access_token": TOKEN}


def stack_env() -> dict:
    return {"CALLTRACK_META_ENDPOINT": SERVER.url}
