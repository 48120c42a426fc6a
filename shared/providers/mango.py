"""Mango Office virtual PBX (VPBX) event notifications.

Mango posts a form with three fields: ``vpbx_api_key``, ``sign`` and ``json``
(the event as JSON text). ``sign`` is the hex SHA-256 of api key + json text +
api salt. The api key must be the configured one (403 otherwise), so a valid
signature made for another account is refused too.

Mango appends the event's path to the configured base URL; the path suffix
selects the event:

- ``/events/call``: one leg of a call changed state. ``entry_id`` is the whole
  call (the dedup key), ``call_id`` one leg of it; ``to.line_number`` is the
  dialled (tracking) line, ``from.number`` the caller.
- ``/events/summary``: the call is over, with its times and result.
- ``/events/recording``: a recording of the call changed state.

Mango signs no request time, so a replayed request is only caught by
``shared.callmerge`` dedup, where it is a no-op.
"""

from __future__ import annotations

import datetime as dt
import hashlib

from shared.callevent import CallEvent
from shared.errors import BadRequest, Forbidden, Unauthorized
from shared.providers import base
from shared.providers.base import ProviderSecrets, WebhookRequest

NAME = "mango"
CALL_PATH = "/events/call"
SUMMARY_PATH = "/events/summary"
RECORDING_PATH = "/events/recording"
# Mango's call_direction in a summary: the only kind a tracking number gets.
INBOUND = 1


def verify(req: WebhookRequest, secrets: ProviderSecrets, now: dt.datetime) -> None:
    """Refuse a request with a missing or wrong sign, or another account's key."""
    api_key = secrets.require("mango_api_key")
    salt = secrets.require("mango_api_salt")
    found_key = req.form.get("vpbx_api_key")
    found_sign = req.form.get("sign")
    if not found_key or not found_sign:
        msg = "Expected form fields vpbx_api_key and sign, found them missing."
        raise Unauthorized(msg, code="signature_missing")

    if not base.same(api_key, found_key):
        msg = "Expected the configured vpbx_api_key, found another account's key."
        raise Forbidden(msg, code="api_key")

    expected = sign(found_key, req.form.get("json", ""), salt)
    if not base.same(expected, found_sign.strip().lower()):
        msg = "Expected sign to be sha256(api_key + json + salt), found another value."
        raise Unauthorized(msg, code="signature")


def sign(api_key: str, json_text: str, salt: str) -> str:
    return hashlib.sha256((api_key + json_text + salt).encode()).hexdigest()


def parse(
    req: WebhookRequest,
    region: str,
    tz: str,
    *,
    now: dt.datetime | None = None,
) -> list[CallEvent]:
    """The events in one Mango notification, chosen by the URL path suffix."""
    if "json" not in req.form:
        msg = "Expected a Mango form with a json field, found none."
        raise BadRequest(msg, code="mango_body")
    data = base.load_json_object(req.form["json"], "the Mango json field")

    path = req.path.rstrip("/")
    if path.endswith(CALL_PATH):
        return _call(data, region, tz)
    if path.endswith(SUMMARY_PATH):
        return _summary(data, region, tz)
    if path.endswith(RECORDING_PATH):
        return _recording(data, tz, now)
    if "/events/" in path:
        # DTMF, SMS, callback and other notifications share the base URL and
        # are signed like the rest; none of them describes a tracked call.
        return []
    msg = f"Expected a Mango path ending in /events/<kind>, found {path[-60:]!r}."
    raise BadRequest(msg, code="mango_path")


def _call(data: dict, region: str, tz: str) -> list[CallEvent]:
    entry_id = base.text(data, "entry_id", NAME)
    state = base.text(data, "call_state", NAME)
    origin = _party(data, "from")
    target = _party(data, "to")
    if origin.get("extension"):
        # A leg placed by an employee's extension is outgoing or internal.
        return []

    if state == "Appeared":
        kind, status, answered = "start", "ringing", None
    elif state == "Connected":
        if data.get("location") not in (None, "abonent"):
            # Connected to the voice menu or a queue: no person answered yet.
            return []
        kind, status, answered = "answer", "in_progress", True
    elif state in ("OnHold", "Disconnected"):
        # A held or ended leg is not the end of the call: transfers, voice
        # menus and ring groups make several legs under one entry_id. The
        # /events/summary notification is the one authoritative end.
        return []
    else:
        msg = (
            "Expected call_state Appeared, Connected, OnHold or Disconnected, "
            f"found {state!r}."
        )
        raise BadRequest(msg, code="mango_field")

    occurred_at = base.provider_time(data.get("timestamp"), tz, "timestamp", NAME)
    event = CallEvent(
        provider=NAME,
        provider_call_id=entry_id,
        event_kind=kind,
        occurred_at=occurred_at,
        tracking_number=base.tracking(_line(data, target), region),
        caller=base.caller(base.optional_text(origin, "number", NAME), region),
        started_at=occurred_at if kind == "start" else None,
        answered=answered,
        status=status,
        sequence=base.seconds(data, "seq", NAME),
    )
    return [event]


def _summary(data: dict, region: str, tz: str) -> list[CallEvent]:
    entry_id = base.text(data, "entry_id", NAME)
    direction = data.get("call_direction")
    origin = _party(data, "from")
    if origin.get("extension") or direction not in (None, INBOUND, str(INBOUND)):
        return []

    created = _time(data, "create_time", tz)
    ended = _time(data, "end_time", tz)
    talk_start = _optional_time(data, "talk_time", tz)
    result = data.get("entry_result")
    if result not in (0, 1, "0", "1"):
        msg = f"Expected entry_result 0 or 1, found {result!r}."
        raise BadRequest(msg, code="mango_field")
    answered = int(result) == 1

    # ring_s is the caller's wait: from arrival to the answer, or to the
    # hang-up when nobody answered (menu and queue time included).
    waited_until = talk_start if answered and talk_start else ended
    talk_s = _span(talk_start, ended) if answered and talk_start else 0
    event = CallEvent(
        provider=NAME,
        provider_call_id=entry_id,
        event_kind="end",
        occurred_at=ended,
        tracking_number=base.tracking(_line(data, _party(data, "to")), region),
        caller=base.caller(base.optional_text(origin, "number", NAME), region),
        started_at=created,
        answered=answered,
        ring_s=_span(created, waited_until),
        talk_s=talk_s,
        # Note: disconnect_reason codes could tell busy from failed; Mango's
        # code table is long and unstable, so the outcome is answered or not.
        status=base.answered_status(answered),
        sequence=base.seconds(data, "seq", NAME),
    )
    return [event]


def _recording(data: dict, tz: str, now: dt.datetime | None) -> list[CallEvent]:
    entry_id = base.text(data, "entry_id", NAME)
    recording_id = base.text(data, "recording_id", NAME)
    state = base.optional_text(data, "recording_state", NAME)
    if state is not None and state.lower() != "completed":
        # "Started" and the like announce a recording that has no file yet.
        return []

    stamp = data.get("timestamp")
    occurred_at = (
        base.provider_time(stamp, tz, "timestamp", NAME)
        if stamp not in (None, "")
        else base.now_or(now)
    )
    event = CallEvent(
        provider=NAME,
        provider_call_id=entry_id,
        event_kind="recording",
        occurred_at=occurred_at,
        recording_ref=recording_id,
        sequence=base.seconds(data, "seq", NAME),
    )
    return [event]


def _party(data: dict, name: str) -> dict:
    value = data.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        found = type(value).__name__
        msg = f"Expected Mango field {name!r} as an object, found {found}."
        raise BadRequest(msg, code="mango_field")
    return value


def _line(data: dict, target: dict) -> str | None:
    # The summary carries line_number at the top; call events inside "to".
    return base.optional_text(data, "line_number", NAME) or base.optional_text(
        target, "line_number", NAME
    )


def _time(data: dict, name: str, tz: str) -> dt.datetime:
    return base.provider_time(data.get(name), tz, name, NAME)


def _optional_time(data: dict, name: str, tz: str) -> dt.datetime | None:
    # Mango writes 0 for a stage the call never reached (no answer, no forward).
    if data.get(name) in (None, "", 0, "0"):
        return None
    return _time(data, name, tz)


def _span(start: dt.datetime, end: dt.datetime) -> int:
    return max(0, int((end - start).total_seconds()))
