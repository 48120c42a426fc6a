"""Zadarma notifications: zd_echo, the base64-of-hex signature, the field mapping."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from urllib.parse import parse_qsl

import pytest

import signers
from shared import callmerge
from shared.callevent import CallEvent
from shared.errors import BadRequest, Unauthorized
from shared.providers import ProviderSecrets, WebhookRequest, echo_response, zadarma

DATA = Path(__file__).parent / "data" / "webhooks" / "zadarma"
SECRET = "7c1e9a5b3d2f4e6a"
SECRETS = ProviderSecrets(zadarma_secret=SECRET)
URL = "https://hooks.calltrack.example/webhooks/zadarma"
FORM = "application/x-www-form-urlencoded"
NOW = dt.datetime(2026, 3, 12, 7, 15, 44, tzinfo=dt.UTC)
PBX_CALL_ID = "in_3f6b1f2a9c8d4e7fa1b2c3d4e5f60718"
# What Zadarma signs for each notification (its PHP library's getSignatureString).
SIGNED_FIELDS = {
    "NOTIFY_START": ("caller_id", "called_did", "call_start"),
    "NOTIFY_INTERNAL": ("caller_id", "called_did", "call_start"),
    "NOTIFY_END": ("caller_id", "called_did", "call_start"),
    "NOTIFY_ANSWER": ("caller_id", "destination", "call_start"),
    "NOTIFY_OUT_START": ("internal", "destination", "call_start"),
    "NOTIFY_RECORD": ("pbx_call_id", "call_id_with_rec"),
}


def utc(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


def payload(name: str) -> bytes:
    return (DATA / name).read_text().strip().encode()


def signed_text(body: bytes) -> str:
    fields = dict(parse_qsl(body.decode(), keep_blank_values=True))
    return "".join(fields[name] for name in SIGNED_FIELDS[fields["event"]])


def request(
    body: bytes,
    *,
    signed_body: bytes | None = None,
    secret: str = SECRET,
    signer=signers.zadarma_signature,
) -> WebhookRequest:
    signature = signer(secret, signed_text(signed_body or body))
    headers = {"Content-Type": FORM, "Signature": signature}
    return WebhookRequest.build("POST", URL, headers, body)


def test_url_check_echoes_zd_echo():
    """Saving the URL in Zadarma sends a GET whose zd_echo must come back."""
    req = WebhookRequest.build("GET", URL + "?zd_echo=8d3f0b5c1e7a", {})

    assert echo_response(req) == "8d3f0b5c1e7a"


def test_ordinary_notification_is_not_an_echo():
    """A notification without zd_echo gets None, so it goes on to verify."""
    assert echo_response(request(payload("notify_start.txt"))) is None


def test_echo_of_markup_is_refused():
    """Only a short token is echoed, so the endpoint reflects no markup."""
    req = WebhookRequest.build("GET", URL + "?zd_echo=%3Cscript%3E", {})

    with pytest.raises(BadRequest) as caught:
        echo_response(req)
    assert caught.value.code == "zadarma_echo"


@pytest.mark.parametrize(
    "name",
    [
        "notify_start.txt",
        "notify_internal.txt",
        "notify_answer.txt",
        "notify_end.txt",
        "notify_out_start.txt",
        "notify_record.txt",
    ],
)
def test_each_notification_signed_over_its_own_fields_is_accepted(name):
    """Every NOTIFY_* kind is checked against the fields Zadarma signs for it."""
    zadarma.verify(request(payload(name)), SECRETS, NOW)


def test_base64_of_the_raw_digest_is_rejected():
    """The trap: base64 of the 20-byte digest is not Zadarma's signature."""
    req = request(
        payload("notify_start.txt"), signer=signers.zadarma_signature_of_raw_digest
    )

    with pytest.raises(Unauthorized) as caught:
        zadarma.verify(req, SECRETS, NOW)
    assert caught.value.code == "signature"


def test_signed_field_changed_after_signing_is_rejected():
    """Another called_did than the one signed fails the signature."""
    signed = payload("notify_start.txt")
    tampered = signed.replace(b"called_did=74951234567", b"called_did=74950000000")

    with pytest.raises(Unauthorized) as caught:
        zadarma.verify(request(tampered, signed_body=signed), SECRETS, NOW)
    assert caught.value.code == "signature"


def test_notification_without_signature_is_rejected():
    """No Signature header (no API key set in Zadarma) is a 401."""
    req = WebhookRequest.build(
        "POST", URL, {"Content-Type": FORM}, payload("notify_end.txt")
    )

    with pytest.raises(Unauthorized) as caught:
        zadarma.verify(req, SECRETS, NOW)
    assert caught.value.code == "signature_missing"


def test_signature_made_with_another_secret_is_rejected():
    """Another account's API secret gives another signature."""
    req = request(payload("notify_end.txt"), secret="0000000000000000")

    with pytest.raises(Unauthorized):
        zadarma.verify(req, SECRETS, NOW)


def test_replayed_notification_verifies_again_but_merges_as_a_no_op():
    """Zadarma signs no send time; the repeat of an end changes nothing."""
    req = request(payload("notify_end.txt"))
    zadarma.verify(req, SECRETS, NOW)
    [event] = zadarma.parse(req, "RU", "Europe/Moscow", now=NOW)
    first = callmerge.merge(None, event)

    zadarma.verify(req, SECRETS, NOW + dt.timedelta(hours=5))
    [replay] = zadarma.parse(
        req, "RU", "Europe/Moscow", now=NOW + dt.timedelta(hours=5)
    )
    again = callmerge.merge(first.record, replay)

    assert again.changed is False


def test_unsigned_event_kind_is_a_bad_request():
    """An event without a known signing recipe cannot be verified."""
    body = payload("notify_start.txt").replace(b"NOTIFY_START", b"NOTIFY_SOMETHING")
    req = WebhookRequest.build(
        "POST", URL, {"Content-Type": FORM, "Signature": "eA=="}, body
    )

    with pytest.raises(BadRequest) as caught:
        zadarma.verify(req, SECRETS, NOW)
    assert caught.value.code == "zadarma_event"


def test_start_maps_national_caller_and_moscow_time():
    """89161234567 in RU is +79161234567; call_start 10:14:50 Moscow is 07:14:50 UTC."""
    events = zadarma.parse(request(payload("notify_start.txt")), "RU", "Europe/Moscow")

    assert events == [
        CallEvent(
            provider="zadarma",
            provider_call_id=PBX_CALL_ID,
            event_kind="start",
            occurred_at=utc(2026, 3, 12, 7, 14, 50),
            tracking_number="+74951234567",
            caller="+79161234567",
            started_at=utc(2026, 3, 12, 7, 14, 50),
            status="ringing",
        )
    ]


def test_answered_end_carries_duration_as_talk_time():
    """disposition answered and duration 40 give an answered end of 40 s."""
    req = request(payload("notify_end.txt"))

    events = zadarma.parse(req, "RU", "Europe/Moscow", now=NOW)

    assert events == [
        CallEvent(
            provider="zadarma",
            provider_call_id=PBX_CALL_ID,
            event_kind="end",
            occurred_at=NOW,
            tracking_number="+74951234567",
            caller="+79161234567",
            started_at=utc(2026, 3, 12, 7, 14, 50),
            answered=True,
            talk_s=40,
            status="answered",
        )
    ]


def test_unanswered_end_maps_no_answer():
    """disposition "no answer" is the canonical no_answer."""
    req = request(payload("notify_end_no_answer.txt"))

    [event] = zadarma.parse(req, "RU", "Europe/Moscow", now=NOW)

    assert (event.caller, event.answered, event.status, event.talk_s) == (
        "+79031112233",
        False,
        "no_answer",
        0,
    )


@pytest.mark.parametrize(
    ("disposition", "status"),
    [
        ("busy", "busy"),
        ("cancel", "canceled"),
        ("failed", "failed"),
        ("no money", "failed"),
        ("unallocated number", "failed"),
    ],
)
def test_dispositions_map_to_canonical_statuses(disposition, status):
    """Zadarma's dispositions map to the canonical words; network ones are failed."""
    body = payload("notify_end.txt").replace(
        b"disposition=answered", signers.form_body({"disposition": disposition})
    )

    [event] = zadarma.parse(request(body), "RU", "Europe/Moscow", now=NOW)

    assert (event.status, event.answered, event.talk_s) == (status, False, 0)


def test_record_notification_links_the_recording():
    """call_id_with_rec names the recording; the receipt time dates it."""
    req = request(payload("notify_record.txt"))

    events = zadarma.parse(req, "RU", "Europe/Moscow", now=NOW)

    assert events == [
        CallEvent(
            provider="zadarma",
            provider_call_id=PBX_CALL_ID,
            event_kind="recording",
            occurred_at=NOW,
            recording_ref="1773299690.4452791",
        )
    ]


@pytest.mark.parametrize(
    "name", ["notify_internal.txt", "notify_answer.txt", "notify_out_start.txt"]
)
def test_extension_and_outgoing_notifications_are_ignored(name):
    """NOTIFY_INTERNAL, NOTIFY_ANSWER and NOTIFY_OUT_* add nothing to track."""
    assert zadarma.parse(request(payload(name)), "RU", "Europe/Moscow", now=NOW) == []


def test_call_start_in_another_format_is_a_bad_request():
    """call_start must be unix seconds or "YYYY-MM-DD HH:MM:SS"."""
    body = payload("notify_start.txt").replace(
        b"2026-03-12+10%3A14%3A50", b"12.03.2026+10%3A14"
    )

    with pytest.raises(BadRequest) as caught:
        zadarma.parse(request(body), "RU", "Europe/Moscow")
    assert caught.value.code == "zadarma_time"


def test_start_without_pbx_call_id_is_a_bad_request():
    """pbx_call_id is the call's identity."""
    body = payload("notify_start.txt").replace(b"pbx_call_id=", b"call_id=")

    with pytest.raises(BadRequest) as caught:
        zadarma.parse(request(body), "RU", "Europe/Moscow")
    assert str(caught.value) == "Expected zadarma field 'pbx_call_id', found nothing."
