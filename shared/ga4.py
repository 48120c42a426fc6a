"""GA4: a stitched call sent as the Measurement Protocol event ``call``.

``build`` turns a ``call.stitched`` message into the request body, or says why
it must not be sent: no analytics consent, no GA client id, or a call older
than the 72 hours GA4 accepts. The event carries the call's own time and the
visitor's GA session id with an engagement time, so GA4 files it under the
visitor's session and its traffic source rather than "Unassigned".

``Forwarder`` adds the I/O: the site's measurement id (site document,
``extra.ga4_measurement_id``), the api_secret (``CALLTRACK_GA4_SECRETS``), a
ledger ``ga4_sent/{call_id}`` and the HTTP request. A site with
``extra.ga4_validate`` set has each event checked by ``/debug/mp/collect``
first (for onboarding: ``/mp/collect`` itself accepts anything silently).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

from shared import touches
from shared.errors import ConfigError, PermanentError, TransientError

logger = logging.getLogger(__name__)

EVENT = "call"
LEDGER = "ga4_sent"
# GA4 takes events up to 72 hours old (timestamp_micros); older ones are
# dropped by GA4 without a word, so they are not sent at all.
MAX_AGE = dt.timedelta(hours=72)
# Measurement Protocol limits.
MAX_EVENTS = 25
MAX_PARAMS = 25
MAX_NAME_CHARS = 40
MAX_VALUE_CHARS = 100
MAX_BODY_BYTES = 130_000
# A positive engagement time is what makes GA4 count the event in the
# session; the call's length goes in ``duration``, not as time on the site.
ENGAGEMENT_TIME_MSEC = 100
TIMEOUT_S = 10.0
# A ledger entry outlives every redelivery and replay of the message.
SENT_RETENTION = dt.timedelta(days=35)
# Retry what may pass later; every other 4xx is our request's fault.
RETRY_STATUSES = (408, 429)

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
# _ga cookie "GA1.1.123456789.1700000000" or its last two parts.
_CLIENT_ID = re.compile(r"^(?:GA\d+\.\d+\.)?(\d+\.\d+)$")
# _ga_<ID> cookie "GS1.1.1712345678.3.1...", "GS2.1.s1712345678$o3..." or the id.
_SESSION_ID = re.compile(r"^(?:GS\d+\.\d+\.s?)?(\d+)(?:[.$].*)?$")


@dataclass(frozen=True)
class Skip:
    """Why a call is not sent to GA4: ``reason`` for machines, ``detail`` for
    the log."""

    reason: str  # consent | no_client_id | too_old
    detail: str


def client_id(raw) -> str | None:
    """GA4's client id from the snippet's value or a whole ``_ga`` cookie."""
    match = _CLIENT_ID.match(raw) if isinstance(raw, str) else None
    return match.group(1) if match else None


def session_id(raw) -> str | None:
    match = _SESSION_ID.match(raw) if isinstance(raw, str) else None
    return match.group(1) if match else None


def _value(value):
    """A parameter value within GA4's limit; None (left out) when empty."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value[:MAX_VALUE_CHARS]
    return value


def _recording_url(ref) -> str | None:
    # A cut URL is a broken one, so a long one is left out, not shortened.
    url = touches.recording_url(ref)
    return url if url is not None and len(url) <= MAX_VALUE_CHARS else None


def _parse_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).astimezone(dt.UTC)


def build(stitched: dict, now: dt.datetime) -> dict | Skip:
    """The Measurement Protocol body for a stitched call, or why not to send."""
    if stitched.get("consent_analytics") is not True:
        return Skip("consent", "the visitor gave no analytics consent")
    ids = stitched.get("analytics_ids") or {}
    cid = client_id(ids.get("ga_client_id"))
    if cid is None:
        return Skip("no_client_id", "the session has no GA client id")
    started = _parse_time(stitched["started_at"])
    age = now - started
    if age > MAX_AGE:
        hours = age.total_seconds() / 3600
        detail = (f"the call started {hours:.0f} h ago, and GA4 accepts events "
                  f"at most {MAX_AGE.total_seconds() / 3600:.0f} h old")
        return Skip("too_old", detail)

    params = {
        **touches.credited_touch(stitched),
        "session_id": session_id(ids.get("ga_session_id")),
        "engagement_time_msec": ENGAGEMENT_TIME_MSEC,
        "call_status": stitched.get("status"),
        "duration": stitched.get("talk_s") or 0,
        "recording_url": _recording_url(stitched.get("recording_ref")),
    }
    params = {name: _value(v) for name, v in params.items() if _value(v) is not None}
    granted = "GRANTED" if stitched.get("consent_ads") is True else "DENIED"
    # A provider clock ahead of ours would put the call in the future.
    at = min(started, now)
    payload = {
        "client_id": cid,
        "timestamp_micros": int(at.timestamp() * 1_000_000),
        "consent": {"ad_user_data": granted, "ad_personalization": granted},
        "events": [{"name": EVENT, "params": params}],
    }
    check(payload)
    return payload


def check(payload: dict) -> None:
    """Raise PermanentError when the body breaks a protocol limit.

    ``build`` keeps within the limits by construction; this is the guard that
    a later change keeps it so, since ``/mp/collect`` would drop it silently.
    """
    problems = []
    events = payload.get("events") or []
    if not 1 <= len(events) <= MAX_EVENTS:
        problems.append(f"1 to {MAX_EVENTS} events, found {len(events)}")
    for event in events:
        params = event.get("params") or {}
        for name in [event["name"], *params]:
            if len(name) > MAX_NAME_CHARS or not _NAME.match(name):
                problems.append(f"a valid name, found {name!r:.60}")
        if len(params) > MAX_PARAMS:
            problems.append(f"at most {MAX_PARAMS} parameters, found {len(params)}")
        for name, value in params.items():
            if isinstance(value, str) and len(value) > MAX_VALUE_CHARS:
                problems.append(f"{name} of at most {MAX_VALUE_CHARS} characters")
    size = len(json.dumps(payload).encode())
    if size >= MAX_BODY_BYTES:
        problems.append(f"a body under {MAX_BODY_BYTES} bytes, found {size}")
    if problems:
        msg = f"Expected a GA4 event within the protocol: {'; '.join(problems)}."
        raise PermanentError(msg, code="ga4_limits")


class Sender:
    """POSTs to the Measurement Protocol. The api_secret travels in the URL,
    so no URL and no request exception text ever reaches a log or an error."""

    def __init__(self, endpoint: str, timeout_s: float = TIMEOUT_S,
                 session=None) -> None:
        import requests

        self.endpoint = endpoint.rstrip("/")
        self.timeout_s = timeout_s
        self.session = session or requests.Session()

    def _post(self, path: str, measurement_id: str, api_secret: str, payload: dict):
        import requests

        try:
            resp = self.session.post(
                self.endpoint + path,
                params={"measurement_id": measurement_id, "api_secret": api_secret},
                data=json.dumps(payload, separators=(",", ":")),
                headers={"Content-Type": "application/json"},
                timeout=self.timeout_s,
            )
        except requests.RequestException as exc:
            msg = f"Expected GA4 to answer, found {type(exc).__name__}."
            raise TransientError(msg) from None
        if resp.status_code >= 500 or resp.status_code in RETRY_STATUSES:
            msg = f"Expected GA4 to accept the event, found HTTP {resp.status_code}."
            raise TransientError(msg)
        if resp.status_code >= 400:
            msg = f"Expected GA4 to accept the event, found HTTP {resp.status_code}."
            raise PermanentError(msg, code="ga4_refused")
        return resp

    def send(self, measurement_id: str, api_secret: str, payload: dict) -> None:
        self._post("/mp/collect", measurement_id, api_secret, payload)

    def validate(self, measurement_id: str, api_secret: str, payload: dict) -> list:
        """The debug endpoint's validationMessages (empty when valid)."""
        resp = self._post("/debug/mp/collect", measurement_id, api_secret, payload)
        try:
            return list(resp.json().get("validationMessages") or [])
        except ValueError:
            msg = "Expected JSON from GA4 validation, found other."
            raise TransientError(msg) from None


class Forwarder:
    """Send stitched calls to GA4 once each, at least once.

    The ledger entry is written after GA4 took the event: a crash between the
    two sends the event again on redelivery. Note: GA4 does not deduplicate
    Measurement Protocol events, so that rare repeat counts twice; marking
    before sending would lose events instead, which is worse for attribution.
    """

    def __init__(self, client, sites, sender: Sender, secrets: dict,
                 now: Callable[[], dt.datetime] | None = None) -> None:
        self.client = client
        self.sites = sites
        self.sender = sender
        self.secrets = secrets
        self.now = now or (lambda: dt.datetime.now(dt.UTC))

    def handle(self, stitched: dict) -> str:
        """Send one stitched call; returns "sent" or why it was not."""
        call_id, site_id = stitched["call_id"], stitched["site_id"]
        site = self.sites.get(site_id)
        measurement_id = site.extra.get("ga4_measurement_id")
        if not measurement_id:
            logger.debug("Site %s has no GA4 measurement id; call %s not sent",
                         site_id, call_id)
            return "not_configured"
        secret = self.secrets.get(site_id)
        if not secret:
            msg = (f"Expected a GA4 api_secret for site {site_id} in "
                   "CALLTRACK_GA4_SECRETS, found none.")
            raise ConfigError(msg)

        ref = self.client.collection(LEDGER).document(call_id)
        if ref.get().exists:
            logger.debug("Call %s was sent to GA4 before", call_id)
            return "already_sent"
        now = self.now()
        payload = build(stitched, now)
        if isinstance(payload, Skip):
            level = logging.WARNING if payload.reason == "too_old" else logging.INFO
            logger.log(level, "Not sending call %s to GA4: %s", call_id,
                       payload.detail, extra={"fields": {
                           "event": "ga4_skipped", "call_id": call_id,
                           "site_id": site_id, "reason": payload.reason}})
            return payload.reason

        if site.extra.get("ga4_validate"):
            problems = self.sender.validate(measurement_id, secret, payload)
            if problems:
                msg = (
                    f"Expected GA4 to validate call {call_id}, "
                    f"found {problems!r:.500}."
                )
                raise PermanentError(msg, code="ga4_invalid")
        self.sender.send(measurement_id, secret, payload)
        ref.set({"site_id": site_id, "measurement_id": measurement_id,
                 "sent_at": now, "expires_at": now + SENT_RETENTION})
        logger.info("Sent call %s to GA4 %s", call_id, measurement_id,
                    extra={"fields": {"event": "ga4_sent", "call_id": call_id,
                                      "site_id": site_id}})
        return "sent"
