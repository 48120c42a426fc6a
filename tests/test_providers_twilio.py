"""Twilio voice callbacks: the signature recipe and the field mapping."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from urllib.parse import parse_qsl

import pytest

import signers
from shared import callmerge
from shared.callevent import CallEvent
from shared.errors import BadRequest, ConfigError, Unauthorized
from shared.providers import ProviderSecrets, WebhookRequest, twilio

DATA = Path(__file__).parent / "data" / "webhooks" / "twilio"
TOKEN = "0f6c2a9d8e7b4c1a3f5e6d7c8b9a0f1e"
SECRETS = ProviderSecrets(twilio_auth_token=TOKEN)
URL = "https://hooks.calltrack.example/webhooks/twilio/status?site=s1"
FORM = "application/x-www-form-urlencoded"
NOW = dt.datetime(2026, 3, 12, 7, 15, 45, tzinfo=dt.UTC)
CALL_SID = "CA9a1c6f0e2b7d4c3e8f5a6b9c0d1e2f3a"


def utc(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


def payload(name: str) -> bytes:
    return (DATA / name).read_text().strip().encode()


def form_request(
    body: bytes,
    url: str = URL,
    *,
    signed_url: str | None = None,
    signed_body: bytes | None = None,
    token: str = TOKEN,
) -> WebhookRequest:
    """A form POST signed as Twilio would sign ``signed_body`` at ``signed_url``."""
    params = dict(parse_qsl((signed_body or body).decode(), keep_blank_values=True))
    signature = signers.twilio_signature(token, signed_url or url, params)
    headers = {"Content-Type": FORM, "X-Twilio-Signature": signature}
    return WebhookRequest.build("POST", url, headers, body)


def json_request(body: bytes, *, signed_body: bytes | None = None) -> WebhookRequest:
    """A JSON POST: the hash of ``signed_body`` rides in the URL, which is signed."""
    body_hash = signers.twilio_body_hash(signed_body or body)
    url = (
        f"https://hooks.calltrack.example/webhooks/twilio/events?bodySHA256={body_hash}"
    )
    signature = signers.twilio_signature(TOKEN, url, {})
    headers = {"Content-Type": "application/json", "X-Twilio-Signature": signature}
    return WebhookRequest.build("POST", url, headers, body)


def test_status_callback_signed_with_the_auth_token_is_accepted():
    """A callback signed over the URL and sorted form fields passes."""
    twilio.verify(form_request(payload("status_completed.txt")), SECRETS, NOW)


def test_body_changed_after_signing_is_rejected():
    """A longer CallDuration than the one signed fails the signature."""
    signed = payload("status_completed.txt")
    tampered = signed.replace(b"CallDuration=47", b"CallDuration=470")
    req = form_request(tampered, signed_body=signed)

    with pytest.raises(Unauthorized) as caught:
        twilio.verify(req, SECRETS, NOW)
    assert caught.value.code == "signature"


def test_request_without_signature_header_is_rejected():
    """No X-Twilio-Signature header is a 401 saying the header is missing."""
    req = WebhookRequest.build(
        "POST", URL, {"Content-Type": FORM}, payload("status_completed.txt")
    )

    with pytest.raises(Unauthorized) as caught:
        twilio.verify(req, SECRETS, NOW)
    assert caught.value.code == "signature_missing"
    assert caught.value.status == 401


def test_signature_made_with_another_auth_token_is_rejected():
    """Another account's auth token does not produce our signature."""
    req = form_request(
        payload("status_completed.txt"), token="ffffffffffffffffffffffffffffffff"
    )

    with pytest.raises(Unauthorized) as caught:
        twilio.verify(req, SECRETS, NOW)
    assert caught.value.code == "signature"


def test_replayed_callback_verifies_again_but_merges_as_a_no_op():
    """Twilio signs no time, so a replay passes verify and dedup absorbs it."""
    req = form_request(payload("status_completed.txt"))
    twilio.verify(req, SECRETS, NOW)
    twilio.verify(req, SECRETS, NOW + dt.timedelta(days=3))
    [event] = twilio.parse(req, "US", "UTC")

    first = callmerge.merge(None, event)
    again = callmerge.merge(first.record, twilio.parse(req, "US", "UTC")[0])

    assert again.changed is False
    assert again.record == first.record


@pytest.mark.parametrize(
    ("signed_url", "received_url"),
    [
        (
            "https://hooks.calltrack.example/t?a=1",
            "https://hooks.calltrack.example:443/t?a=1",
        ),
        (
            "https://hooks.calltrack.example:443/t?a=1",
            "https://hooks.calltrack.example/t?a=1",
        ),
        ("http://hooks.calltrack.example/t", "http://hooks.calltrack.example:80/t"),
        ("http://hooks.calltrack.example:80/t", "http://hooks.calltrack.example/t"),
        (
            "https://hooks.calltrack.example:8443/t",
            "https://hooks.calltrack.example:8443/t",
        ),
    ],
)
def test_url_is_accepted_with_or_without_its_default_port(signed_url, received_url):
    """Twilio signs either URL form, so both are tried, as its validator does."""
    req = form_request(
        payload("status_completed.txt"), received_url, signed_url=signed_url
    )

    twilio.verify(req, SECRETS, NOW)


def test_non_default_port_is_not_dropped_to_match():
    """A signature over :8443 does not pass for a URL received without a port."""
    req = form_request(
        payload("status_completed.txt"),
        "https://hooks.calltrack.example/t",
        signed_url="https://hooks.calltrack.example:8443/t",
    )

    with pytest.raises(Unauthorized):
        twilio.verify(req, SECRETS, NOW)


def test_signature_over_another_path_is_rejected():
    """The URL is part of what is signed: a callback for another path fails."""
    req = form_request(
        payload("status_completed.txt"),
        signed_url="https://hooks.calltrack.example/webhooks/twilio/other?site=s1",
    )

    with pytest.raises(Unauthorized):
        twilio.verify(req, SECRETS, NOW)


def test_json_body_matching_body_sha256_is_accepted():
    """For JSON, the body's hash in the signed URL vouches for the body."""
    twilio.verify(json_request(payload("status_completed.json")), SECRETS, NOW)


def test_json_body_changed_after_signing_fails_body_sha256():
    """A JSON body that no longer hashes to bodySHA256 is refused."""
    signed = payload("status_completed.json")
    tampered = signed.replace(b'"47"', b'"470"')

    with pytest.raises(Unauthorized) as caught:
        twilio.verify(json_request(tampered, signed_body=signed), SECRETS, NOW)
    assert caught.value.code == "body_hash"


def test_body_sha256_swapped_in_the_url_fails_the_signature():
    """Rewriting bodySHA256 to fit a new body breaks the URL's signature."""
    original = json_request(payload("status_completed.json"))
    tampered = payload("status_completed.json").replace(b'"47"', b'"470"')
    new_hash = signers.twilio_body_hash(tampered)
    url = original.url.split("bodySHA256=")[0] + f"bodySHA256={new_hash}"
    req = WebhookRequest.build("POST", url, original.headers, tampered)

    with pytest.raises(Unauthorized) as caught:
        twilio.verify(req, SECRETS, NOW)
    assert caught.value.code == "signature"


def test_missing_auth_token_is_a_configuration_error():
    """Without a configured token nothing can be verified: a 500, not a 401."""
    with pytest.raises(ConfigError):
        twilio.verify(
            form_request(payload("status_completed.txt")), ProviderSecrets(), NOW
        )


def test_completed_inbound_call_becomes_an_answered_end_event():
    """To is the tracking number, From the caller, Timestamp the UTC time."""
    events = twilio.parse(form_request(payload("status_completed.txt")), "US", "UTC")

    assert events == [
        CallEvent(
            provider="twilio",
            provider_call_id=CALL_SID,
            event_kind="end",
            occurred_at=utc(2026, 3, 12, 7, 15, 42),
            tracking_number="+14155550123",
            caller="+14155550199",
            started_at=utc(2026, 3, 12, 7, 14, 55),
            answered=True,
            ring_s=None,
            talk_s=47,
            status="answered",
            recording_ref=None,
            sequence=3,
        )
    ]


def test_ringing_callback_becomes_a_start_event():
    """A ringing call starts at its Timestamp and has no outcome yet."""
    events = twilio.parse(form_request(payload("status_ringing.txt")), "US", "UTC")

    assert events == [
        CallEvent(
            provider="twilio",
            provider_call_id=CALL_SID,
            event_kind="start",
            occurred_at=utc(2026, 3, 12, 7, 14, 50),
            tracking_number="+14155550123",
            caller="+14155550199",
            started_at=utc(2026, 3, 12, 7, 14, 50),
            status="ringing",
            sequence=0,
        )
    ]


def test_json_status_callback_maps_like_the_form_one():
    """The same fields sent as JSON give the same event."""
    from_json = twilio.parse(
        json_request(payload("status_completed.json")), "US", "UTC"
    )
    from_form = twilio.parse(form_request(payload("status_completed.txt")), "US", "UTC")

    assert from_json == from_form


@pytest.mark.parametrize(
    ("call_status", "status"),
    [
        ("busy", "busy"),
        ("no-answer", "no_answer"),
        ("failed", "failed"),
        ("canceled", "canceled"),
    ],
)
def test_unsuccessful_outcomes_map_to_canonical_statuses(call_status, status):
    """Each Twilio final status has its canonical word and answered is false."""
    body = payload("status_completed.txt").replace(
        b"CallStatus=completed", f"CallStatus={call_status}".encode()
    )

    [event] = twilio.parse(form_request(body), "US", "UTC")

    assert (event.event_kind, event.status, event.answered) == ("end", status, False)


def test_in_progress_callback_is_an_answer():
    """in-progress means someone is on the call."""
    body = payload("status_ringing.txt").replace(
        b"CallStatus=ringing", b"CallStatus=in-progress"
    )

    [event] = twilio.parse(form_request(body), "US", "UTC")

    assert (event.event_kind, event.status, event.answered) == (
        "answer",
        "in_progress",
        True,
    )


def test_outbound_dial_leg_is_not_a_tracked_call():
    """The forwarding leg of a call has its own CallSid and is skipped."""
    assert (
        twilio.parse(form_request(payload("status_outbound_dial.txt")), "US", "UTC")
        == []
    )


def test_completed_recording_becomes_a_recording_event_at_receipt_time():
    """A recording callback carries no Timestamp, so the receipt time is used."""
    req = form_request(payload("recording_completed.txt"))

    events = twilio.parse(req, "US", "UTC", now=NOW)

    assert events == [
        CallEvent(
            provider="twilio",
            provider_call_id=CALL_SID,
            event_kind="recording",
            occurred_at=NOW,
            recording_ref=(
                "https://api.twilio.com/2010-04-01/Accounts/"
                "AC3f1d2b6c9e8a7f0b1c2d3e4f5a6b7c8d/Recordings/"
                "RE5d7f9b1c3e5a7c9e1b3d5f7a9c1e3b5d"
            ),
        )
    ]


def test_recording_still_in_progress_is_ignored():
    """Until RecordingStatus is completed there is no file to link."""
    assert (
        twilio.parse(form_request(payload("recording_in_progress.txt")), "US", "UTC")
        == []
    )


def test_withheld_caller_id_parses_as_no_caller():
    """Twilio's placeholder for a blocked caller id is a call with no number."""
    body = payload("status_completed.txt").replace(
        b"From=%2B14155550199", b"From=%2B266696687"
    )

    [event] = twilio.parse(form_request(body), "US", "UTC")

    assert event.caller is None


def test_callback_without_call_sid_is_a_bad_request():
    """CallSid identifies the call; without it nothing can be merged."""
    body = payload("status_completed.txt").replace(b"CallSid=", b"CallSidX=")

    with pytest.raises(BadRequest) as caught:
        twilio.parse(form_request(body), "US", "UTC")
    assert caught.value.code == "twilio_field"


def test_unknown_call_status_is_a_bad_request():
    """A CallStatus outside Twilio's vocabulary is refused, not guessed."""
    body = payload("status_completed.txt").replace(
        b"CallStatus=completed", b"CallStatus=done"
    )

    with pytest.raises(BadRequest) as caught:
        twilio.parse(form_request(body), "US", "UTC")
    assert str(caught.value) == (
        "Expected CallStatus to be one of queued, initiated, ringing, in-progress, "
        "completed, busy, no-answer, failed, canceled, found 'done'."
    )


def test_unreadable_timestamp_is_a_bad_request():
    """Timestamp must be an RFC 2822 date."""
    body = payload("status_completed.txt").replace(
        b"Timestamp=Thu%2C+12+Mar+2026+07%3A15%3A42+%2B0000", b"Timestamp=yesterday"
    )

    with pytest.raises(BadRequest) as caught:
        twilio.parse(form_request(body), "US", "UTC")
    assert caught.value.code == "twilio_time"


def test_empty_body_is_a_bad_request():
    """A callback with neither form nor JSON fields cannot be read."""
    req = WebhookRequest.build("POST", URL, {"Content-Type": FORM}, b"")

    with pytest.raises(BadRequest):
        twilio.parse(req, "US", "UTC")


def test_get_callback_is_signed_over_its_url_and_read_from_the_query():
    """With method GET the fields ride in the signed URL, not in a body."""
    query = payload("status_completed.txt").decode()
    url = f"https://hooks.calltrack.example/webhooks/twilio/status?{query}"
    signature = signers.twilio_signature(TOKEN, url, {})
    req = WebhookRequest.build("GET", url, {"X-Twilio-Signature": signature})

    twilio.verify(req, SECRETS, NOW)
    [event] = twilio.parse(req, "US", "UTC")

    assert (
        event
        == twilio.parse(form_request(payload("status_completed.txt")), "US", "UTC")[0]
    )
