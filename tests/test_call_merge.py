"""Merging a call's events into one record: dedup, any order, publish once."""

from __future__ import annotations

import datetime as dt
import itertools
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import signers
from shared import callmerge
from shared.callevent import CallEvent
from shared.errors import BadRequest
from shared.phones import phone_hash
from shared.providers import WebhookRequest, zadarma

CALLER = "+79161234567"
TRACKING = "+74951234567"
T0 = dt.datetime(2026, 3, 12, 7, 14, 50, tzinfo=dt.UTC)
ZADARMA = Path(__file__).parent / "data" / "webhooks" / "zadarma"


def event(kind: str, **overrides) -> CallEvent:
    """A generic-provider event of call c-1 at stage ``kind``, with sane defaults."""
    defaults = {
        "start": {"status": "ringing", "started_at": T0, "occurred_at": T0},
        "answer": {
            "status": "in_progress",
            "answered": True,
            "ring_s": 12,
            "occurred_at": T0 + dt.timedelta(seconds=12),
        },
        "end": {
            "status": "answered",
            "answered": True,
            "ring_s": 12,
            "talk_s": 40,
            "started_at": T0,
            "occurred_at": T0 + dt.timedelta(seconds=52),
        },
        "recording": {
            "recording_ref": "https://pbx.example.ru/rec/c-1.mp3",
            "occurred_at": T0 + dt.timedelta(seconds=60),
        },
    }[kind]
    values = {
        "provider": "generic",
        "provider_call_id": "c-1",
        "event_kind": kind,
        "tracking_number": TRACKING if kind != "recording" else None,
        "caller": CALLER if kind != "recording" else None,
    }
    return CallEvent(**(values | defaults | overrides))


def deliver(events) -> tuple[dict, int, list[str]]:
    """Merge ``events`` as the webhook function does, publishing what it is told.

    Returns the final record, the number of completed messages and the refs
    sent in recording messages.
    """
    record, completed, recordings = None, 0, []
    for item in events:
        result = callmerge.merge(record, item)
        record = result.record
        if result.publish_completed:
            completed += 1
            refs = record["recording_refs"]
            record = callmerge.mark_published(record, "completed", refs)
        if result.publish_recording:
            recordings.extend(result.recordings_to_publish)
            refs = result.recordings_to_publish
            record = callmerge.mark_published(record, "recording", refs)
    return record, completed, recordings


def test_first_event_creates_the_record_with_hash_and_mask_only():
    """A start opens the record; the caller is stored as hash and mask."""
    result = callmerge.merge(None, event("start"))

    key = callmerge.event_key(event("start"))
    assert result.record == {
        "schema": 1,
        "provider": "generic",
        "provider_call_id": "c-1",
        "tracking_number": TRACKING,
        "caller_hash": phone_hash(CALLER),
        "caller_mask": "+7********67",
        "started_at": "2026-03-12T07:14:50+00:00",
        "first_event_at": "2026-03-12T07:14:50+00:00",
        "last_event_at": "2026-03-12T07:14:50+00:00",
        "answered": None,
        "ring_s": None,
        "talk_s": None,
        "status": "ringing",
        "recording_refs": [],
        "completed": False,
        "completed_at": None,
        "completed_published": False,
        "published_recordings": [],
        "seen": [key],
    }
    assert (result.changed, result.publish_completed, result.publish_recording) == (
        True,
        False,
        False,
    )


def test_record_never_contains_the_raw_caller_number():
    """No field, nested or not, holds the caller's digits."""
    record, _, _ = deliver([event("start"), event("answer"), event("end")])

    text = json.dumps(record)
    assert "9161234567" not in text
    assert record["caller_hash"] == phone_hash(CALLER)


def test_repeated_event_is_a_no_op():
    """The same event twice leaves the record as the first merge made it."""
    first = callmerge.merge(None, event("answer"))

    again = callmerge.merge(first.record, event("answer"))

    assert again.changed is False
    assert again.record == first.record


def test_repeat_with_another_receipt_time_is_still_a_repeat():
    """A retried event dated by receipt time is recognised all the same."""
    first = callmerge.merge(None, event("recording"))
    later = event("recording", occurred_at=T0 + dt.timedelta(minutes=5))

    assert callmerge.merge(first.record, later).changed is False


def test_end_publishes_completed_once():
    """The first end asks for the completed message; after the mark, no more."""
    opened = callmerge.merge(None, event("start")).record
    ended = callmerge.merge(opened, event("end"))
    marked = callmerge.mark_published(ended.record, "completed")

    repeat = callmerge.merge(marked, event("end"))

    assert ended.publish_completed is True
    assert repeat.publish_completed is False


def test_unmarked_completion_is_asked_for_again_on_a_retry():
    """If the publish failed, the provider's retry of the end publishes again."""
    ended = callmerge.merge(None, event("end"))

    retry = callmerge.merge(ended.record, event("end"))

    assert (retry.changed, retry.publish_completed) == (False, True)


def test_end_before_start_completes_once_and_keeps_the_outcome():
    """Out of order: a later start neither reopens nor regresses the call."""
    record, completed, recordings = deliver(
        [event("end"), event("start"), event("answer")]
    )

    assert completed == 1
    assert recordings == []
    assert (record["status"], record["answered"], record["completed"]) == (
        "answered",
        True,
        True,
    )


def test_recording_before_end_rides_with_the_completed_message():
    """A recording known at completion is marked with it and not sent again."""
    ref = "https://pbx.example.ru/rec/c-1.mp3"

    record, completed, recordings = deliver(
        [event("recording"), event("start"), event("end"), event("recording")]
    )

    assert (completed, recordings) == (1, [])
    assert record["recording_refs"] == [ref]
    assert record["published_recordings"] == [ref]


def test_late_recording_is_published_once_per_distinct_recording():
    """After completion each new recording is one recording message."""
    first = "https://pbx.example.ru/rec/c-1.mp3"
    second = "https://pbx.example.ru/rec/c-1-transfer.mp3"

    _, completed, recordings = deliver(
        [
            event("start"),
            event("end"),
            event("recording"),
            event("recording"),
            event("recording", recording_ref=second),
        ]
    )

    assert (completed, recordings) == (1, [first, second])


def test_recording_after_completion_reports_what_to_publish():
    """publish_recording comes with the refs the message should carry."""
    ended = callmerge.merge(None, event("end")).record
    marked = callmerge.mark_published(ended, "completed", ended["recording_refs"])

    result = callmerge.merge(marked, event("recording"))

    assert result.publish_recording is True
    assert result.recordings_to_publish == ("https://pbx.example.ru/rec/c-1.mp3",)


def test_ringing_after_the_end_does_not_regress_the_status():
    """A late ringing event leaves a busy call busy."""
    busy = event("end", status="busy", answered=False, talk_s=0)

    record, _, _ = deliver([busy, event("start")])

    assert record["status"] == "busy"


def test_answer_evidence_wins_over_an_unanswered_outcome():
    """Once anyone answered, the call stays answered."""
    missed = event("end", status="no_answer", answered=False, talk_s=0)

    record, _, _ = deliver([event("answer"), missed])

    assert (record["answered"], record["status"]) == (True, "answered")


def test_durations_take_the_largest_and_start_the_earliest():
    """Fields only improve: longest ring and talk, earliest start."""
    early = T0 - dt.timedelta(seconds=3)
    events = [
        event("end", talk_s=38, ring_s=15, started_at=T0),
        event("end", talk_s=40, ring_s=12, started_at=early, sequence=2),
    ]

    record, _, _ = deliver(events)

    assert (record["talk_s"], record["ring_s"], record["started_at"]) == (
        40,
        15,
        "2026-03-12T07:14:47+00:00",
    )


def test_first_tracking_number_seen_is_kept():
    """A later event naming another number does not move the call."""
    record, _, _ = deliver(
        [event("start"), event("end", tracking_number="+74950000000")]
    )

    assert record["tracking_number"] == TRACKING


def test_event_of_another_call_is_refused():
    """Merging call c-2 into c-1's record is a caller bug."""
    record = callmerge.merge(None, event("start")).record

    with pytest.raises(ValueError) as caught:
        callmerge.merge(record, event("end", provider_call_id="c-2"))
    assert str(caught.value) == (
        "Expected an event of call ('generic', 'c-1'), found one of ('generic', 'c-2')."
    )


def test_merge_leaves_the_input_record_untouched():
    """The stored record is read-only to merge."""
    record = callmerge.merge(None, event("start")).record
    snapshot = json.dumps(record, sort_keys=True)

    callmerge.merge(record, event("end"))

    assert json.dumps(record, sort_keys=True) == snapshot


def test_marking_an_open_call_completed_is_refused():
    """Only a completed record can have its completed message marked."""
    record = callmerge.merge(None, event("start")).record

    with pytest.raises(ValueError):
        callmerge.mark_published(record, "completed")


def test_record_from_an_older_schema_gets_missing_fields():
    """Fields added since a record was written start empty."""
    old = callmerge.merge(None, event("start")).record
    del old["published_recordings"]

    result = callmerge.merge(old, event("end"))

    assert result.record["published_recordings"] == []


def zadarma_events(names_and_times) -> list[CallEvent]:
    secret = "7c1e9a5b3d2f4e6a"
    out = []
    for name, received in names_and_times:
        body = (ZADARMA / name).read_text().strip().encode()
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Signature": signers.zadarma_signature(secret, "unused"),
        }
        req = WebhookRequest.build("POST", "https://h.example/z", headers, body)
        out.extend(zadarma.parse(req, "RU", "Europe/Moscow", now=received))
    return out


@pytest.mark.parametrize(
    "order", list(itertools.permutations(["start", "end", "record", "end-again"]))
)
def test_real_zadarma_call_in_any_order_completes_once(order):
    """Start, end, a retried end and the recording, in every order."""
    files = {
        "start": ("notify_start.txt", T0),
        "end": ("notify_end.txt", T0 + dt.timedelta(seconds=52)),
        "end-again": ("notify_end.txt", T0 + dt.timedelta(seconds=80)),
        "record": ("notify_record.txt", T0 + dt.timedelta(seconds=95)),
    }
    events = zadarma_events([files[name] for name in order])

    record, completed, recordings = deliver(events)

    assert completed == 1
    first_end = min(order.index("end"), order.index("end-again"))
    assert len(recordings) == (1 if order.index("record") > first_end else 0)
    assert (record["status"], record["talk_s"], record["started_at"]) == (
        "answered",
        40,
        "2026-03-12T07:14:50+00:00",
    )
    assert record["recording_refs"] == ["1773299690.4452791"]


STAGES = [
    event("start"),
    event("answer"),
    event("end"),
    event("recording"),
    event("recording", recording_ref="https://pbx.example.ru/rec/c-1-b.mp3"),
]
FACTS = (
    "tracking_number",
    "caller_hash",
    "started_at",
    "answered",
    "ring_s",
    "talk_s",
    "status",
    "completed",
    "completed_at",
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(range(len(STAGES))), min_size=1, max_size=12))
def test_any_order_with_repeats_publishes_each_thing_once(indexes):
    """Whatever the order and repeats, one completed message and no double refs."""
    events = [STAGES[i] for i in indexes]

    record, completed, recordings = deliver(events)

    assert completed == (1 if 2 in indexes else 0)
    assert len(recordings) == len(set(recordings))
    assert set(recordings) <= set(record["recording_refs"])
    reference, _, _ = deliver(sorted(set(events), key=STAGES.index))
    assert {k: record[k] for k in FACTS} == {k: reference[k] for k in FACTS}


def test_event_round_trips_through_its_dict():
    """to_dict gives ISO UTC strings and from_dict reads them back."""
    original = event("end", sequence=7)

    data = original.to_dict()

    assert data["occurred_at"] == "2026-03-12T07:15:42+00:00"
    assert CallEvent.from_dict(data) == original


def test_event_times_in_other_zones_are_stored_in_utc():
    """A +03:00 time is kept as the same instant in UTC."""
    moscow = dt.timezone(dt.timedelta(hours=3))

    made = event(
        "start", occurred_at=dt.datetime(2026, 3, 12, 10, 14, 50, tzinfo=moscow)
    )

    assert made.occurred_at.isoformat() == "2026-03-12T07:14:50+00:00"


def test_naive_event_time_is_refused():
    """A time without a zone could be anywhere, so it is not accepted."""
    with pytest.raises(BadRequest) as caught:
        event("start", occurred_at=dt.datetime(2026, 3, 12, 7, 14, 50))
    assert caught.value.code == "call_event"


def test_status_outside_the_canonical_words_is_refused():
    """Provider words must be mapped before they reach a CallEvent."""
    with pytest.raises(BadRequest):
        event("end", status="no-answer")


def test_event_repr_masks_the_caller():
    """Logging an event by accident does not leak the number."""
    text = repr(event("start"))

    assert "caller='+7********67'" in text
    assert "9161234567" not in text


def test_from_dict_refuses_unknown_fields():
    """A dict with extra keys is not silently accepted."""
    data = event("start").to_dict() | {"caller_raw": CALLER}

    with pytest.raises(BadRequest) as caught:
        CallEvent.from_dict(data)
    assert str(caught.value) == "Expected only call event fields, found caller_raw."
