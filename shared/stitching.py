"""Stitching: which visit produced a call, and how sure that is. No I/O here.

``stitch`` takes one completed call, the site, the dialled number's document,
the holds of that number from the hold log (each with its session and visitor
documents) and the caller's record, and returns the ``calls`` row, the reason,
the confidence, the candidates and the caller's record after this call.
``shared.stitch_store`` does the reading and writing around it.

The rules, in order (docs/stitching.md has the confidence table):

1. The site's default number, a number not in the site's pool, or a call
   without a number: unattributed (``default_number``, ``unknown_number``).
2. A static number stands for its channel: ``static_number``, confidence 1.
3. A dynamic number: every hold whose lease, plus the site's cool-down, covers
   the call's start is a candidate. A hold live at the start scores 0.97; one
   that had ended scores 0.9 falling linearly to 0.5 at the end of the
   cool-down. The best candidate wins; when holds of several visitors cover the
   start (a shared overflow number) the confidence is the winner's score times
   its share of the visitors' scores, so k equal candidates give about 1/k.
4. No candidate: ``no_hold``.
5. A caller whose earlier attributed call came in on this same number is that
   earlier visitor again, whoever holds the number now (a number noted down, a
   call back after a dropped line): ``returning_caller``, the earlier call's
   confidence capped at 0.9, with that session's hold when it is still in the
   hold log.
6. A call left unattributed by 1, 3 or 4 from a caller whose earlier call was
   attributed keeps that call's visitor and touches: ``repeat_caller``, at most
   0.5 and never more than the earlier call's own confidence.

A caller seen before (by the hash of their number) is marked
``first_time_caller = False`` and linked to the earlier call's visitor, whatever
the rule that attributed this call.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from shared import phones, touches
from shared.errors import BadRequest
from shared.pool_admin import static_channel_touch
from shared.sites import Site

# Reasons. The first five attribute the call; the last three leave it open.
LIVE_HOLD = "live_hold"
COOLDOWN = "cooldown"
SHARED_NUMBER = "shared_number"
STATIC_NUMBER = "static_number"
REPEAT_CALLER = "repeat_caller"
RETURNING_CALLER = "returning_caller"
DEFAULT_NUMBER = "default_number"
UNKNOWN_NUMBER = "unknown_number"
NO_HOLD = "no_hold"
# Reasons whose call becomes the caller's latest attributed call; a
# repeat_caller row only repeats an earlier one.
ATTRIBUTED = (LIVE_HOLD, COOLDOWN, SHARED_NUMBER, STATIC_NUMBER, RETURNING_CALLER)

# A static number is printed for one channel only: the call is that channel's.
STATIC_SCORE = 1.0
# The page showed the number when the phone rang; the rest are callers who
# noted the number earlier and dial it while someone else holds it.
LIVE_SCORE = 0.97
# A call after the page closed is most likely that visitor's the sooner it
# comes; at the end of the cool-down it is a coin toss at best.
COOLDOWN_START_SCORE = 0.9
COOLDOWN_END_SCORE = 0.5
# An earlier call's attribution says who the caller once was, not what brought
# them to call this time.
REPEAT_MAX_SCORE = 0.5
# The same caller on the same tracking number again: the number reached them
# through that visitor's page, so another holder's live hold matters less.
RETURNING_MAX_SCORE = 0.9
# Provider clocks run a few seconds apart from ours: a hold that starts up to
# 5 s after the call's reported start may still be the one the caller saw.
CLOCK_SKEW_S = 5
# Holds read per call, newest first: enough for a shared overflow number's
# concurrent sharers within a lease plus a cool-down.
HOLDS_LIMIT = 10
# A repeat caller is recognised for as long as the calls table keeps calls.
CALLER_RETENTION = dt.timedelta(days=760)

ANALYTICS_IDS = ("ga_client_id", "ga_session_id", "ym_client_id", "fbp", "fbc")
_TOUCH_FIELDS = ("source", "medium") + touches.TOUCH_KEYS


@dataclass(frozen=True)
class Call:
    """A completed call as the ``call.completed`` message describes it.

    The raw caller number is not kept here: it stays in the message and goes
    only to the ``calls-stitched`` message, for the CRM.
    """

    call_id: str
    site_id: str
    started_at: dt.datetime
    tracking_number: str | None = None
    provider: str | None = None
    provider_call_id: str | None = None
    caller_hash: str | None = None
    caller_mask: str | None = None
    caller_hash_digits: str | None = None
    answered: bool | None = None
    ring_s: int | None = None
    talk_s: int | None = None
    status: str | None = None
    recording_ref: str | None = None
    raw_ref: str | None = None
    completed_at: dt.datetime | None = None


@dataclass(frozen=True)
class Held:
    """One hold of the dialled number, with its session and visitor documents
    (None when they have expired)."""

    hold_id: str
    hold: dict
    session: dict | None = None
    visitor: dict | None = None


@dataclass(frozen=True)
class Candidate:
    held: Held
    score: float
    reason: str  # live_hold or cooldown

    @property
    def visitor_id(self) -> str | None:
        return self.held.hold.get("visitor_id")

    def to_record(self) -> dict:
        return {
            "session_id": self.held.hold.get("session_id"),
            "visitor_id": self.visitor_id,
            "hold_id": self.held.hold_id,
            "score": self.score,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Stitched:
    """What ``stitch`` decided: the row to write and the caller's new record.

    ``caller`` is None when the caller's number is withheld.
    """

    row: dict
    reason: str
    confidence: float
    candidates: tuple[Candidate, ...]
    caller: dict | None


@dataclass(frozen=True)
class _Attribution:
    reason: str
    confidence: float
    own_touch: dict | None = None
    first_touch: dict | None = None
    last_non_direct_touch: dict | None = None
    session: dict | None = None
    session_id: str | None = None
    visitor_id: str | None = None
    hold_id: str | None = None


# -- parsing ------------------------------------------------------------------


def _text(body: dict, name: str, required: bool = False) -> str | None:
    value = body.get(name)
    if value is None or value == "":
        if required:
            raise BadRequest(f"Expected {name} in the call, found none.", code="call")
        return None
    if not isinstance(value, str):
        kind = type(value).__name__
        raise BadRequest(f"Expected {name} to be text, found {kind}.", code="call")
    return value


def _digits_hash(body: dict) -> str | None:
    """Meta's hash of the caller, from the raw number the message carries.

    Only a number that matches the message's own ``caller_hash`` counts, so a
    row never pairs the hashes of two different numbers.
    """
    caller, hashed = body.get("caller"), body.get("caller_hash")
    if not isinstance(caller, str) or not isinstance(hashed, str):
        return None
    if phones.phone_hash(caller) != hashed:
        return None
    return phones.digits_hash(caller)


def _time(body: dict, name: str, required: bool = False) -> dt.datetime | None:
    text = _text(body, name, required)
    if text is None:
        return None
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        msg = f"Expected {name} as an ISO-8601 time, found {text[:40]!r}."
        raise BadRequest(msg, code="call") from None
    if value.tzinfo is None:
        msg = f"Expected {name} with a UTC offset, found {text[:40]!r}."
        raise BadRequest(msg, code="call")
    return value.astimezone(dt.UTC)


def _count(body: dict, name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        msg = f"Expected {name} as whole seconds, found {value!r:.40}."
        raise BadRequest(msg, code="call")
    return value


def parse_call(body: dict) -> Call:
    """Read a ``call.completed`` body; BadRequest names the first bad field.

    Lenient by design: fields it does not know are ignored, so the webhook can
    add fields without stitching failing.
    """
    answered = body.get("answered")
    if answered is not None and not isinstance(answered, bool):
        msg = f"Expected answered to be true or false, found {answered!r:.40}."
        raise BadRequest(msg, code="call")
    return Call(
        call_id=_text(body, "call_id", required=True),
        site_id=_text(body, "site_id", required=True),
        started_at=_time(body, "started_at", required=True),
        tracking_number=_text(body, "tracking_number"),
        provider=_text(body, "provider"),
        provider_call_id=_text(body, "provider_call_id"),
        caller_hash=_text(body, "caller_hash"),
        caller_mask=_text(body, "caller_mask"),
        caller_hash_digits=_digits_hash(body),
        answered=answered,
        ring_s=_count(body, "ring_s"),
        talk_s=_count(body, "talk_s"),
        status=_text(body, "status"),
        recording_ref=_text(body, "recording_ref"),
        raw_ref=_text(body, "raw_ref"),
        completed_at=_time(body, "completed_at"),
    )


# -- the decision -------------------------------------------------------------


def number_kind(call: Call, site: Site, number: dict | None) -> str:
    """dynamic, static, default or unknown (not in this site's pool)."""
    if not call.tracking_number:
        return "unknown"
    if call.tracking_number == site.default_number:
        return "default"
    if number is None or number.get("site_id") != call.site_id:
        return "unknown"
    kind = number.get("kind")
    return kind if kind in ("dynamic", "static") else "unknown"


def rank(call: Call, site: Site, holds: list[Held]) -> list[Candidate]:
    """Holds whose lease plus cool-down covers the call's start, best first.

    Ties go to the hold that started last: of two sharers of a number, the
    later arrival has seen it more recently.
    """
    skew = dt.timedelta(seconds=CLOCK_SKEW_S)
    cooldown = dt.timedelta(seconds=site.cooldown_s)
    found = []
    for held in holds:
        hold = held.hold
        if hold.get("site_id") != call.site_id:
            continue
        if hold.get("number") != call.tracking_number:
            continue
        start, end = hold["from"], hold["until"]
        if start - skew > call.started_at:
            continue

        if call.started_at <= end:
            found.append(Candidate(held, LIVE_SCORE, LIVE_HOLD))
        elif call.started_at <= end + cooldown:
            gap = (call.started_at - end) / cooldown
            drop = COOLDOWN_START_SCORE - COOLDOWN_END_SCORE
            score = round(COOLDOWN_START_SCORE - drop * gap, 3)
            found.append(Candidate(held, score, COOLDOWN))
    found.sort(key=lambda c: (-c.score, -c.held.hold["from"].timestamp(),
                              c.held.hold_id))
    return found


def confidence_of(candidates: list[Candidate]) -> float:
    """The winner's score times its share of the best score of each visitor.

    Several holds of one visitor (a sticky number taken back, a new page of
    the same session) are one person and do not dilute the confidence.
    """
    if not candidates:
        return 0.0
    best: dict[str | None, float] = {}
    for candidate in candidates:
        key = candidate.visitor_id
        best[key] = max(best.get(key, 0.0), candidate.score)
    winner = candidates[0].score
    return round(winner * winner / sum(best.values()), 3)


def _session_attribution(reason: str, confidence: float, held: Held) -> _Attribution:
    session = held.session or {}
    visitor = held.visitor or {}
    own = session.get("touch") or session.get("last_touch") or visitor.get(
        "last_touch")
    first = session.get("first_touch") or visitor.get("first_touch") or own
    last_non_direct = (session.get("last_non_direct_touch")
                       or visitor.get("last_non_direct_touch"))
    if last_non_direct is None and own and not touches.is_direct(own):
        last_non_direct = own
    return _Attribution(
        reason=reason,
        confidence=confidence,
        own_touch=own,
        first_touch=first,
        last_non_direct_touch=last_non_direct,
        session=held.session,
        session_id=held.hold.get("session_id"),
        visitor_id=held.hold.get("visitor_id"),
        hold_id=held.hold_id,
    )


def _earlier_attributed(call: Call, caller: dict | None) -> dict | None:
    last = (caller or {}).get("last_attributed")
    if not last or last.get("call_id") == call.call_id:
        return None
    return last if last["at"] <= call.started_at else None


def _unattributed(reason: str, call: Call, caller: dict | None) -> _Attribution:
    earlier = _earlier_attributed(call, caller)
    if earlier is None:
        return _Attribution(reason=reason, confidence=0.0)
    return _Attribution(
        reason=REPEAT_CALLER,
        confidence=min(REPEAT_MAX_SCORE, earlier.get("confidence") or 0.0),
        own_touch=earlier.get("last_touch"),
        first_touch=earlier.get("first_touch"),
        last_non_direct_touch=earlier.get("last_non_direct_touch"),
        visitor_id=earlier.get("visitor_id"),
    )


def _returning(call: Call, caller: dict | None, holds: list[Held]):
    """The earlier visitor, when the caller's earlier attributed call came in
    on the number dialled now; None otherwise."""
    earlier = _earlier_attributed(call, caller)
    if not earlier or earlier.get("number") != call.tracking_number:
        return None

    confidence = min(RETURNING_MAX_SCORE, earlier.get("confidence") or 0.0)
    for held in holds:
        if held.hold.get("session_id") == earlier.get("session_id"):
            return _session_attribution(RETURNING_CALLER, confidence, held)
    return _Attribution(
        reason=RETURNING_CALLER,
        confidence=confidence,
        own_touch=earlier.get("last_touch"),
        first_touch=earlier.get("first_touch"),
        last_non_direct_touch=earlier.get("last_non_direct_touch"),
        session_id=earlier.get("session_id"),
        visitor_id=earlier.get("visitor_id"),
    )


def _attribute(call, site, number, kind, holds, caller):
    if kind == "default":
        return _unattributed(DEFAULT_NUMBER, call, caller), []
    if kind == "unknown":
        return _unattributed(UNKNOWN_NUMBER, call, caller), []
    if kind == "static":
        touch = static_channel_touch(number)
        non_direct = touch if touch and not touches.is_direct(touch) else None
        attribution = _Attribution(
            reason=STATIC_NUMBER, confidence=STATIC_SCORE, own_touch=touch,
            first_touch=touch, last_non_direct_touch=non_direct,
        )
        return attribution, []

    candidates = rank(call, site, holds)
    returning = _returning(call, caller, holds)
    if returning is not None:
        return returning, candidates
    if not candidates:
        return _unattributed(NO_HOLD, call, caller), []
    visitors = {c.visitor_id for c in candidates}
    reason = SHARED_NUMBER if len(visitors) > 1 else candidates[0].reason
    attribution = _session_attribution(reason, confidence_of(candidates),
                                       candidates[0].held)
    return attribution, candidates


def repeat_of(call: Call, caller: dict | None) -> tuple[bool | None, str | None]:
    """(first_time_caller, the earlier call's visitor) for this call."""
    if not call.caller_hash:
        return None, None
    if not caller or caller.get("first_call_id") == call.call_id:
        return True, None
    if call.started_at < caller["first_seen_at"]:
        # Delivered out of order: this call is older than any counted so far.
        return True, None
    earlier = _earlier_attributed(call, caller)
    return False, earlier.get("visitor_id") if earlier else None


def stitch(call: Call, site: Site, number: dict | None, holds: list[Held],
           caller: dict | None, now: dt.datetime) -> Stitched:
    """Attribute one call. Pure: the same inputs give the same row."""
    kind = number_kind(call, site, number)
    attribution, candidates = _attribute(call, site, number, kind, holds, caller)
    first_time, earlier_visitor = repeat_of(call, caller)
    row = _row(call, number, kind, attribution, candidates, first_time,
               earlier_visitor, now)
    return Stitched(
        row=row,
        reason=attribution.reason,
        confidence=attribution.confidence,
        candidates=tuple(candidates),
        caller=caller_after(caller, call, attribution, now),
    )


# -- the row ------------------------------------------------------------------


def iso(value):
    return value.isoformat() if isinstance(value, dt.datetime) else value


def touch_record(touch: dict | None) -> dict | None:
    """A touch as the warehouse's touch RECORD: its keys plus source/medium."""
    if not touch:
        return None
    source, medium = touches.channel(touch)
    record = {key: iso(touch.get(key)) for key in touches.TOUCH_KEYS}
    record.update(source=source, medium=medium)
    return {key: record[key] for key in _TOUCH_FIELDS}


def _row(call, number, kind, attribution, candidates, first_time, earlier_visitor,
         now) -> dict:
    own = attribution.own_touch
    non_direct = attribution.last_non_direct_touch
    direct_return = bool(own) and touches.is_direct(own) and bool(non_direct)
    credited = non_direct if direct_return else own
    source, medium = touches.channel(own) if own else (None, None)
    session = attribution.session or {}
    ids = session.get("ids") or {}
    consent = session.get("consent")
    return {
        "row_id": f"{call.call_id}:1",
        "call_id": call.call_id,
        "version": 1,
        "recorded_at": iso(now),
        "site_id": call.site_id,
        "provider": call.provider,
        "provider_call_id": call.provider_call_id,
        "started_at": iso(call.started_at),
        "completed_at": iso(call.completed_at),
        "number": call.tracking_number,
        "number_kind": kind,
        "shared_number": bool(number and number.get("overflow")),
        "caller_hash": call.caller_hash,
        "caller_mask": call.caller_mask,
        "caller_hash_digits": call.caller_hash_digits,
        "answered": call.answered,
        "status": call.status,
        "ring_s": call.ring_s,
        "talk_s": call.talk_s,
        "recording_ref": call.recording_ref,
        "raw_ref": call.raw_ref,
        "reason": attribution.reason,
        "confidence": attribution.confidence,
        "session_id": attribution.session_id,
        "visitor_id": attribution.visitor_id,
        "hold_id": attribution.hold_id,
        "candidates": [c.to_record() for c in candidates],
        "first_time_caller": first_time,
        "repeat_of_visitor": earlier_visitor,
        "direct_return": direct_return,
        "source": source,
        "medium": medium,
        "campaign": (own or {}).get("utm_campaign"),
        "content": (own or {}).get("utm_content"),
        "term": (own or {}).get("utm_term"),
        "click_ids": (
            {key: credited.get(key) for key in touches.CLICK_IDS} if credited else None
        ),
        "analytics_ids": (
            {key: ids.get(key) for key in ANALYTICS_IDS} if ids else None
        ),
        "consent_analytics": _granted(consent, "analytics"),
        "consent_ads": _granted(consent, "ads"),
        "landing_page": session.get("page_url") or (own or {}).get("landing_page"),
        "first_touch": touch_record(attribution.first_touch),
        "last_touch": touch_record(own),
        "last_non_direct_touch": touch_record(non_direct),
        "stitched_at": iso(now),
    }


def _granted(consent: dict | None, kind: str) -> bool | None:
    """True or False as the session recorded it; None without a session."""
    return None if consent is None else consent.get(kind) is True


def caller_after(caller: dict | None, call: Call, attribution: _Attribution,
                 now: dt.datetime) -> dict | None:
    """The ``callers`` document once this call is counted (None if withheld).

    Calls may be stitched out of order: the first and last fields move only
    when this call is earlier or later than the ones they hold.
    """
    if not call.caller_hash:
        return None
    doc = dict(caller or {
        "site_id": call.site_id,
        "caller_hash": call.caller_hash,
        "first_seen_at": call.started_at,
        "first_call_id": call.call_id,
        "last_call_at": call.started_at,
        "last_call_id": call.call_id,
        "calls": 0,
        "last_attributed": None,
    })
    doc["calls"] += 1
    if call.started_at < doc["first_seen_at"]:
        doc.update(first_seen_at=call.started_at, first_call_id=call.call_id)
    if call.started_at >= doc["last_call_at"]:
        doc.update(last_call_at=call.started_at, last_call_id=call.call_id)

    latest = doc.get("last_attributed")
    if attribution.reason in ATTRIBUTED and (
            latest is None or call.started_at >= latest["at"]):
        doc["last_attributed"] = {
            "call_id": call.call_id,
            "at": call.started_at,
            "reason": attribution.reason,
            "confidence": attribution.confidence,
            "visitor_id": attribution.visitor_id,
            "session_id": attribution.session_id,
            "number": call.tracking_number,
            "first_touch": attribution.first_touch,
            "last_touch": attribution.own_touch,
            "last_non_direct_touch": attribution.last_non_direct_touch,
        }
    doc["updated_at"] = now
    doc["expires_at"] = max(now, doc["last_call_at"]) + CALLER_RETENTION
    return doc


# -- later versions and the outgoing message ----------------------------------


def with_recording(row: dict, recording_ref: str, now: dt.datetime) -> dict:
    """The next version of a stitched row: same attribution, a new recording."""
    version = row["version"] + 1
    return {
        **row,
        "row_id": f"{row['call_id']}:{version}",
        "version": version,
        "recording_ref": recording_ref,
        "recorded_at": iso(now),
    }


MESSAGE_SCHEMA = 1
STITCHED = "call.stitched"
UPDATED = "call.updated"


def message(row: dict, caller: str | None) -> dict:
    """The ``calls-stitched`` body: the row (without its insert id) plus the
    raw caller number, which only the CRM hand-off may read."""
    body = {key: value for key, value in row.items() if key != "row_id"}
    body["schema"] = MESSAGE_SCHEMA
    body["caller"] = caller
    return body
