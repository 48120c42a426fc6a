"""The generic JSON hook, for Asterisk, FreePBX and any PBX that can POST.

One POST per call stage, ``Content-Type: application/json``, signed with the
shared secret:

    X-Calltrack-Timestamp: <unix seconds when the request was signed>
    X-Calltrack-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>

The body is signed byte for byte as sent. A request signed more than
``MAX_SKEW_S`` from now, in the past or the future, is refused as a replay
(403); within the window a repeat is a no-op in ``shared.callmerge``.

Body fields (unknown ones are ignored, so senders may add their own):

- ``call_id`` (text, required): the PBX's id of the call, the same on every
  stage (Asterisk: the ``linkedid``).
- ``event`` (required): ``start``, ``answer``, ``end`` or ``recording``.
- ``tracking_number`` (text): the dialled number; required on start and end.
- ``caller`` (text): the caller's number, national or international.
- ``occurred_at`` (ISO 8601 with offset): when the stage happened; defaults
  to the signing timestamp.
- ``started_at`` (ISO 8601 with offset): when the call arrived; defaults to
  ``occurred_at`` on start.
- ``ring_s`` and ``talk_s`` (whole seconds).
- ``answered`` (true/false) and ``status`` (answered, no_answer, busy, failed,
  canceled): read on end only, which needs one of them or ``talk_s``; start
  is always ringing and answer always answered and in progress.
- ``recording_url`` (http(s) URL): required on recording.
- ``sequence`` (whole number): an ordering hint, if the PBX has one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac

from shared.callevent import FINAL_STATUSES, KINDS, CallEvent, parse_iso
from shared.errors import BadRequest, Forbidden, Unauthorized
from shared.providers import base
from shared.providers.base import ProviderSecrets, WebhookRequest

NAME = "generic"
TIMESTAMP_HEADER = "X-Calltrack-Timestamp"
SIGNATURE_HEADER = "X-Calltrack-Signature"
SCHEME = "sha256="
# Five minutes either way covers PBX clock drift and a few retries, and is
# short enough that a captured request is soon useless.
MAX_SKEW_S = 300

_STAGE_STATUS = {"start": "ringing", "answer": "in_progress"}


def verify(req: WebhookRequest, secrets: ProviderSecrets, now: dt.datetime) -> None:
    """Refuse a wrong or missing signature, then a stale or future timestamp."""
    secret = secrets.require("generic_secret")
    stamp = req.header(TIMESTAMP_HEADER)
    signature = req.header(SIGNATURE_HEADER)
    if not stamp or not signature:
        msg = f"Expected {TIMESTAMP_HEADER} and {SIGNATURE_HEADER} headers, found none."
        raise Unauthorized(msg, code="signature_missing")
    if not stamp.isdigit():
        msg = f"Expected {TIMESTAMP_HEADER} as unix seconds, found {stamp[:20]!r}."
        raise Unauthorized(msg, code="timestamp")

    if not base.same(sign(secret, stamp, req.raw_body), signature.strip()):
        msg = (
            f"Expected {SIGNATURE_HEADER} to be sha256=<hex HMAC of "
            "timestamp.body>, found another value."
        )
        raise Unauthorized(msg, code="signature")

    skew = abs(now.timestamp() - int(stamp))
    if skew > MAX_SKEW_S:
        msg = (
            f"Expected a request signed within {MAX_SKEW_S} s of now, "
            f"found one {int(skew)} s away."
        )
        raise Forbidden(msg, code="replay")


def sign(secret: str, stamp: str, raw_body: bytes) -> str:
    message = stamp.encode() + b"." + raw_body
    digest = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return SCHEME + digest


def parse(
    req: WebhookRequest,
    region: str,
    tz: str,
    *,
    now: dt.datetime | None = None,
) -> list[CallEvent]:
    """The one event in a request; ``tz`` is unused as every time has an offset."""
    data = req.json_object()
    call_id = _typed(data, "call_id", str)
    kind = _typed(data, "event", str)
    if not call_id:
        msg = "Expected call_id as non-empty text, found nothing."
        raise BadRequest(msg, code="generic_field")
    if kind not in KINDS:
        msg = f"Expected event to be one of {', '.join(KINDS)}, found {kind!r}."
        raise BadRequest(msg, code="generic_field")

    occurred_at = _time(data, "occurred_at") or _signed_at(req) or base.now_or(now)
    started_at = _time(data, "started_at")
    if kind == "start" and started_at is None:
        started_at = occurred_at
    number = _typed(data, "tracking_number", str)
    if kind in ("start", "end") and not number:
        msg = f"Expected tracking_number on a {kind} event, found nothing."
        raise BadRequest(msg, code="generic_field")

    talk_s = _typed(data, "talk_s", int)
    answered, status = _outcome(kind, data, talk_s)
    recording_url = _typed(data, "recording_url", str)
    if kind == "recording" and not _is_url(recording_url):
        msg = "Expected recording_url as an http(s) URL on a recording event."
        raise BadRequest(msg, code="generic_field")

    event = CallEvent(
        provider=NAME,
        provider_call_id=call_id,
        event_kind=kind,
        occurred_at=occurred_at,
        tracking_number=base.tracking(number, region),
        caller=base.caller(_typed(data, "caller", str), region),
        started_at=started_at,
        answered=answered,
        ring_s=_typed(data, "ring_s", int),
        talk_s=talk_s,
        status=status,
        recording_ref=recording_url if kind == "recording" else None,
        sequence=_typed(data, "sequence", int),
    )
    return [event]


def _outcome(
    kind: str, data: dict, talk_s: int | None
) -> tuple[bool | None, str | None]:
    answered = _typed(data, "answered", bool)
    status = _typed(data, "status", str)
    # Only an end reports an outcome; the other stages imply their status.
    if kind != "end":
        return (True if kind == "answer" else None), _STAGE_STATUS.get(kind)

    if status is not None and status not in FINAL_STATUSES:
        choices = ", ".join(FINAL_STATUSES)
        msg = f"Expected an end status in {choices}, found {status!r}."
        raise BadRequest(msg, code="generic_field")
    if answered is None and status is not None:
        answered = status == "answered"
    elif answered is None and talk_s is not None:
        answered = talk_s > 0
    elif answered is None:
        msg = "Expected answered, status or talk_s on an end event, found none."
        raise BadRequest(msg, code="generic_field")
    if status is None:
        status = base.answered_status(answered)
    if answered != (status == "answered"):
        msg = f"Expected answered and status to agree, found {answered} and {status!r}."
        raise BadRequest(msg, code="generic_field")
    return answered, status


def _typed(data: dict, name: str, kind: type):
    """Field ``name`` if present and of JSON type ``kind``, else BadRequest."""
    value = data.get(name)
    if value is None:
        return None
    # bool is an int subclass, and true is not a number of seconds.
    wrong_bool = kind is int and isinstance(value, bool)
    if not isinstance(value, kind) or wrong_bool:
        msg = (
            f"Expected generic field {name!r} as {kind.__name__}, "
            f"found {type(value).__name__}."
        )
        raise BadRequest(msg, code="generic_field")
    return value


def _time(data: dict, name: str) -> dt.datetime | None:
    value = data.get(name)
    return None if value is None else parse_iso(value, name)


def _signed_at(req: WebhookRequest) -> dt.datetime | None:
    stamp = req.header(TIMESTAMP_HEADER)
    if stamp is None or not stamp.isdigit():
        return None
    return dt.datetime.fromtimestamp(int(stamp), dt.UTC)


def _is_url(value: str | None) -> bool:
    return bool(value) and value.startswith(("https://", "http://"))
