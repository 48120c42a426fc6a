"""Zadarma PBX call notifications (``NOTIFY_*``) and the ``zd_echo`` check.

When the notification URL is saved, Zadarma sends a GET with ``zd_echo`` and
expects the value back as the body (``echo_response``). Notifications are
form POSTs with a ``Signature`` header: base64 of the *hex text* of
HMAC-SHA1(api secret, S). Zadarma's reference code is PHP's
``base64_encode(hash_hmac('sha1', S, secret))`` and ``hash_hmac`` returns hex
by default, so base64 of the raw 20-byte digest is a different, wrong value.

S depends on the event (as in Zadarma's official PHP library):

- NOTIFY_START, NOTIFY_INTERNAL, NOTIFY_END, NOTIFY_IVR:
  caller_id + called_did + call_start
- NOTIFY_ANSWER: caller_id + destination + call_start
- NOTIFY_OUT_START, NOTIFY_OUT_END: internal + destination + call_start
- NOTIFY_RECORD: pbx_call_id + call_id_with_rec

``pbx_call_id`` is the call's id for dedup. ``call_start`` is local time in the
account's zone. Nothing in S says when the request was sent, so a replay is
only caught by ``shared.callmerge`` dedup, where it is a no-op.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import re

from shared.callevent import CallEvent
from shared.errors import BadRequest, Unauthorized
from shared.providers import base
from shared.providers.base import ProviderSecrets, WebhookRequest

NAME = "zadarma"
SIGNATURE_HEADER = "Signature"

_SIGNED_FIELDS = {
    "NOTIFY_START": ("caller_id", "called_did", "call_start"),
    "NOTIFY_INTERNAL": ("caller_id", "called_did", "call_start"),
    "NOTIFY_END": ("caller_id", "called_did", "call_start"),
    "NOTIFY_IVR": ("caller_id", "called_did", "call_start"),
    "NOTIFY_ANSWER": ("caller_id", "destination", "call_start"),
    "NOTIFY_OUT_START": ("internal", "destination", "call_start"),
    "NOTIFY_OUT_END": ("internal", "destination", "call_start"),
    "NOTIFY_RECORD": ("pbx_call_id", "call_id_with_rec"),
}

_DISPOSITION = {
    "answered": "answered",
    "busy": "busy",
    "cancel": "canceled",
    "no answer": "no_answer",
    "failed": "failed",
}
# Every other disposition ("no money", "unallocated number", "line limit", ...)
# is a call the network could not complete.
_OTHER_DISPOSITION = "failed"

# zd_echo values are short random tokens; echoing anything else back would
# turn this endpoint into a reflector for arbitrary text.
_ECHO = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


def echo_response(req: WebhookRequest) -> str | None:
    """The body to answer Zadarma's URL check with, or None if this is not one.

    Call it before ``verify``: the check is an unsigned GET. Nothing in the
    body is read for it, so answering it never acts on unsigned data.
    """
    if "zd_echo" not in req.query:
        return None
    value = req.query["zd_echo"]
    if not _ECHO.match(value):
        msg = f"Expected zd_echo to be a short token, found {len(value)} characters."
        raise BadRequest(msg, code="zadarma_echo")
    return value


def verify(req: WebhookRequest, secrets: ProviderSecrets, now: dt.datetime) -> None:
    """Refuse a notification whose Signature header is missing or wrong."""
    secret = secrets.require("zadarma_secret")
    signature = req.header(SIGNATURE_HEADER)
    if not signature:
        msg = f"Expected a {SIGNATURE_HEADER} header, found none."
        raise Unauthorized(msg, code="signature_missing")

    event = req.form.get("event", "")
    if event not in _SIGNED_FIELDS:
        msg = f"Expected a NOTIFY_* event Zadarma signs, found {event[:40]!r}."
        raise BadRequest(msg, code="zadarma_event")
    signed = "".join(req.form.get(name, "") for name in _SIGNED_FIELDS[event])
    if not base.same(sign(secret, signed), signature.strip()):
        msg = (
            "Expected Signature to be base64 of the hex HMAC-SHA1 of the "
            f"{event} fields, found another value."
        )
        raise Unauthorized(msg, code="signature")


def sign(secret: str, signed: str) -> str:
    """base64 of the hex HMAC-SHA1 text, which is what Zadarma sends."""
    hex_text = hmac.new(secret.encode(), signed.encode(), hashlib.sha1).hexdigest()
    return base64.b64encode(hex_text.encode()).decode()


def parse(
    req: WebhookRequest,
    region: str,
    tz: str,
    *,
    now: dt.datetime | None = None,
) -> list[CallEvent]:
    """The events in one notification; ``now`` times the ones with no time."""
    data = req.form
    event = base.text(data, "event", NAME)
    if event == "NOTIFY_START":
        return [_start(data, region, tz)]
    if event == "NOTIFY_END":
        return [_end(data, region, tz, now)]
    if event == "NOTIFY_RECORD":
        return [_record(data, now)]
    if event in _SIGNED_FIELDS:
        # NOTIFY_INTERNAL and NOTIFY_ANSWER are the same inbound call being
        # put through to and picked up by an extension: NOTIFY_START already
        # opened it and NOTIFY_END reports the outcome, and NOTIFY_ANSWER also
        # fires for outgoing calls, which it cannot be told apart from.
        # NOTIFY_OUT_* are outgoing calls, never calls to a tracking number.
        # NOTIFY_IVR is a voice-menu step.
        return []
    msg = f"Expected a NOTIFY_* event, found {event[:40]!r}."
    raise BadRequest(msg, code="zadarma_event")


def _start(data, region: str, tz: str) -> CallEvent:
    started_at = _call_start(data, tz)
    return CallEvent(
        provider=NAME,
        provider_call_id=base.text(data, "pbx_call_id", NAME),
        event_kind="start",
        occurred_at=started_at,
        tracking_number=base.tracking(base.text(data, "called_did", NAME), region),
        caller=base.caller(base.optional_text(data, "caller_id", NAME), region),
        started_at=started_at,
        status="ringing",
    )


def _end(data, region: str, tz: str, now: dt.datetime | None) -> CallEvent:
    disposition = base.text(data, "disposition", NAME)
    status = _DISPOSITION.get(disposition, _OTHER_DISPOSITION)
    answered = status == "answered"
    # Note: Zadarma documents duration only as "call duration"; it is read as
    # the connected time, which is what it bills, and as 0 when unanswered.
    duration = base.seconds(data, "duration", NAME)
    # The file named by call_id_with_rec is ready only some 40 s later;
    # NOTIFY_RECORD announces it, so the end event links no recording.
    return CallEvent(
        provider=NAME,
        provider_call_id=base.text(data, "pbx_call_id", NAME),
        event_kind="end",
        occurred_at=base.now_or(now),
        tracking_number=base.tracking(base.text(data, "called_did", NAME), region),
        caller=base.caller(base.optional_text(data, "caller_id", NAME), region),
        started_at=_call_start(data, tz),
        answered=answered,
        talk_s=duration if answered else 0,
        status=status,
    )


def _record(data, now: dt.datetime | None) -> CallEvent:
    return CallEvent(
        provider=NAME,
        provider_call_id=base.text(data, "pbx_call_id", NAME),
        event_kind="recording",
        occurred_at=base.now_or(now),
        recording_ref=base.text(data, "call_id_with_rec", NAME),
    )


def _call_start(data, tz: str) -> dt.datetime:
    raw = base.text(data, "call_start", NAME)
    return base.provider_time(raw, tz, "call_start", NAME)
