"""The messages a call record sends to the ``call-events`` topic.

Two message types, told apart by the ``type`` attribute:

- ``call.completed``: once per call, when its first end event is recorded.
  It carries the whole outcome and the first recording, if one is known.
- ``call.recording``: a recording that arrived after the completed message went
  out (or a call's second and later recordings), one message per recording.

The bodies are built from the stored call record (``shared.callmerge``) plus
the raw caller number of the request in hand, which the record never holds:
the completed message is the one place besides the CRM hand-off that carries
it. Consumers must treat delivery as at least once and key on
(``provider``, ``provider_call_id``), or on ``call_id``.

``validate`` checks a body against the schema; the builders call it, so a
message that breaks the schema is never published.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass

from shared.callevent import FINAL_STATUSES, PROVIDERS
from shared.phones import phone_hash

COMPLETED = "call.completed"
RECORDING = "call.recording"

COMPLETED_FIELDS = (
    "call_id", "site_id", "provider", "provider_call_id", "tracking_number",
    "caller", "caller_hash", "caller_mask", "started_at", "answered", "ring_s",
    "talk_s", "status", "recording_ref", "raw_ref", "completed_at",
)
RECORDING_FIELDS = (
    "call_id", "site_id", "provider", "provider_call_id", "recording_ref",
)

_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Outgoing:
    """One message to publish and what to mark once Pub/Sub has it.

    ``mark`` is the ``callmerge.mark_published`` kind ("completed" or
    "recording") and ``refs`` the recording refs the message carries.
    """

    mark: str
    type: str
    body: dict
    refs: tuple[str, ...] = ()


def outbox(
    call_id: str,
    site_id: str,
    record: dict | None,
    callers: Iterable[str | None],
    raw_ref: str,
) -> list[Outgoing]:
    """Every message the record still owes, empty when nothing is pending.

    ``callers`` are the raw caller numbers (E.164) of the events in hand; the
    first one that hashes to the record's ``caller_hash`` goes in the completed
    message, and none does when they disagree with the record.
    """
    if not record or not record.get("completed"):
        return []

    published = set(record.get("published_recordings") or [])
    pending = [r for r in record.get("recording_refs") or [] if r not in published]
    messages = []
    if not record.get("completed_published"):
        first = pending.pop(0) if pending else None
        caller = _matching_caller(callers, record.get("caller_hash"))
        body = completed(call_id, site_id, record, caller, raw_ref, first)
        messages.append(Outgoing("completed", COMPLETED, body, _refs(first)))

    for ref in pending:
        body = recording(call_id, site_id, record, ref)
        messages.append(Outgoing("recording", RECORDING, body, (ref,)))
    return messages


def completed(
    call_id: str,
    site_id: str,
    record: dict,
    caller: str | None,
    raw_ref: str,
    recording_ref: str | None,
) -> dict:
    """The ``call.completed`` body of a completed record."""
    body = {
        "call_id": call_id,
        "site_id": site_id,
        "provider": record["provider"],
        "provider_call_id": record["provider_call_id"],
        "tracking_number": record["tracking_number"],
        "caller": caller,
        "caller_hash": record["caller_hash"],
        "caller_mask": record["caller_mask"],
        # A call whose start no event reported began no later than its
        # earliest event.
        "started_at": record["started_at"] or record["first_event_at"],
        "answered": record["answered"],
        "ring_s": record["ring_s"],
        "talk_s": record["talk_s"],
        "status": record["status"],
        "recording_ref": recording_ref,
        "raw_ref": raw_ref,
        "completed_at": record["completed_at"],
    }
    validate(COMPLETED, body)
    return body


def recording(call_id: str, site_id: str, record: dict, recording_ref: str) -> dict:
    """The ``call.recording`` body announcing one recording of a call."""
    body = {
        "call_id": call_id,
        "site_id": site_id,
        "provider": record["provider"],
        "provider_call_id": record["provider_call_id"],
        "recording_ref": recording_ref,
    }
    validate(RECORDING, body)
    return body


def validate(kind: str, body: dict) -> None:
    """Raise ValueError when ``body`` is not a valid message of type ``kind``."""
    expected = {COMPLETED: COMPLETED_FIELDS, RECORDING: RECORDING_FIELDS}.get(kind)
    if expected is None:
        msg = f"Expected message type {COMPLETED} or {RECORDING}, found {kind!r}."
        raise ValueError(msg)
    if not isinstance(body, dict) or set(body) != set(expected):
        found = sorted(body) if isinstance(body, dict) else type(body).__name__
        msg = f"Expected {kind} fields {', '.join(expected)}, found {found}."
        raise ValueError(msg)

    for name in ("call_id", "site_id", "provider_call_id"):
        _check(body, name, _is_text(body[name]), "non-empty text")
    _check(body, "provider", body["provider"] in PROVIDERS, "a known provider")
    if kind == RECORDING:
        _check(body, "recording_ref", _is_text(body["recording_ref"]), "text")
        return

    _check(body, "raw_ref", _is_text(body["raw_ref"]), "non-empty text")
    _check(body, "tracking_number", _optional(body["tracking_number"], _is_e164),
           "E.164 or null")
    _check(body, "caller", _optional(body["caller"], _is_e164), "E.164 or null")
    _check(body, "caller_hash", _optional(body["caller_hash"], _is_sha256),
           "SHA-256 hex or null")
    _check(body, "caller_mask", _optional(body["caller_mask"], _is_text),
           "text or null")
    if body["caller"] is not None:
        same = phone_hash(body["caller"]) == body["caller_hash"]
        _check(body, "caller", same, "the number caller_hash is the hash of")
    for name in ("started_at", "completed_at"):
        _check(body, name, _is_utc_iso(body[name]), "an ISO-8601 UTC time")
    _check(body, "answered", isinstance(body["answered"], bool), "true or false")
    for name in ("ring_s", "talk_s"):
        _check(body, name, _optional(body[name], _is_count), "whole seconds or null")
    _check(body, "status", body["status"] in FINAL_STATUSES, "a final call status")
    _check(body, "recording_ref", _optional(body["recording_ref"], _is_text),
           "text or null")


def _matching_caller(callers: Iterable[str | None], caller_hash) -> str | None:
    if caller_hash is None:
        return None
    return next((c for c in callers if c and phone_hash(c) == caller_hash), None)


def _refs(ref: str | None) -> tuple[str, ...]:
    return () if ref is None else (ref,)


def _check(body: dict, name: str, ok: bool, expected: str) -> None:
    if not ok:
        # The caller field is personal data: name its type, never its value.
        value = body[name]
        found = type(value).__name__ if name == "caller" else repr(value)[:60]
        raise ValueError(f"Expected {name} to be {expected}, found {found}.")


def _optional(value, test) -> bool:
    return value is None or test(value)


def _is_text(value) -> bool:
    return isinstance(value, str) and value != ""


def _is_e164(value) -> bool:
    return isinstance(value, str) and bool(_E164.match(value))


def _is_sha256(value) -> bool:
    return isinstance(value, str) and bool(_SHA256.match(value))


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_utc_iso(value) -> bool:
    if not isinstance(value, str):
        return False
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return False
    return parsed.utcoffset() == dt.timedelta(0)
