"""The pure parts of the call webhook: message bodies, call ids, masked payloads,
and the provider secrets setting."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

import signers
from shared import callmerge, callmessages, settings
from shared.callevent import CallEvent
from shared.errors import ConfigError
from shared.phones import phone_hash
from shared.providers import WebhookRequest
from shared.webhook_store import call_doc_id, masked_payload

DATA = Path(__file__).parent / "data" / "webhooks"
CALLER = "+79161234567"
T0 = dt.datetime(2026, 3, 12, 7, 14, 50, tzinfo=dt.UTC)
REF = "https://pbx.example.ru/rec/c-1.mp3"
CALL_ID = "generic:demo:c-1"
RAW_REF = "calls/generic:demo:c-1/raw"


def event(kind: str, **overrides) -> CallEvent:
    values = {
        "start": {"status": "ringing", "started_at": T0, "caller": CALLER,
                  "tracking_number": "+74951234567"},
        "end": {"status": "answered", "answered": True, "ring_s": 12, "talk_s": 40,
                "caller": CALLER, "tracking_number": "+74951234567",
                "occurred_at": T0 + dt.timedelta(seconds=52)},
        "recording": {"recording_ref": REF},
    }[kind]
    base = {"provider": "generic", "provider_call_id": "c-1", "event_kind": kind,
            "occurred_at": T0}
    return CallEvent(**(base | values | overrides))


def record_of(*events: CallEvent) -> dict:
    record = None
    for item in events:
        record = callmerge.merge(record, item).record
    return record


def outbox(record, callers=(CALLER,)):
    return callmessages.outbox(CALL_ID, "demo", record, callers, RAW_REF)


# -- messages ------------------------------------------------------------------


def test_completed_call_owes_one_message_with_the_canonical_body():
    [message] = outbox(record_of(event("start"), event("end")))

    assert (message.mark, message.type, message.refs) == ("completed",
                                                          "call.completed", ())
    assert message.body == {
        "call_id": CALL_ID, "site_id": "demo", "provider": "generic",
        "provider_call_id": "c-1", "tracking_number": "+74951234567",
        "caller": CALLER, "caller_hash": phone_hash(CALLER),
        "caller_mask": "+7********67", "started_at": "2026-03-12T07:14:50+00:00",
        "answered": True, "ring_s": 12, "talk_s": 40, "status": "answered",
        "recording_ref": None, "raw_ref": RAW_REF,
        "completed_at": "2026-03-12T07:15:42+00:00",
    }


def test_open_call_owes_nothing():
    assert outbox(record_of(event("start"), event("recording"))) == []
    assert outbox(None) == []


def test_recording_known_at_completion_rides_in_the_completed_message():
    [message] = outbox(record_of(event("recording"), event("end")))

    assert (message.type, message.body["recording_ref"], message.refs) == (
        "call.completed", REF, (REF,))


def test_second_recording_at_completion_follows_as_its_own_message():
    second = "https://pbx.example.ru/rec/c-1-leg2.mp3"
    record = record_of(event("recording"), event("recording", recording_ref=second),
                       event("end"))

    assert [(m.type, m.refs) for m in outbox(record)] == [
        ("call.completed", (REF,)), ("call.recording", (second,))]


def test_recording_after_the_completed_message_is_a_recording_message_only():
    record = callmerge.mark_published(record_of(event("end")), "completed")
    record = callmerge.merge(record, event("recording")).record

    [message] = outbox(record)
    assert (message.mark, message.type) == ("recording", "call.recording")
    assert message.body == {"call_id": CALL_ID, "site_id": "demo",
                            "provider": "generic", "provider_call_id": "c-1",
                            "recording_ref": REF}
    assert outbox(callmerge.mark_published(record, "recording", [REF])) == []


def test_completed_message_carries_no_caller_when_none_is_in_hand():
    [message] = outbox(record_of(event("start"), event("end")), callers=(None,))

    assert message.body["caller"] is None
    assert message.body["caller_hash"] == phone_hash(CALLER)


def test_caller_in_hand_that_disagrees_with_the_record_is_left_out():
    """The record keeps the first caller; another number would break the hash."""
    [message] = outbox(record_of(event("start"), event("end")),
                       callers=("+79035550000",))

    assert message.body["caller"] is None


def test_end_without_a_start_time_dates_the_call_by_its_first_event():
    record = record_of(event("end", occurred_at=T0))

    assert outbox(record)[0].body["started_at"] == "2026-03-12T07:14:50+00:00"


@pytest.mark.parametrize(("change", "message"), [
    ({"caller": "89161234567"}, "Expected caller to be E.164 or null, found str."),
    ({"caller": "+79035550000"},
     "Expected caller to be the number caller_hash is the hash of, found str."),
    ({"status": "ringing"},
     "Expected status to be a final call status, found 'ringing'."),
    ({"answered": None}, "Expected answered to be true or false, found None."),
    ({"started_at": "2026-03-12T10:14:50+03:00"},
     "Expected started_at to be an ISO-8601 UTC time, "
     "found '2026-03-12T10:14:50+03:00'."),
    ({"ring_s": -1}, "Expected ring_s to be whole seconds or null, found -1."),
])
def test_completed_body_that_breaks_the_schema_is_refused(change, message):
    [good] = outbox(record_of(event("start"), event("end")))

    with pytest.raises(ValueError) as caught:
        callmessages.validate("call.completed", good.body | change)
    assert str(caught.value) == message


def test_body_with_a_missing_or_extra_field_is_refused():
    body = {"call_id": CALL_ID, "site_id": "demo", "provider": "generic",
            "provider_call_id": "c-1"}

    with pytest.raises(ValueError) as caught:
        callmessages.validate("call.recording", body)
    assert str(caught.value) == (
        "Expected call.recording fields call_id, site_id, provider, "
        "provider_call_id, recording_ref, found ['call_id', 'provider', "
        "'provider_call_id', 'site_id'].")


# -- call ids -------------------------------------------------------------------


def test_call_id_escapes_what_a_document_id_cannot_hold():
    entry = "MToxMDA1NzU5Mz/zNTc6NjQ2MzE4NDUxOjE="

    assert call_doc_id("mango", "demo", entry) == (
        "mango:demo:MToxMDA1NzU5Mz%2FzNTc6NjQ2MzE4NDUxOjE%3D")


def test_distinct_provider_ids_never_share_a_call_id():
    ids = ["a/b", "a%2Fb", "x" * 300, "x" * 301, "!" + "0" * 64]

    assert len({call_doc_id("generic", "demo", i) for i in ids}) == len(ids)
    assert len(call_doc_id("generic", "demo", "x" * 300)) == len("generic:demo:!") + 64


# -- stored payloads ---------------------------------------------------------------


def test_twilio_form_is_stored_with_every_trace_of_the_caller_masked():
    body = (DATA / "twilio" / "status_completed.txt").read_text().strip().encode()
    req = WebhookRequest.build(
        "POST", "https://h.example/twilio/demo",
        {"Content-Type": "application/x-www-form-urlencoded"}, body)

    stored = masked_payload(req, ["+14155550199"])
    pairs = dict(json.loads(stored["body"]))
    assert stored["format"] == "form"
    assert (pairs["From"], pairs["Caller"]) == ("+*********99", "+*********99")
    assert (pairs["To"], pairs["CallSid"]) == ("+14155550123",
                                               "CA9a1c6f0e2b7d4c3e8f5a6b9c0d1e2f3a")
    assert "4155550199" not in stored["body"]


def test_mango_form_is_stored_without_its_key_and_sign():
    json_text = (DATA / "mango" / "summary_missed.json").read_text()
    body = signers.mango_form("key-1", json_text, "salt-1")
    req = WebhookRequest.build("POST", "https://h.example/mango/demo/events/summary",
                               {"Content-Type": "application/x-www-form-urlencoded"},
                               body)

    stored = json.loads(masked_payload(req, ["+74957654321"])["body"])
    assert [name for name, _ in stored] == ["json"]
    assert stored[0][1]["from"] == {"number": "*********21"}
    assert stored[0][1]["line_number"] == "74951234567"


def test_uis_body_is_stored_without_its_secret_and_with_a_withheld_caller_as_is():
    data = json.loads((DATA / "uis" / "call_start.json").read_text())
    data |= {"secret": "s3cret", "contact_phone_number": "anonymous"}
    req = WebhookRequest.build("POST", "https://h.example/uis/demo",
                               {"Content-Type": "application/json"},
                               json.dumps(data).encode())

    stored = json.loads(masked_payload(req, [None])["body"])
    assert "secret" not in stored
    assert stored["contact_phone_number"] == "anonymous"
    assert stored["call_session_id"] == 3618947215


def test_caller_digits_outside_caller_fields_are_masked_too():
    body = json.dumps({"call_id": "c-1", "event": "start",
                       "note": "call back on 8 (916) 123-45-67, at 10:15"}).encode()
    req = WebhookRequest.build("POST", "https://h.example/generic/demo",
                               {"Content-Type": "application/json"}, body)

    stored = json.loads(masked_payload(req, [CALLER])["body"])
    assert stored["note"] == "call back on * (***) ***-**-67, at 10:15"


# -- settings ------------------------------------------------------------------------


def test_provider_secrets_are_read_per_site_and_kept_out_of_repr(monkeypatch):
    monkeypatch.setenv(settings.PROVIDER_SECRETS,
                       '{"demo": {"generic_secret": "s3cret-value"}}')
    monkeypatch.setenv(settings.PROJECT, "p")

    loaded = settings.load()
    assert loaded.provider_secrets == {"demo": {"generic_secret": "s3cret-value"}}
    assert "s3cret-value" not in repr(loaded)


@pytest.mark.parametrize(("raw", "message"), [
    ('{"demo": ', "CALLTRACK_PROVIDER_SECRETS must be JSON, found text that does "
                  "not parse."),
    ('{"demo": "s3cret"}', "CALLTRACK_PROVIDER_SECRETS must be a JSON object of "
                           "site ids to objects of text secrets."),
])
def test_malformed_provider_secrets_are_a_config_error(monkeypatch, raw, message):
    monkeypatch.setenv(settings.PROVIDER_SECRETS, raw)
    monkeypatch.setenv(settings.PROJECT, "p")

    with pytest.raises(ConfigError) as caught:
        settings.load()
    assert caught.value.message == message
