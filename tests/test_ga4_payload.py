"""The GA4 event of a stitched call, the protocol's limits, and the fake's checks."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from shared import ga4
from shared.errors import PermanentError, TransientError
from tests.fakes import ga4 as fake_ga4

NOW = dt.datetime(2026, 3, 12, 10, 5, tzinfo=dt.UTC)
STARTED = "2026-03-12T10:00:00+00:00"
STARTED_MICROS = 1_773_309_600_000_000
PAID_RECORD = {"source": "google", "medium": "cpc", "utm_source": "google",
               "utm_medium": "cpc", "utm_campaign": "kitchen_msk",
               "utm_content": "ad_1", "utm_term": "kitchen"}


def stitched(**overrides) -> dict:
    """A call.stitched body as the stitch function publishes it (the parts GA4
    reads)."""
    body = {
        "schema": 1, "call_id": "call-1", "version": 1, "site_id": "demo",
        "started_at": STARTED, "status": "answered", "talk_s": 40,
        "recording_ref": "https://pbx.example.ru/rec/1.mp3",
        "source": "google", "medium": "cpc", "campaign": "kitchen_msk",
        "content": "ad_1", "term": "kitchen", "direct_return": False,
        "analytics_ids": {"ga_client_id": "123456789.1700000000",
                          "ga_session_id": "1741773000", "ym_client_id": None,
                          "fbp": None, "fbc": None},
        "consent_analytics": True, "consent_ads": False,
        "last_non_direct_touch": PAID_RECORD, "caller": "+79161234567",
    }
    return body | overrides


def test_a_stitched_call_becomes_one_call_event_in_the_visitors_session():
    payload = ga4.build(stitched(), NOW)

    assert payload == {
        "client_id": "123456789.1700000000",
        "timestamp_micros": STARTED_MICROS,
        "consent": {"ad_user_data": "DENIED", "ad_personalization": "DENIED"},
        "events": [{"name": "call", "params": {
            "source": "google", "medium": "cpc", "campaign": "kitchen_msk",
            "content": "ad_1", "term": "kitchen", "session_id": "1741773000",
            "engagement_time_msec": 100, "call_status": "answered", "duration": 40,
            "recording_url": "https://pbx.example.ru/rec/1.mp3",
        }}],
    }


def recent() -> dict:
    """A call that started a minute ago, for checks against the real clock."""
    started = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    return stitched(started_at=started.isoformat())


def test_the_built_event_passes_the_debug_endpoints_checks():
    payload = ga4.build(recent(), dt.datetime.now(dt.UTC))

    assert fake_ga4.validate(json.dumps(payload).encode()) == []


def test_the_caller_number_never_goes_to_ga4():
    payload = ga4.build(stitched(), NOW)

    assert "+79161234567" not in json.dumps(payload)


def test_a_direct_return_credits_the_last_non_direct_touch():
    body = stitched(source="(direct)", medium="(none)", campaign=None, content=None,
                    term=None, direct_return=True)
    params = ga4.build(body, NOW)["events"][0]["params"]

    assert {k: params[k] for k in ("source", "medium", "campaign", "content",
                                   "term")} == {
        "source": "google", "medium": "cpc", "campaign": "kitchen_msk",
        "content": "ad_1", "term": "kitchen"}


def test_ad_consent_grants_ad_user_data_and_personalization():
    payload = ga4.build(stitched(consent_ads=True), NOW)

    assert payload["consent"] == {"ad_user_data": "GRANTED",
                                  "ad_personalization": "GRANTED"}


@pytest.mark.parametrize("change,reason", [
    ({"consent_analytics": False}, "consent"),
    ({"consent_analytics": None}, "consent"),
    ({"analytics_ids": None}, "no_client_id"),
    ({"analytics_ids": {"ga_client_id": "not-a-client-id"}}, "no_client_id"),
])
def test_no_consent_or_no_client_id_sends_nothing(change, reason):
    result = ga4.build(stitched(**change), NOW)

    assert isinstance(result, ga4.Skip)
    assert result.reason == reason


def test_a_call_older_than_72_hours_is_not_sent_and_says_why():
    result = ga4.build(stitched(), dt.datetime(2026, 3, 15, 10, 1, tzinfo=dt.UTC))

    assert result == ga4.Skip(
        "too_old", "the call started 72 h ago, and GA4 accepts events at most 72 h old")


def test_a_call_exactly_72_hours_old_is_still_sent():
    result = ga4.build(stitched(), dt.datetime(2026, 3, 15, 10, 0, tzinfo=dt.UTC))

    assert result["timestamp_micros"] == STARTED_MICROS


def test_a_call_from_a_clock_ahead_of_ours_is_sent_as_now():
    result = ga4.build(stitched(), dt.datetime(2026, 3, 12, 9, 59, tzinfo=dt.UTC))

    assert result["timestamp_micros"] == STARTED_MICROS - 60_000_000


def test_values_are_cut_to_100_characters_and_empty_ones_left_out():
    body = stitched(campaign="c" * 150, content=None, term="",
                    recording_ref="https://pbx.example.ru/" + "r" * 100)
    params = ga4.build(body, NOW)["events"][0]["params"]

    assert params["campaign"] == "c" * 100
    assert "content" not in params and "term" not in params
    assert "recording_url" not in params


def test_a_provider_recording_id_is_no_recording_url():
    params = ga4.build(stitched(recording_ref="rec-42"), NOW)["events"][0]["params"]

    assert "recording_url" not in params


def test_an_unanswered_call_has_duration_0():
    params = ga4.build(stitched(status="no_answer", talk_s=None),
                       NOW)["events"][0]["params"]

    assert (params["call_status"], params["duration"]) == ("no_answer", 0)


@pytest.mark.parametrize("raw,expected", [
    ("123456789.1700000000", "123456789.1700000000"),
    ("GA1.1.123456789.1700000000", "123456789.1700000000"),
    ("GA1.2.123.456", "123.456"),
    ("123456789", None),
    ("", None),
    (None, None),
])
def test_client_id_is_read_from_the_ga_cookie_or_its_tail(raw, expected):
    assert ga4.client_id(raw) == expected


@pytest.mark.parametrize("raw,expected", [
    ("1712345678", "1712345678"),
    ("GS1.1.1712345678.3.1.1712345999.0.0.0", "1712345678"),
    ("GS2.1.s1712345678$o3$g1$t1712345999", "1712345678"),
    ("abc", None),
    (None, None),
])
def test_session_id_is_read_from_the_ga_id_cookie_or_the_id(raw, expected):
    assert ga4.session_id(raw) == expected


def test_check_refuses_an_event_beyond_the_protocol_limits():
    payload = {"client_id": "1.2", "events": [
        {"name": "call", "params": {f"p{i}": "x" * 101 for i in range(26)}}]}

    with pytest.raises(PermanentError) as err:
        ga4.check(payload)
    assert err.value.code == "ga4_limits"
    assert "at most 25 parameters, found 26" in err.value.message
    assert "p0 of at most 100 characters" in err.value.message


# -- the fake's validation, as the debug endpoint's ---------------------------


def codes(body) -> list[tuple[str, str]]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return [(m["fieldPath"], m["validationCode"]) for m in fake_ga4.validate(raw)]


def event(name="call", **params) -> dict:
    return {"name": name, "params": params}


@pytest.mark.parametrize("body,expected", [
    ({"events": [event()]}, [("client_id", "VALUE_REQUIRED")]),
    ({"client_id": 5, "events": [event()]}, [("client_id", "VALUE_INVALID")]),
    ({"client_id": "1.2", "events": []}, [("events", "VALUE_REQUIRED")]),
    ({"client_id": "1.2", "events": [event()] * 26},
     [("events", "EXCEEDED_MAX_ENTITIES")]),
    ({"client_id": "1.2", "events": [event("9call")]},
     [("events[0].name", "NAME_INVALID")]),
    ({"client_id": "1.2", "events": [event("c" * 41)]},
     [("events[0].name", "NAME_INVALID")]),
    ({"client_id": "1.2", "events": [event("session_start")]},
     [("events[0].name", "NAME_RESERVED")]),
    ({"client_id": "1.2", "events": [event(ga_x="1")]},
     [("events[0].params.ga_x", "NAME_RESERVED")]),
    ({"client_id": "1.2", "events": [event(note="x" * 101)]},
     [("events[0].params.note", "VALUE_OUT_OF_BOUNDS")]),
    ({"client_id": "1.2", "events": [event(**{f"p{i}": 1 for i in range(26)})]},
     [("events[0].params", "EXCEEDED_MAX_ENTITIES")]),
    ({"client_id": "1.2", "events": [event(note={"a": 1})]},
     [("events[0].params.note", "VALUE_INVALID")]),
    ({"client_id": "1.2", "timestamp_micros": 1, "events": [event()]},
     [("timestamp_micros", "VALUE_OUT_OF_BOUNDS")]),
    ({"client_id": "1.2", "consent": {"ad_user_data": "yes"}, "events": [event()]},
     [("consent.ad_user_data", "VALUE_INVALID")]),
    ({"client_id": "1.2", "user_properties": {"plan": {"value": "x" * 37}},
      "events": [event()]}, [("user_properties.plan", "VALUE_OUT_OF_BOUNDS")]),
    ({"client_id": "1.2", "user_properties": {"user_id": {"value": "1"}},
      "events": [event()]}, [("user_properties.user_id", "NAME_RESERVED")]),
])
def test_the_fake_answers_the_debug_endpoints_validation_codes(body, expected):
    assert codes(body) == expected


def test_the_fake_flags_a_duplicated_name_and_an_oversized_body():
    duplicated = b'{"client_id":"1.2","events":[{"name":"call","params":' \
                 b'{"a":1,"a":2}}]}'
    huge = json.dumps({"client_id": "1.2", "events": [event()],
                       "pad": "x" * 130_000}).encode()

    assert codes(duplicated) == [("a", "NAME_DUPLICATED")]
    assert codes(huge) == [("", "VALUE_OUT_OF_BOUNDS")]


# -- the sender against the fake over HTTP ------------------------------------


@pytest.fixture
def fake():
    fake_ga4.SERVER.clear()
    yield fake_ga4.SERVER
    fake_ga4.SERVER.clear()


def test_the_sender_posts_to_mp_collect_with_id_and_secret(fake):
    payload = ga4.build(recent(), dt.datetime.now(dt.UTC))
    ga4.Sender(fake.url).send("G-TEST12345", "mp-secret-demo", payload)

    (got,) = fake.received()
    assert got.query == {"measurement_id": "G-TEST12345",
                         "api_secret": "mp-secret-demo"}
    assert got.body == payload
    assert got.valid


def test_the_sender_reads_the_debug_endpoints_messages(fake):
    messages = ga4.Sender(fake.url).validate("G-TEST12345", "s", {"events": []})

    assert [m["validationCode"] for m in messages] == ["VALUE_REQUIRED",
                                                       "VALUE_REQUIRED"]


@pytest.mark.parametrize("status,error", [
    (500, TransientError), (503, TransientError), (429, TransientError),
    (408, TransientError), (400, PermanentError), (403, PermanentError),
])
def test_the_sender_retries_only_what_may_pass_later(fake, status, error):
    fake.fail_next(status)

    with pytest.raises(error) as err:
        ga4.Sender(fake.url).send("G-TEST12345", "secret-value", {"events": []})
    assert err.value.message == (
        f"Expected GA4 to accept the event, found HTTP {status}.")


def test_an_unreachable_endpoint_is_transient_and_never_shows_the_secret():
    with pytest.raises(TransientError) as err:
        ga4.Sender("http://127.0.0.1:9", timeout_s=2).send(
            "G-TEST12345", "secret-value", {"events": []})
    assert err.value.message == "Expected GA4 to answer, found ConnectionError."
