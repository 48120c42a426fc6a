"""Mango Office VPBX events: the sign recipe, the api key and the field mapping."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

import signers
from shared import callmerge
from shared.callevent import CallEvent
from shared.errors import BadRequest, Forbidden, Unauthorized
from shared.providers import ProviderSecrets, WebhookRequest, mango

DATA = Path(__file__).parent / "data" / "webhooks" / "mango"
API_KEY = "k2f8d1c7a9b34e6f8a1c5d7e9b2f4a6c"
SALT = "s9e7c5a3b1d2f4e6a8c0b2d4f6e8a0c2"
SECRETS = ProviderSecrets(mango_api_key=API_KEY, mango_api_salt=SALT)
BASE_URL = "https://hooks.calltrack.example/webhooks/mango"
FORM = "application/x-www-form-urlencoded"
NOW = dt.datetime(2026, 3, 12, 7, 16, tzinfo=dt.UTC)
ENTRY_ID = "MToxMDA1NzU5MzozNTc6NjQ2MzE4NDUxOjE="


def utc(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


def payload(name: str) -> str:
    return (DATA / name).read_text().strip()


def request(
    name: str,
    path: str = "/events/call",
    *,
    api_key: str = API_KEY,
    salt: str = SALT,
    json_text: str | None = None,
) -> WebhookRequest:
    """The form Mango posts for the JSON in ``name``, signed with key and salt."""
    body = signers.mango_form(api_key, json_text or payload(name), salt)
    return WebhookRequest.build("POST", BASE_URL + path, {"Content-Type": FORM}, body)


def test_event_signed_with_key_and_salt_is_accepted():
    """sign = sha256(api_key + json + salt) with the configured key passes."""
    mango.verify(request("call_appeared.json"), SECRETS, NOW)


def test_json_changed_after_signing_is_rejected():
    """Changing the caller in the json field breaks the sign."""
    req = request("call_appeared.json")
    form = dict(req.form)
    form["json"] = form["json"].replace("79161234567", "79990000000")
    tampered = WebhookRequest(
        "POST", req.url, req.headers, req.raw_body, form, req.query
    )

    with pytest.raises(Unauthorized) as caught:
        mango.verify(tampered, SECRETS, NOW)
    assert caught.value.code == "signature"


def test_event_without_sign_is_rejected():
    """A form with no sign field is a 401 saying it is missing."""
    body = signers.form_body(
        {"vpbx_api_key": API_KEY, "json": payload("call_appeared.json")}
    )
    req = WebhookRequest.build(
        "POST", BASE_URL + "/events/call", {"Content-Type": FORM}, body
    )

    with pytest.raises(Unauthorized) as caught:
        mango.verify(req, SECRETS, NOW)
    assert caught.value.code == "signature_missing"


def test_sign_made_with_another_salt_is_rejected():
    """The right key with the wrong salt is a forged sign."""
    req = request("call_appeared.json", salt="0" * 32)

    with pytest.raises(Unauthorized) as caught:
        mango.verify(req, SECRETS, NOW)
    assert caught.value.code == "signature"


def test_another_accounts_api_key_is_forbidden_even_when_its_sign_is_valid():
    """A request correctly signed for another VPBX account is a 403."""
    req = request("call_appeared.json", api_key="a" * 32, salt="b" * 32)

    with pytest.raises(Forbidden) as caught:
        mango.verify(req, SECRETS, NOW)
    assert caught.value.code == "api_key"
    assert caught.value.status == 403


def test_replayed_event_verifies_again_but_merges_as_a_no_op():
    """Mango signs no send time; dedup makes the replay harmless."""
    req = request("summary_answered.json", "/events/summary")
    mango.verify(req, SECRETS, NOW)
    mango.verify(req, SECRETS, NOW + dt.timedelta(days=30))
    [event] = mango.parse(req, "RU", "Europe/Moscow")

    first = callmerge.merge(None, event)
    again = callmerge.merge(first.record, mango.parse(req, "RU", "Europe/Moscow")[0])

    assert again.changed is False


def test_appeared_call_is_a_start_on_the_dialled_line():
    """to.line_number is the tracking number, from.number the caller."""
    events = mango.parse(request("call_appeared.json"), "RU", "Europe/Moscow")

    assert events == [
        CallEvent(
            provider="mango",
            provider_call_id=ENTRY_ID,
            event_kind="start",
            occurred_at=utc(2026, 3, 12, 7, 14, 50),
            tracking_number="+74951234567",
            caller="+79161234567",
            started_at=utc(2026, 3, 12, 7, 14, 50),
            status="ringing",
            sequence=1,
        )
    ]


def test_connected_employee_leg_is_an_answer():
    """Connected at an employee (location abonent) means a person answered."""
    events = mango.parse(request("call_connected.json"), "RU", "Europe/Moscow")

    assert events == [
        CallEvent(
            provider="mango",
            provider_call_id=ENTRY_ID,
            event_kind="answer",
            occurred_at=utc(2026, 3, 12, 7, 15, 2),
            tracking_number="+74951234567",
            caller="+79161234567",
            answered=True,
            status="in_progress",
            sequence=4,
        )
    ]


def test_connected_to_the_voice_menu_is_not_an_answer():
    """A call connected to the IVR has not reached a person yet."""
    text = payload("call_connected.json").replace('"abonent"', '"ivr"')

    assert mango.parse(request("", json_text=text), "RU", "Europe/Moscow") == []


def test_disconnected_leg_is_not_the_end_of_the_call():
    """Only the summary ends an entry; one leg hanging up does not."""
    events = mango.parse(request("call_disconnected.json"), "RU", "Europe/Moscow")

    assert events == []


def test_outgoing_call_from_an_extension_is_skipped():
    """A leg placed by an employee extension is not a call to a tracking line."""
    assert mango.parse(request("call_outgoing.json"), "RU", "Europe/Moscow") == []


def test_answered_summary_is_an_end_with_durations():
    """create/talk/end times give ring and talk seconds; entry_result 1 is answered."""
    req = request("summary_answered.json", "/events/summary")

    events = mango.parse(req, "RU", "Europe/Moscow")

    assert events == [
        CallEvent(
            provider="mango",
            provider_call_id=ENTRY_ID,
            event_kind="end",
            occurred_at=utc(2026, 3, 12, 7, 15, 42),
            tracking_number="+74951234567",
            caller="+79161234567",
            started_at=utc(2026, 3, 12, 7, 14, 50),
            answered=True,
            ring_s=12,
            talk_s=40,
            status="answered",
        )
    ]


def test_missed_summary_with_national_caller_is_normalised_to_e164():
    """84957654321 read in region RU is +74957654321; no answer means talk_s 0."""
    req = request("summary_missed.json", "/events/summary")

    [event] = mango.parse(req, "RU", "Europe/Moscow")

    assert event.caller == "+74957654321"
    assert (event.answered, event.status, event.ring_s, event.talk_s) == (
        False,
        "no_answer",
        30,
        0,
    )


def test_local_time_strings_are_read_in_the_account_zone():
    """A "YYYY-MM-DD HH:MM:SS" timestamp is Moscow time, three hours ahead of UTC."""
    text = payload("call_appeared.json").replace("1773299690", '"2026-03-12 10:14:50"')

    [event] = mango.parse(request("", json_text=text), "RU", "Europe/Moscow")

    assert event.occurred_at == utc(2026, 3, 12, 7, 14, 50)


def test_completed_recording_carries_its_recording_id():
    """/events/recording with state Completed links the recording to the entry."""
    req = request("recording_completed.json", "/events/recording")

    events = mango.parse(req, "RU", "Europe/Moscow")

    assert events == [
        CallEvent(
            provider="mango",
            provider_call_id=ENTRY_ID,
            event_kind="recording",
            occurred_at=utc(2026, 3, 12, 7, 15, 43),
            recording_ref="MToxMDA1NzU5Mzo2NDYzMTg0NTI6MTAwMTU3Nzg4MA==",
            sequence=7,
        )
    ]


def test_recording_that_has_only_started_is_ignored():
    """A recording in state Started has no file yet."""
    req = request("recording_started.json", "/events/recording")

    assert mango.parse(req, "RU", "Europe/Moscow") == []


def test_other_event_kinds_on_the_base_url_are_ignored():
    """DTMF and SMS notifications are signed too but describe no call."""
    req = request("call_appeared.json", "/events/dtmf")

    assert mango.parse(req, "RU", "Europe/Moscow") == []


def test_json_field_that_is_not_json_is_a_bad_request():
    """A json field that does not parse is refused with code json."""
    req = request("", json_text="{entry_id: 1")

    with pytest.raises(BadRequest) as caught:
        mango.parse(req, "RU", "Europe/Moscow")
    assert caught.value.code == "json"


def test_call_event_without_entry_id_is_a_bad_request():
    """entry_id is the call's identity; without it nothing can be merged."""
    text = payload("call_appeared.json").replace('"entry_id"', '"entry"')

    with pytest.raises(BadRequest) as caught:
        mango.parse(request("", json_text=text), "RU", "Europe/Moscow")
    assert str(caught.value) == "Expected mango field 'entry_id', found nothing."


def test_party_that_is_not_an_object_is_a_bad_request():
    """from must be an object with a number, not a bare string."""
    text = payload("call_appeared.json").replace(
        '"from": {\n    "number": "79161234567"\n  }', '"from": "79161234567"'
    )

    with pytest.raises(BadRequest) as caught:
        mango.parse(request("", json_text=text), "RU", "Europe/Moscow")
    assert caught.value.code == "mango_field"
