"""The canonical call event every provider webhook is translated into.

One provider request becomes zero or more ``CallEvent`` values, each reporting
one stage of one call: ``start`` (the call reached the tracking number),
``answer`` (someone picked up), ``end`` (the outcome is known) or
``recording`` (a recording is available). ``shared.callmerge`` folds a call's
events into one record whatever order they arrive in.

``caller`` is the raw caller number: it may go to the CRM hand-off but never
into a log line or an error message. The ``repr`` of an event masks it.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, fields

from shared.errors import BadRequest
from shared.phones import mask

PROVIDERS = ("twilio", "mango", "zadarma", "uis", "generic")
KINDS = ("start", "answer", "end", "recording")
# The outcome words of an ended call; the other two are stages of a live call.
FINAL_STATUSES = ("answered", "no_answer", "busy", "failed", "canceled")
LIVE_STATUSES = ("ringing", "in_progress")
STATUSES = FINAL_STATUSES + LIVE_STATUSES

_TIMES = ("started_at", "occurred_at")
_COUNTS = ("ring_s", "talk_s", "sequence")
# An id or a recording URL never holds a control character; CR/LF in one
# would go on, through call-events, into the CRMs' requests and the
# recording function's fetch, and split a header or a line there.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_PLAIN = ("provider_call_id", "recording_ref")


@dataclass(frozen=True, repr=False)
class CallEvent:
    """One stage of one provider call, with every time in UTC.

    ``occurred_at`` is when the provider says the event happened or, for events
    that carry no time (a Zadarma recording, a Twilio recording callback), when
    the request was received. ``status`` is None where the event says nothing
    about the call's state (recordings). ``sequence`` is the provider's own
    ordering hint where it has one (Twilio SequenceNumber, Mango seq).
    """

    provider: str
    provider_call_id: str
    event_kind: str
    occurred_at: dt.datetime
    tracking_number: str | None = None
    caller: str | None = None
    started_at: dt.datetime | None = None
    answered: bool | None = None
    ring_s: int | None = None
    talk_s: int | None = None
    status: str | None = None
    recording_ref: str | None = None
    sequence: int | None = None

    def __post_init__(self) -> None:
        _check_choice("provider", self.provider, PROVIDERS)
        _check_choice("event_kind", self.event_kind, KINDS)
        if self.status is not None:
            _check_choice("status", self.status, STATUSES)

        if not isinstance(self.provider_call_id, str) or not self.provider_call_id:
            msg = (
                "Expected a non-empty provider call id, "
                f"found {self.provider_call_id!r}."
            )
            raise BadRequest(msg, code="call_event")
        for name in _PLAIN:
            value = getattr(self, name)
            if isinstance(value, str) and _CONTROL.search(value):
                found = f"{value!r:.60}"
                msg = f"Expected {name} without control characters, found {found}."
                raise BadRequest(msg, code="call_event")

        for name in _TIMES:
            value = getattr(self, name)
            if value is not None or name == "occurred_at":
                object.__setattr__(self, name, utc(value, name))
        for name in _COUNTS:
            _check_count(name, getattr(self, name))
        if self.answered is not None and not isinstance(self.answered, bool):
            found = self.answered
            msg = f"Expected answered to be true, false or absent, found {found!r}."
            raise BadRequest(msg, code="call_event")

    def __repr__(self) -> str:
        parts = []
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name == "caller" and value is not None:
                value = mask(value)
            parts.append(f"{item.name}={value!r}")
        return f"CallEvent({', '.join(parts)})"

    def to_dict(self) -> dict:
        """A JSON-ready dict; times are ISO-8601 strings in UTC.

        The dict carries the raw caller number: publish it only where the raw
        number is meant to go, and never log it.
        """
        out = {}
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, dt.datetime):
                value = value.isoformat()
            out[item.name] = value
        return out

    @classmethod
    def from_dict(cls, data: dict) -> CallEvent:
        """The inverse of ``to_dict``; raises BadRequest on a malformed dict."""
        if not isinstance(data, dict):
            msg = f"Expected a call event object, found {type(data).__name__}."
            raise BadRequest(msg, code="call_event")

        known = {item.name for item in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            msg = f"Expected only call event fields, found {', '.join(unknown)}."
            raise BadRequest(msg, code="call_event")

        values = dict(data)
        for name in _TIMES:
            if values.get(name) is not None:
                values[name] = parse_iso(values[name], name)
        try:
            return cls(**values)
        except TypeError as exc:
            msg = f"Expected every required call event field, found {exc}."
            raise BadRequest(msg, code="call_event") from None


def utc(value: dt.datetime, name: str = "time") -> dt.datetime:
    """``value`` converted to UTC; a naive datetime is refused, not guessed."""
    if not isinstance(value, dt.datetime):
        msg = f"Expected {name} to be a datetime, found {type(value).__name__}."
        raise BadRequest(msg, code="call_event")
    if value.tzinfo is None or value.utcoffset() is None:
        msg = f"Expected {name} to carry a time zone, found naive {value.isoformat()}."
        raise BadRequest(msg, code="call_event")
    return value.astimezone(dt.UTC)


def parse_iso(text: str, name: str = "time") -> dt.datetime:
    """An ISO-8601 string with an offset (or ``Z``) as a UTC datetime."""
    if not isinstance(text, str):
        msg = f"Expected {name} as an ISO-8601 string, found {type(text).__name__}."
        raise BadRequest(msg, code="time")
    try:
        # Python 3.11 reads "Z" as well as "+00:00".
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        msg = f"Expected {name} as an ISO-8601 time, found {text[:40]!r}."
        raise BadRequest(msg, code="time") from None
    if value.tzinfo is None:
        msg = f"Expected {name} with a UTC offset, found {text[:40]!r}."
        raise BadRequest(msg, code="time")
    return value.astimezone(dt.UTC)


def _check_choice(name: str, value, choices: tuple[str, ...]) -> None:
    if value not in choices:
        msg = f"Expected {name} to be one of {', '.join(choices)}, found {value!r}."
        raise BadRequest(msg, code="call_event")


def _check_count(name: str, value) -> None:
    if value is None:
        return
    # bool is an int subclass; True seconds is a bug, not a duration.
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        msg = f"Expected {name} to be a whole number >= 0, found {value!r}."
        raise BadRequest(msg, code="call_event")
