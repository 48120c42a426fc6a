"""Twilio Programmable Voice: call status and recording status callbacks.

Twilio signs every request with ``X-Twilio-Signature``: base64 of HMAC-SHA1,
keyed with the account's auth token, over the full URL followed by each POST
parameter's name and value, names in sorted order. Like Twilio's own validator
we accept the signature made over the URL with the port (":443" or ":80"
written out) or without it, because Twilio signs either form depending on the
configured URL. A JSON body is not in the signature: the URL instead carries
``bodySHA256``, the hex SHA-256 of the raw body, and the signature covers the
URL alone.

Twilio signs no timestamp, so a replayed request cannot be told from one of
Twilio's own retries; both become no-ops in ``shared.callmerge``.

Only inbound calls are tracked: ``To`` is the tracking number, ``From`` the
caller.
"""

from __future__ import annotations

import base64
import datetime as dt
import email.utils
import hashlib
import hmac
from urllib.parse import parse_qs, urlparse

from shared.callevent import CallEvent
from shared.errors import BadRequest, Unauthorized
from shared.providers import base
from shared.providers.base import ProviderSecrets, WebhookRequest

NAME = "twilio"
SIGNATURE_HEADER = "X-Twilio-Signature"
BODY_HASH_PARAM = "bodySHA256"

# CallStatus -> (stage, canonical status).
_CALL_STATUS = {
    "queued": ("start", "ringing"),
    "initiated": ("start", "ringing"),
    "ringing": ("start", "ringing"),
    "in-progress": ("answer", "in_progress"),
    # Note: for an inbound call "completed" means Twilio answered it (TwiML
    # ran), even when a <Dial> inside it went unanswered; the Dial outcome is
    # only in the Dial action callback, which this module does not read.
    "completed": ("end", "answered"),
    "busy": ("end", "busy"),
    "no-answer": ("end", "no_answer"),
    "failed": ("end", "failed"),
    "canceled": ("end", "canceled"),
}


def verify(req: WebhookRequest, secrets: ProviderSecrets, now: dt.datetime) -> None:
    """Refuse a request whose X-Twilio-Signature is missing or wrong."""
    token = secrets.require("twilio_auth_token")
    signature = req.header(SIGNATURE_HEADER)
    if not signature:
        msg = f"Expected an {SIGNATURE_HEADER} header, found none."
        raise Unauthorized(msg, code="signature_missing")

    parsed = urlparse(req.url)
    query = parse_qs(parsed.query, keep_blank_values=True)
    if BODY_HASH_PARAM in query:
        body_hash = hashlib.sha256(req.raw_body).hexdigest()
        if not base.same(body_hash, query[BODY_HASH_PARAM][0]):
            msg = "Expected bodySHA256 to be the body's SHA-256, found another hash."
            raise Unauthorized(msg, code="body_hash")
        params: list[tuple[str, str]] = []
    elif req.form or _is_form(req):
        params = base.form_pairs(req.raw_body)
    else:
        params = []

    candidates = (_without_port(parsed), _with_port(parsed))
    matches = [base.same(sign(token, url, params), signature) for url in candidates]
    if not any(matches):
        msg = (
            f"Expected {SIGNATURE_HEADER} to sign this URL and body, "
            "found a signature that does not match."
        )
        raise Unauthorized(msg, code="signature")


def sign(token: str, url: str, params: list[tuple[str, str]]) -> str:
    """Twilio's signature of ``url`` and POST ``params``.

    A repeated name contributes each distinct value, values sorted, as
    Twilio's validator does.
    """
    payload = url
    for name in sorted({name for name, _ in params}):
        for value in sorted({v for n, v in params if n == name}):
            payload += name + value
    mac = hmac.new(token.encode(), payload.encode(), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()


def parse(
    req: WebhookRequest,
    region: str,
    tz: str,
    *,
    now: dt.datetime | None = None,
) -> list[CallEvent]:
    """The events in one status or recording callback.

    ``tz`` is unused: every Twilio time carries its own offset. ``now`` is
    the receipt time, used for recording callbacks, which carry no time.
    """
    data = _fields(req)
    call_sid = base.text(data, "CallSid", NAME)
    if data.get("RecordingSid"):
        return _recording(data, call_sid, now)

    direction = base.optional_text(data, "Direction", NAME)
    if direction is not None and direction != "inbound":
        # Outbound calls and the outbound-dial legs of a forwarded call are
        # not calls to a tracking number; the inbound parent reports those.
        return []

    call_status = base.text(data, "CallStatus", NAME)
    if call_status not in _CALL_STATUS:
        choices = ", ".join(_CALL_STATUS)
        msg = f"Expected CallStatus to be one of {choices}, found {call_status!r}."
        raise BadRequest(msg, code="twilio_field")
    kind, status = _CALL_STATUS[call_status]

    stamp = base.optional_text(data, "Timestamp", NAME)
    occurred_at = _rfc2822(stamp) if stamp else base.now_or(now)
    talk_s = base.seconds(data, "CallDuration", NAME) if kind == "end" else None
    started_at = None
    if kind == "start":
        started_at = occurred_at
    elif talk_s is not None:
        # Twilio gives no start time; Timestamp less CallDuration is when
        # Twilio picked the call up, which for inbound is almost at once.
        started_at = occurred_at - dt.timedelta(seconds=talk_s)

    event = CallEvent(
        provider=NAME,
        provider_call_id=call_sid,
        event_kind=kind,
        occurred_at=occurred_at,
        tracking_number=base.tracking(base.optional_text(data, "To", NAME), region),
        caller=base.caller(base.optional_text(data, "From", NAME), region),
        started_at=started_at,
        answered=_answered(kind, status),
        talk_s=talk_s,
        status=status,
        sequence=base.seconds(data, "SequenceNumber", NAME),
    )
    return [event]


def _recording(data, call_sid: str, now: dt.datetime | None) -> list[CallEvent]:
    status = base.optional_text(data, "RecordingStatus", NAME) or "completed"
    if status != "completed":
        # "in-progress", "absent" and "failed" carry no file to link to.
        return []

    ref = base.optional_text(data, "RecordingUrl", NAME)
    event = CallEvent(
        provider=NAME,
        provider_call_id=call_sid,
        event_kind="recording",
        occurred_at=base.now_or(now),
        recording_ref=ref or base.text(data, "RecordingSid", NAME),
    )
    return [event]


def _answered(kind: str, status: str) -> bool | None:
    if kind == "answer":
        return True
    if kind == "end":
        return status == "answered"
    return None


def _fields(req: WebhookRequest) -> dict:
    if req.method == "GET":
        # A callback configured with method GET carries its fields in the URL.
        return dict(req.query)
    if req.form:
        return dict(req.form)
    if req.raw_body.strip():
        return req.json_object()
    msg = "Expected a Twilio callback with form or JSON fields, found an empty body."
    raise BadRequest(msg, code="twilio_body")


def _rfc2822(stamp: str) -> dt.datetime:
    try:
        value = email.utils.parsedate_to_datetime(stamp)
    except (TypeError, ValueError):
        msg = f"Expected Timestamp as an RFC 2822 date, found {stamp[:40]!r}."
        raise BadRequest(msg, code="twilio_time") from None
    if value.tzinfo is None:
        # RFC 2822 "-0000" means UTC with no claim about the local zone.
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def _is_form(req: WebhookRequest) -> bool:
    content_type = req.header("content-type") or ""
    return content_type.split(";")[0].strip().lower() == base.FORM_TYPE


def _port(parsed) -> int | None:
    try:
        return parsed.port
    except ValueError:
        msg = f"Expected a valid port in the request URL, found {parsed.netloc!r}."
        raise BadRequest(msg, code="url") from None


def _without_port(parsed) -> str:
    if not _port(parsed):
        return parsed.geturl()
    return parsed._replace(netloc=parsed.netloc.rsplit(":", 1)[0]).geturl()


def _with_port(parsed) -> str:
    if _port(parsed):
        return parsed.geturl()
    port = 443 if parsed.scheme == "https" else 80
    return parsed._replace(netloc=f"{parsed.netloc}:{port}").geturl()
