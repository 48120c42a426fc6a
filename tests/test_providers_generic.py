"""The generic JSON hook: timestamped HMAC-SHA256, replay window, strict fields."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

import signers
from shared.callevent import CallEvent
from shared.errors import BadRequest, Forbidden, Unauthorized
from shared.providers import ProviderSecrets, WebhookRequest, generic

DATA = Path(__file__).parent / "data" / "webhooks" / "generic"
SECRET = "whsec_3b7e1f9a5c2d8e4f6a0b"
SECRETS = ProviderSecrets(generic_secret=SECRET)
URL = "https://hooks.calltrack.example/webhooks/generic"
NOW = dt.datetime(2026, 3, 12, 7, 15, 45, tzinfo=dt.UTC)
STAMP = str(int(NOW.timestamp()))


def utc(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


def payload(name: str) -> bytes:
    return (DATA / name).read_text().strip().encode()


def request(
    body: bytes,
    *,
    stamp: str = STAMP,
    secret: str = SECRET,
    signed_body: bytes | None = None,
) -> WebhookRequest:
    signature = signers.generic_signature(secret, stamp, signed_body or body)
    headers = {
        "Content-Type": "application/json",
        "X-Calltrack-Timestamp": stamp,
        "X-Calltrack-Signature": signature,
    }
    return WebhookRequest.build("POST", URL, headers, body)


def edited(name: str, **changes) -> bytes:
    data = json.loads(payload(name))
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return json.dumps(data).encode()


def test_request_signed_now_is_accepted():
    """sha256=HMAC(secret, timestamp.body) with a current timestamp passes."""
    generic.verify(request(payload("start.json")), SECRETS, NOW)


def test_body_changed_after_signing_is_rejected():
    """One changed byte of the body fails the signature."""
    signed = payload("end.json")
    tampered = signed.replace(b'"talk_s": 40', b'"talk_s": 400')

    with pytest.raises(Unauthorized) as caught:
        generic.verify(request(tampered, signed_body=signed), SECRETS, NOW)
    assert caught.value.code == "signature"


def test_request_without_signature_headers_is_rejected():
    """Missing X-Calltrack-* headers are a 401."""
    req = WebhookRequest.build("POST", URL, {}, payload("start.json"))

    with pytest.raises(Unauthorized) as caught:
        generic.verify(req, SECRETS, NOW)
    assert caught.value.code == "signature_missing"


def test_signature_made_with_another_secret_is_rejected():
    """Another secret gives another HMAC."""
    with pytest.raises(Unauthorized):
        generic.verify(
            request(payload("start.json"), secret="whsec_other"), SECRETS, NOW
        )


def test_timestamp_changed_after_signing_is_rejected():
    """The timestamp is signed: moving it forward breaks the signature."""
    req = request(payload("start.json"), stamp=str(int(NOW.timestamp()) - 3600))
    headers = dict(req.headers) | {"x-calltrack-timestamp": STAMP}
    moved = WebhookRequest.build("POST", URL, headers, req.raw_body)

    with pytest.raises(Unauthorized):
        generic.verify(moved, SECRETS, NOW)


@pytest.mark.parametrize("offset_s", [-301, 301, -86400])
def test_request_signed_outside_five_minutes_is_refused_as_replay(offset_s):
    """A validly signed request more than 300 s old or ahead is a 403."""
    stamp = str(int(NOW.timestamp()) + offset_s)

    with pytest.raises(Forbidden) as caught:
        generic.verify(request(payload("start.json"), stamp=stamp), SECRETS, NOW)
    assert caught.value.code == "replay"
    assert str(caught.value) == (
        "Expected a request signed within 300 s of now, "
        f"found one {abs(offset_s)} s away."
    )


@pytest.mark.parametrize("offset_s", [-300, 300])
def test_request_signed_at_the_edge_of_the_window_is_accepted(offset_s):
    """Exactly 300 s of clock difference is still allowed."""
    stamp = str(int(NOW.timestamp()) + offset_s)

    generic.verify(request(payload("start.json"), stamp=stamp), SECRETS, NOW)


def test_timestamp_that_is_not_unix_seconds_is_rejected():
    """An ISO date in the timestamp header is refused before any HMAC."""
    req = request(payload("start.json"), stamp="2026-03-12T07:15:45Z")

    with pytest.raises(Unauthorized) as caught:
        generic.verify(req, SECRETS, NOW)
    assert caught.value.code == "timestamp"


def test_start_maps_fields_and_converts_times_to_utc():
    """occurred_at with +03:00 becomes UTC; a national caller becomes E.164."""
    events = generic.parse(request(payload("start.json")), "RU", "UTC")

    assert events == [
        CallEvent(
            provider="generic",
            provider_call_id="1773299690.1187",
            event_kind="start",
            occurred_at=utc(2026, 3, 12, 7, 14, 50),
            tracking_number="+74951234567",
            caller="+79161234567",
            started_at=utc(2026, 3, 12, 7, 14, 50),
            status="ringing",
        )
    ]


def test_end_maps_every_outcome_field():
    """answered, ring_s, talk_s and status pass through as given."""
    events = generic.parse(request(payload("end.json")), "RU", "UTC")

    assert events == [
        CallEvent(
            provider="generic",
            provider_call_id="1773299690.1187",
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


def test_answer_without_occurred_at_is_dated_by_the_signed_timestamp():
    """The signing time stands in for a missing occurred_at."""
    body = edited("answer.json", occurred_at=None)

    [event] = generic.parse(request(body), "RU", "UTC")

    assert (event.event_kind, event.occurred_at, event.answered, event.ring_s) == (
        "answer",
        NOW,
        True,
        12,
    )


def test_recording_carries_its_url():
    """recording_url is the recording reference."""
    [event] = generic.parse(request(payload("recording.json")), "RU", "UTC")

    assert event.recording_ref == (
        "https://pbx.example.ru/recordings/2026/03/12/1773299690.1187.mp3"
    )


def test_end_with_only_talk_time_derives_the_outcome():
    """talk_s 0 with no answered or status is an unanswered end."""
    body = edited("end.json", answered=None, status=None, talk_s=0)

    [event] = generic.parse(request(body), "RU", "UTC")

    assert (event.answered, event.status) == (False, "no_answer")


def test_end_with_no_outcome_at_all_is_a_bad_request():
    """An end must say answered, status or talk_s."""
    body = edited("end.json", answered=None, status=None, talk_s=None)

    with pytest.raises(BadRequest) as caught:
        generic.parse(request(body), "RU", "UTC")
    assert str(caught.value) == (
        "Expected answered, status or talk_s on an end event, found none."
    )


def test_contradicting_answered_and_status_is_a_bad_request():
    """answered true with status busy is refused rather than guessed."""
    body = edited("end.json", status="busy")

    with pytest.raises(BadRequest) as caught:
        generic.parse(request(body), "RU", "UTC")
    assert caught.value.code == "generic_field"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("talk_s", "40"),
        ("talk_s", True),
        ("answered", "yes"),
        ("ring_s", -1),
        ("call_id", 1773299690),
    ],
)
def test_wrong_json_types_are_bad_requests(field, value):
    """Numbers must be JSON numbers, flags JSON booleans, ids text."""
    body = edited("end.json", **{field: value})

    with pytest.raises(BadRequest):
        generic.parse(request(body), "RU", "UTC")


def test_time_without_offset_is_a_bad_request():
    """A naive ISO time could be any zone, so it is refused."""
    body = edited("start.json", occurred_at="2026-03-12T10:14:50")

    with pytest.raises(BadRequest) as caught:
        generic.parse(request(body), "RU", "UTC")
    assert caught.value.code == "time"


def test_start_without_tracking_number_is_a_bad_request():
    """The dialled number is what the call is attributed by."""
    body = edited("start.json", tracking_number=None)

    with pytest.raises(BadRequest) as caught:
        generic.parse(request(body), "RU", "UTC")
    assert (
        str(caught.value) == "Expected tracking_number on a start event, found nothing."
    )


def test_recording_without_url_is_a_bad_request():
    """A recording event must link the recording."""
    body = edited("recording.json", recording_url="file:///var/spool/x.wav")

    with pytest.raises(BadRequest):
        generic.parse(request(body), "RU", "UTC")


def test_body_that_is_a_json_list_is_a_bad_request():
    """The body must be one JSON object."""
    with pytest.raises(BadRequest) as caught:
        generic.parse(request(b"[]"), "RU", "UTC")
    assert caught.value.code == "json"
