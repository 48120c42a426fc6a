"""UIS/CoMagic notifications: the shared secret and the template field mapping."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from shared import callmerge
from shared.callevent import CallEvent
from shared.errors import BadRequest, Unauthorized
from shared.providers import ProviderSecrets, WebhookRequest, uis

DATA = Path(__file__).parent / "data" / "webhooks" / "uis"
SECRET = "u7Jq2mXv9pLr4sT8wZ1c"
SECRETS = ProviderSecrets(uis_secret=SECRET)
URL = "https://hooks.calltrack.example/webhooks/uis"
NOW = dt.datetime(2026, 3, 12, 7, 16, tzinfo=dt.UTC)


def utc(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


def payload(name: str) -> dict:
    return json.loads((DATA / name).read_text())


def request(data: dict, url: str = URL) -> WebhookRequest:
    body = json.dumps(data, ensure_ascii=False).encode()
    return WebhookRequest.build("POST", url, {"Content-Type": "application/json"}, body)


def with_secret(name: str, secret: str = SECRET) -> WebhookRequest:
    return request(payload(name) | {"secret": secret})


def test_secret_in_the_body_is_accepted():
    """The template's secret field matching the configured secret passes."""
    uis.verify(with_secret("call_start.json"), SECRETS, NOW)


def test_secret_in_the_query_is_accepted():
    """A ?secret= on the notification URL works for templates without it."""
    uis.verify(
        request(payload("call_start.json"), URL + "?secret=" + SECRET), SECRETS, NOW
    )


def test_notification_without_a_secret_is_rejected():
    """Neither query nor body secret is a 401 saying it is missing."""
    with pytest.raises(Unauthorized) as caught:
        uis.verify(request(payload("call_start.json")), SECRETS, NOW)
    assert caught.value.code == "secret_missing"


def test_wrong_secret_is_rejected():
    """Another secret, even one sharing a prefix, fails."""
    with pytest.raises(Unauthorized) as caught:
        uis.verify(with_secret("call_start.json", SECRET[:-1] + "X"), SECRETS, NOW)
    assert caught.value.code == "secret"


def test_non_ascii_secret_is_rejected_not_crashed_on():
    """A secret with non-ASCII characters is compared as bytes and refused."""
    with pytest.raises(Unauthorized):
        uis.verify(with_secret("call_start.json", "секрет"), SECRETS, NOW)


def test_body_is_unsigned_so_any_body_carrying_the_secret_verifies():
    """A documented limit: UIS signs nothing, so the secret is the only proof."""
    data = payload("call_end.json") | {"secret": SECRET, "talk_time_duration": 400}

    uis.verify(request(data), SECRETS, NOW)


def test_replayed_notification_verifies_again_but_merges_as_a_no_op():
    """A repeated end notification changes nothing."""
    req = with_secret("call_end.json")
    uis.verify(req, SECRETS, NOW)
    [event] = uis.parse(req, "RU", "Europe/Moscow")
    first = callmerge.merge(None, event)

    uis.verify(req, SECRETS, NOW + dt.timedelta(days=1))
    again = callmerge.merge(first.record, uis.parse(req, "RU", "Europe/Moscow")[0])

    assert again.changed is False


def test_start_maps_the_virtual_number_and_local_time():
    """virtual_phone_number is tracked; 10:14:50 Moscow is 07:14:50 UTC."""
    events = uis.parse(with_secret("call_start.json"), "RU", "Europe/Moscow")

    assert events == [
        CallEvent(
            provider="uis",
            provider_call_id="3618947215",
            event_kind="start",
            occurred_at=utc(2026, 3, 12, 7, 14, 50),
            tracking_number="+74993720692",
            caller="+79161234567",
            started_at=utc(2026, 3, 12, 7, 14, 50),
            status="ringing",
        )
    ]


def test_answer_carries_the_wait_time():
    """wait_time_duration is the ring time before the employee answered."""
    [event] = uis.parse(with_secret("call_answer.json"), "RU", "Europe/Moscow")

    assert (event.event_kind, event.answered, event.ring_s, event.status) == (
        "answer",
        True,
        12,
        "in_progress",
    )


def test_end_maps_durations_and_derives_the_start():
    """talk, wait and total durations; start is notification time less total."""
    events = uis.parse(with_secret("call_end.json"), "RU", "Europe/Moscow")

    assert events == [
        CallEvent(
            provider="uis",
            provider_call_id="3618947215",
            event_kind="end",
            occurred_at=utc(2026, 3, 12, 7, 15, 42),
            tracking_number="+74993720692",
            caller="+79161234567",
            started_at=utc(2026, 3, 12, 7, 14, 50),
            answered=True,
            ring_s=12,
            talk_s=40,
            status="answered",
        )
    ]


def test_lost_call_with_national_caller_is_no_answer():
    """No talk time is no answer; 84957654321 in RU is +74957654321."""
    [event] = uis.parse(with_secret("call_end_lost.json"), "RU", "Europe/Moscow")

    assert (event.caller, event.answered, event.status, event.talk_s) == (
        "+74957654321",
        False,
        "no_answer",
        0,
    )


def test_canonical_call_status_refines_an_unanswered_end():
    """call_status busy is kept when nobody talked."""
    data = payload("call_end_lost.json") | {"call_status": "busy"}

    [event] = uis.parse(request(data), "RU", "Europe/Moscow")

    assert event.status == "busy"


def test_talk_time_overrides_a_contradicting_call_status():
    """40 s of talk is an answered call whatever call_status says."""
    data = payload("call_end.json") | {"call_status": "busy"}

    [event] = uis.parse(request(data), "RU", "Europe/Moscow")

    assert (event.answered, event.status) == (True, "answered")


def test_recording_gives_one_event_per_file_link():
    """file_link may be a list: one recording event per file."""
    data = payload("recording.json")
    second = "https://app.uiscom.ru/system/media/talk/3618947215/0b2c4d6e8f1a3c5e/"
    data["file_link"].append(second)

    events = uis.parse(request(data), "RU", "Europe/Moscow")

    assert [event.recording_ref for event in events] == [
        "https://app.uiscom.ru/system/media/talk/3618947215/8e1f3c2a9b7d4e6f/",
        second,
    ]
    assert {event.occurred_at for event in events} == {utc(2026, 3, 12, 7, 15, 50)}


def test_unknown_event_kind_is_a_bad_request():
    """The template's event must be start, answer, end or recording."""
    data = payload("call_start.json") | {"event": "call_transfer"}

    with pytest.raises(BadRequest) as caught:
        uis.parse(request(data), "RU", "Europe/Moscow")
    assert str(caught.value) == (
        "Expected event to be one of start, answer, end, recording, "
        "found 'call_transfer'."
    )


def test_start_without_virtual_number_is_a_bad_request():
    """A start must say which tracking number was dialled."""
    data = payload("call_start.json")
    del data["virtual_phone_number"]

    with pytest.raises(BadRequest) as caught:
        uis.parse(request(data), "RU", "Europe/Moscow")
    assert caught.value.code == "uis_field"


def test_duration_that_is_not_a_number_is_a_bad_request():
    """talk_time_duration must be whole seconds."""
    data = payload("call_end.json") | {"talk_time_duration": "40s"}

    with pytest.raises(BadRequest) as caught:
        uis.parse(request(data), "RU", "Europe/Moscow")
    assert caught.value.code == "uis_field"


def test_body_that_is_not_json_is_a_bad_request():
    """A template that renders to invalid JSON is refused."""
    req = WebhookRequest.build("POST", URL, {}, b'{"event": "start",')

    with pytest.raises(BadRequest) as caught:
        uis.parse(req, "RU", "Europe/Moscow")
    assert caught.value.code == "json"


def test_quoted_placeholders_read_like_numbers():
    """Templates quote every value; digit strings and empty strings still read."""
    data = payload("call_end.json")
    quoted = {key: str(value) for key, value in data.items() if key != "tag_names"}
    quoted["wait_time_duration"] = ""

    [event] = uis.parse(request(quoted), "RU", "Europe/Moscow")

    assert (event.provider_call_id, event.talk_s, event.ring_s, event.started_at) == (
        "3618947215",
        40,
        None,
        utc(2026, 3, 12, 7, 14, 50),
    )
