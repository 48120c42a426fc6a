"""Pure tests of the export payloads: each platform's request format, the
gate (consent, windows, identifiers) and the answer parsing. No I/O: the
bodies are checked with the fakes' own validators."""

from __future__ import annotations

import datetime as dt
import hashlib

from shared.exports import due
from shared.exports import payloads as pl
from shared.exports.model import (
    ACCEPTED,
    EXPIRED,
    REJECTED,
    RETRY_AFTER,
    Conversion,
    parse_config,
)
from shared.exports.senders import GoogleLegacy
from tests.fakes import ads_google, ads_meta

NOW = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC)
PHONE_HASH = hashlib.sha256(b"+79161234567").hexdigest()
EXTRA = {
    "exports": {
        "values": {"qualified_call": 1500, "lead": 3000},
        "google": {
            "customer_id": "111-222-3333",
            "actions": {"qualified_call": "901", "deal": "902", "lead": "903"},
        },
        "yandex": {
            "counter_id": "4455",
            "calls": ["call"],
            "goals": {"deal": "deal_won"},
        },
        "meta": {
            "pixel_id": "778899",
            "events": {"qualified_call": "Contact", "deal": "Purchase"},
        },
        "vk": {"pixel_id": "3344", "goals": {"deal": "purchase"}},
    }
}
CONF = parse_config("demo", EXTRA, "RUB", "Europe/Moscow")


def conv(**over) -> Conversion:
    base = dict(
        conversion_id="qcall:c1",
        site_id="demo",
        kind="qualified_call",
        occurred_at=NOW - dt.timedelta(hours=8),
        consent_ads=True,
        click_ids={"gclid": "Cj0KCQ-test"},
        caller_hash=PHONE_HASH,
        analytics_ids={
            "ym_client_id": "1700000000123456789",
            "fbp": "fb.1.1764000000000.123456",
        },
        visitor_id="v-1",
        touch_at=NOW - dt.timedelta(hours=9),
        landing_page="https://shop.example.test/?rb_clickid=rb77&x=1",
        answered=True,
        talk_s=95,
        ring_s=7,
        first_time_caller=True,
    )
    return Conversion(**{**base, **over})


def test_config_normalises_ids_and_lists_platforms():
    assert CONF.google.customer_id == "1112223333"
    assert CONF.platforms() == ["google", "yandex", "meta", "vk"]
    assert CONF.takes("yandex", "call") and CONF.takes("yandex", "deal")
    assert not CONF.takes("meta", "call")


def test_funnel_makes_a_qualified_call_only_when_answered_long_enough():
    call = conv(conversion_id="call:c1", kind="call")

    assert [c.kind for c in due.funnel(call, CONF)] == ["call", "qualified_call"]
    assert due.funnel(call, CONF)[1].conversion_id == "qcall:c1"
    assert [
        c.kind
        for c in due.funnel(conv(conversion_id="call:c2", kind="call", talk_s=20), CONF)
    ] == ["call"]
    assert (
        len(
            due.funnel(conv(conversion_id="call:c3", kind="call", answered=False), CONF)
        )
        == 1
    )


def test_no_consent_means_nothing_for_any_platform():
    for platform in CONF.platforms():
        out = pl.gate(conv(consent_ads=False), platform, CONF, NOW)
        assert out.state == REJECTED and out.reason.startswith("no_consent")


def test_windows_google_90_days_from_click_yandex_21_meta_7():
    old = conv(
        occurred_at=NOW - dt.timedelta(days=8), touch_at=NOW - dt.timedelta(days=22)
    )

    assert pl.gate(old, "google", CONF, NOW) is None
    assert pl.gate(old, "yandex", CONF, NOW).state == EXPIRED
    assert pl.gate(old, "meta", CONF, NOW).state == EXPIRED
    ancient = conv(touch_at=NOW - dt.timedelta(days=91))
    assert pl.gate(ancient, "google", CONF, NOW).state == EXPIRED


def test_identifiers_required_per_platform():
    bare = conv(
        click_ids={},
        caller_hash=None,
        analytics_ids={},
        visitor_id=None,
        landing_page=None,
    )

    for platform in CONF.platforms():
        assert pl.gate(bare, platform, CONF, NOW).reason.startswith("no_identifier")
    # The caller hash alone is enough for Google (hashed phone).
    assert pl.gate(conv(click_ids={}), "google", CONF, NOW) is None


def test_datamanager_request_is_valid_and_uses_its_own_consent_names():
    events = [
        pl.datamanager_event(conv(), CONF),
        pl.datamanager_event(
            conv(
                conversion_id="deal:demo:amo:7",
                kind="deal",
                value=125000.0,
                click_ids={"gbraid": "gb1"},
            ),
            CONF,
        ),
    ]
    body = pl.datamanager_request(events, CONF)

    assert ads_google.SERVER.check_ingest(body) == []
    assert body["encoding"] == "HEX"
    first = body["events"][0]
    assert first["consent"] == {
        "adUserData": "CONSENT_GRANTED",
        "adPersonalization": "CONSENT_GRANTED",
    }
    assert first["eventSource"] == "PHONE"
    assert first["transactionId"] == "qcall:c1"
    assert first["eventTimestamp"] == "2026-12-03T04:00:00Z"
    assert first["userData"] == {"userIdentifiers": [{"phoneNumber": PHONE_HASH}]}
    assert first["conversionValue"] == 1500 and first["currency"] == "RUB"
    assert body["events"][1]["adIdentifiers"] == {"gbraid": "gb1"}
    assert {d["productDestinationId"] for d in body["destinations"]} == {"901", "902"}


def test_datamanager_without_phone_needs_no_encoding_and_one_click_id():
    event = pl.datamanager_event(
        conv(
            caller_hash=None, click_ids={"gclid": "g1", "gbraid": "b1", "wbraid": "w1"}
        ),
        CONF,
    )

    assert event["adIdentifiers"] == {"gclid": "g1"}
    body = pl.datamanager_request([event], CONF)
    assert "encoding" not in body
    assert ads_google.SERVER.check_ingest(body) == []


def test_fake_refuses_what_the_contract_refuses():
    event = pl.datamanager_event(conv(), CONF)
    body = pl.datamanager_request([event], CONF)
    wrong = {**body, "events": [{**event, "consent": {"adUserData": "GRANTED"}}]}
    no_encoding = {k: v for k, v in body.items() if k != "encoding"}
    too_many = {**body, "events": [event] * 2001}

    assert ads_google.SERVER.check_ingest(wrong)
    assert ads_google.SERVER.check_ingest(no_encoding)
    assert ads_google.SERVER.check_ingest(too_many)


def test_legacy_click_conversion_date_time_has_the_offset():
    body = pl.legacy_click_conversion(conv(), CONF)

    assert body["conversionDateTime"] == "2026-12-03 07:00:00+03:00"
    assert body["conversionAction"] == "customers/1112223333/conversionActions/901"
    assert body["gclid"] == "Cj0KCQ-test" and "userIdentifiers" not in body
    assert body["consent"] == {"adUserData": "GRANTED", "adPersonalization": "GRANTED"}
    by_phone = pl.legacy_click_conversion(conv(click_ids={}), CONF)
    assert by_phone["userIdentifiers"] == [{"hashedPhoneNumber": PHONE_HASH}]
    assert pl.legacy_request([body])["partialFailure"] is True


def test_legacy_partial_failure_maps_rows_by_index():
    part = [conv(conversion_id=f"qcall:{i}") for i in range(4)]
    answer = {
        "results": [{}, {}, {}, {"gclid": "x"}],
        "partialFailureError": {
            "details": [
                {
                    "errors": [
                        {
                            "errorCode": {"conversionUploadError": code},
                            "message": code,
                            "location": {
                                "fieldPathElements": [
                                    {"fieldName": "conversions", "index": i}
                                ]
                            },
                        }
                        for i, code in enumerate(
                            [
                                "TOO_RECENT_EVENT",
                                "ORDER_ID_ALREADY_IN_USE",
                                "UNPARSEABLE_GCLID",
                            ]
                        )
                    ]
                }
            ]
        },
    }

    out = GoogleLegacy._partial(part, answer, NOW)

    assert [r.state for r in out] == [RETRY_AFTER, ACCEPTED, REJECTED, ACCEPTED]
    assert out[0].retry_at == NOW + dt.timedelta(hours=6)
    assert out[2].reason.startswith("UNPARSEABLE_GCLID")


def test_yandex_calls_csv_has_the_contract_columns():
    now = NOW
    calls = [
        conv(conversion_id="call:c1", kind="call", value=None),
        conv(
            conversion_id="call:c2",
            kind="call",
            answered=False,
            talk_s=0,
            analytics_ids={},
            click_ids={"yclid": "778"},
            occurred_at=NOW + dt.timedelta(minutes=1),
        ),
    ]
    files = pl.yandex_csv(
        [(c, pl.yandex_call_row(c, CONF, now)) for c in calls], pl.CALL_COLUMNS
    )

    assert set(files) == {"ClientId", "Yclid"}
    lines = files["ClientId"].splitlines()
    assert lines[0] == (
        "ClientId,DateTime,Price,Currency,TalkDuration,HoldDuration,"
        "CallMissed,FirstTimeCaller,Tag,URL"
    )
    at = int((NOW - dt.timedelta(hours=8)).timestamp())
    assert lines[1].startswith(f"1700000000123456789,{at},,,95,7,0,1,call,")
    # A time in the future is clamped to the past; missed calls say so.
    yclid = files["Yclid"].splitlines()[1].split(",")
    assert int(yclid[1]) < NOW.timestamp() and yclid[6] == "1"


def test_meta_event_is_valid_and_matches_the_phone_by_its_digits_hash():
    digits = hashlib.sha256(b"79161234567").hexdigest()
    event = pl.meta_event(
        conv(click_ids={"fbclid": "IwAR0abc"}, caller_hash_digits=digits), CONF
    )

    assert ads_meta.check_event(event, NOW.timestamp()) is None
    assert event["action_source"] == "phone_call"
    assert event["event_id"] == "qcall:c1"
    # Meta's form, never the E.164 hash that Google gets.
    assert event["user_data"]["ph"] == [digits]
    assert pl.meta_event(conv(), CONF)["user_data"].get("ph") is None
    assert event["user_data"]["fbc"] == (
        f"fb.1.{int((NOW - dt.timedelta(hours=9)).timestamp() * 1000)}.IwAR0abc"
    )
    assert event["user_data"]["external_id"] == [hashlib.sha256(b"v-1").hexdigest()]
    deal = pl.meta_event(
        conv(conversion_id="deal:demo:amo:7", kind="deal", value=99.5, currency="usd"),
        CONF,
    )
    assert deal["action_source"] == "system_generated"
    assert deal["custom_data"] == {"value": 99.5, "currency": "USD"}


def test_vk_query_keeps_the_tracker_syntax():
    deal = conv(conversion_id="deal:demo:amo:7", kind="deal", value=125000.0)

    assert pl.vk_query(deal, CONF) == "id=3344;e=RG%3A125000/purchase&rb_clickid=rb77"


def test_chunks_respect_the_platform_limits():
    assert [len(c) for c in pl.chunks(list(range(4500)), pl.GOOGLE_MAX_EVENTS)] == [
        2000,
        2000,
        500,
    ]
    assert pl.META_MAX_EVENTS == 1000
