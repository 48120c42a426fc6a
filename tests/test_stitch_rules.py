"""Stitching rules without I/O: reasons, confidences, touches, repeat callers."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest

from shared import stitching
from shared.errors import BadRequest
from shared.phones import phone_hash
from shared.sites import site_from_doc
from shared.stitching import Call, Held

T0 = dt.datetime(2026, 3, 12, 10, 0, tzinfo=dt.UTC)
NOW = T0 + dt.timedelta(minutes=3)
DEFAULT = "+74951230000"
NUMBER = "+74955551000"
CALLER_HASH = phone_hash("+79161234567")
SITE = site_from_doc(
    {"site_id": "demo", "default_number": DEFAULT, "cooldown_s": 900, "lease_s": 120}
)
LP = "https://shop.example.test/kitchens"
PAID = {
    "utm_source": "google",
    "utm_medium": "cpc",
    "utm_campaign": "kitchen_msk",
    "utm_content": "ad_1",
    "utm_term": "kitchen",
    "gclid": "Cj0-test",
    "landing_page": LP,
    "at": "2026-03-12T09:50:00+00:00",
}
ORGANIC = {
    "referrer": "https://www.google.com/",
    "landing_page": LP,
    "at": "2026-03-01T08:00:00+00:00",
}
DIRECT = {
    "landing_page": "https://shop.example.test/",
    "at": "2026-03-12T09:55:00+00:00",
}
IDS = {"ga_client_id": "123456789.1700000000", "ga_session_id": "1741773000"}


def call(**overrides) -> Call:
    values = {
        "call_id": "call-1",
        "site_id": "demo",
        "started_at": T0,
        "tracking_number": NUMBER,
        "provider": "generic",
        "provider_call_id": "p-1",
        "caller_hash": CALLER_HASH,
        "caller_mask": "+7*********67",
        "answered": True,
        "ring_s": 5,
        "talk_s": 40,
        "status": "answered",
        "recording_ref": None,
        "raw_ref": "raw/p-1",
        "completed_at": T0 + dt.timedelta(seconds=45),
    }
    return Call(**(values | overrides))


def number(kind="dynamic", overflow=False, channel=None, site_id="demo") -> dict:
    return {
        "number": NUMBER,
        "site_id": site_id,
        "kind": kind,
        "overflow": overflow,
        "channel": channel,
    }


def held(
    hold_id="h1",
    visitor="v1",
    session="s1",
    start_s=-300,
    end_s=60,
    touch=PAID,
    first=None,
    last_non_direct=None,
    ids=IDS,
    consent=True,
    session_doc=True,
    visitor_doc=None,
    number_=NUMBER,
    site_id="demo",
) -> Held:
    """A hold of NUMBER from T0+start_s to T0+end_s with its session."""
    hold = {
        "site_id": site_id,
        "number": number_,
        "session_id": session,
        "visitor_id": visitor,
        "from": T0 + dt.timedelta(seconds=start_s),
        "until": T0 + dt.timedelta(seconds=end_s),
        "reason": "pool",
        "shared": False,
        "released": False,
    }
    doc = None
    if session_doc:
        doc = {
            "site_id": site_id,
            "visitor_id": visitor,
            "touch": touch,
            "page_url": LP,
            "first_touch": first or touch,
            "last_touch": touch,
            "last_non_direct_touch": last_non_direct,
            "ids": ids,
            "consent": {"analytics": consent, "ads": consent},
        }
    return Held(hold_id, hold, doc, visitor_doc)


def run(c=None, num=None, holds=(), caller=None, site=SITE):
    num = number() if num is None else num
    return stitching.stitch(c or call(), site, num, list(holds), caller, NOW)


def record(touch: dict) -> dict:
    return stitching.touch_record(touch)


def earlier_caller(
    confidence=0.97, visitor="v0", at=T0 - dt.timedelta(days=2), attributed=True
) -> dict:
    last = None
    if attributed:
        last = {
            "call_id": "call-0",
            "at": at,
            "reason": "live_hold",
            "confidence": confidence,
            "visitor_id": visitor,
            "session_id": "s0",
            "first_touch": ORGANIC,
            "last_touch": PAID,
            "last_non_direct_touch": PAID,
        }
    return {
        "site_id": "demo",
        "caller_hash": CALLER_HASH,
        "first_seen_at": at,
        "first_call_id": "call-0",
        "last_call_at": at,
        "last_call_id": "call-0",
        "calls": 1,
        "last_attributed": last,
    }


# -- dynamic numbers ----------------------------------------------------------


def test_a_live_hold_alone_attributes_the_call_at_097_with_every_session_fact():
    result = run(holds=[held()])
    row = result.row

    assert (result.reason, result.confidence) == ("live_hold", 0.97)
    assert (row["session_id"], row["visitor_id"], row["hold_id"]) == ("s1", "v1", "h1")
    assert row["candidates"] == [
        {
            "session_id": "s1",
            "visitor_id": "v1",
            "hold_id": "h1",
            "score": 0.97,
            "reason": "live_hold",
        }
    ]
    assert (
        row["source"],
        row["medium"],
        row["campaign"],
        row["content"],
        row["term"],
    ) == ("google", "cpc", "kitchen_msk", "ad_1", "kitchen")
    assert row["click_ids"] == {
        "gclid": "Cj0-test",
        "gbraid": None,
        "wbraid": None,
        "yclid": None,
        "fbclid": None,
    }
    assert row["analytics_ids"] == {
        "ga_client_id": "123456789.1700000000",
        "ga_session_id": "1741773000",
        "ym_client_id": None,
        "fbp": None,
        "fbc": None,
    }
    assert (row["consent_analytics"], row["consent_ads"]) == (True, True)
    assert row["landing_page"] == LP
    assert row["last_touch"] == record(PAID)
    assert row["number_kind"] == "dynamic"
    assert row["direct_return"] is False


def test_the_row_keeps_the_caller_only_as_hash_and_mask():
    row = run(holds=[held()]).row

    assert (row["caller_hash"], row["caller_mask"]) == (CALLER_HASH, "+7*********67")
    assert "caller" not in row


def test_row_carries_the_call_facts_and_its_insert_id():
    row = run(holds=[held()]).row

    assert {
        k: row[k]
        for k in (
            "row_id",
            "call_id",
            "version",
            "site_id",
            "provider",
            "provider_call_id",
            "started_at",
            "completed_at",
            "number",
            "answered",
            "status",
            "ring_s",
            "talk_s",
            "recording_ref",
            "raw_ref",
            "recorded_at",
            "stitched_at",
        )
    } == {
        "row_id": "call-1:1",
        "call_id": "call-1",
        "version": 1,
        "site_id": "demo",
        "provider": "generic",
        "provider_call_id": "p-1",
        "started_at": "2026-03-12T10:00:00+00:00",
        "completed_at": "2026-03-12T10:00:45+00:00",
        "number": NUMBER,
        "answered": True,
        "status": "answered",
        "ring_s": 5,
        "talk_s": 40,
        "recording_ref": None,
        "raw_ref": "raw/p-1",
        "recorded_at": "2026-03-12T10:03:00+00:00",
        "stitched_at": "2026-03-12T10:03:00+00:00",
    }


@pytest.mark.parametrize(
    "gap_s,score",
    [
        (1, 0.9),
        (225, 0.8),
        (450, 0.7),
        (675, 0.6),
        (900, 0.5),
    ],
)
def test_a_call_after_the_page_closed_decays_from_09_to_05_over_the_cooldown(
    gap_s, score
):
    result = run(holds=[held(start_s=-600, end_s=-gap_s)])

    assert (result.reason, result.confidence) == ("cooldown", score)
    assert result.row["candidates"][0]["score"] == score


def test_a_late_call_within_cooldown_still_reaches_the_session():
    """A visitor who closed the page 10 minutes ago and then calls."""
    result = run(holds=[held(start_s=-900, end_s=-600)])

    assert (result.reason, result.confidence) == ("cooldown", 0.633)
    assert result.row["session_id"] == "s1"


def test_a_call_after_the_cooldown_has_no_hold():
    result = run(holds=[held(start_s=-1200, end_s=-901)])

    assert (result.reason, result.confidence) == ("no_hold", 0.0)
    assert result.row["candidates"] == []
    assert result.row["session_id"] is None


def test_without_a_cooldown_an_ended_hold_is_no_candidate():
    site = site_from_doc(
        {"site_id": "demo", "default_number": DEFAULT, "cooldown_s": 0}
    )
    result = run(holds=[held(end_s=-1)], site=site)

    assert result.reason == "no_hold"


@pytest.mark.parametrize("start_s,reason", [(5, "live_hold"), (6, "no_hold")])
def test_a_hold_starting_after_the_call_counts_only_within_clock_skew(start_s, reason):
    result = run(holds=[held(start_s=start_s, end_s=120)])

    assert result.reason == reason


def test_shared_overflow_number_with_two_live_candidates_halves_the_confidence():
    early = held("h1", "v1", "s1", start_s=-100)
    late = held("h2", "v2", "s2", start_s=-50, touch=ORGANIC)
    result = run(num=number(overflow=True), holds=[early, late])
    row = result.row

    assert (result.reason, result.confidence) == ("shared_number", 0.485)
    assert (row["session_id"], row["hold_id"]) == ("s2", "h2")
    assert [c["hold_id"] for c in row["candidates"]] == ["h2", "h1"]
    assert [c["score"] for c in row["candidates"]] == [0.97, 0.97]
    assert row["shared_number"] is True


def test_three_sharers_give_about_a_third():
    holds = [held(f"h{i}", f"v{i}", f"s{i}", start_s=-10 * i) for i in range(1, 4)]
    result = run(num=number(overflow=True), holds=holds)

    assert (result.reason, result.confidence) == ("shared_number", 0.323)
    assert result.row["hold_id"] == "h1"


def test_a_live_sharer_beats_one_in_cooldown_with_its_share_of_the_scores():
    live = held("h1", "v1", "s1", start_s=-100)
    cooling = held("h2", "v2", "s2", start_s=-900, end_s=-450)
    result = run(num=number(overflow=True), holds=[cooling, live])

    # 0.97 * 0.97 / (0.97 + 0.7)
    assert (result.reason, result.confidence) == ("shared_number", 0.563)
    assert result.row["hold_id"] == "h1"


def test_two_holds_of_one_visitor_are_one_candidate_person():
    """A session that took its number back after a page change: no ambiguity."""
    first = held("h1", "v1", "s1", start_s=-600, end_s=-300)
    again = held("h2", "v1", "s1", start_s=-290, end_s=60)
    result = run(holds=[first, again])

    assert (result.reason, result.confidence) == ("live_hold", 0.97)
    assert result.row["hold_id"] == "h2"
    assert len(result.row["candidates"]) == 2


def test_holds_of_another_number_or_site_are_ignored():
    holds = [held("h1", number_="+74955559999"), held("h2", site_id="other")]
    result = run(holds=holds)

    assert result.reason == "no_hold"


def test_an_expired_session_falls_back_to_the_visitors_touches():
    visitor = {
        "first_touch": ORGANIC,
        "last_touch": PAID,
        "last_non_direct_touch": PAID,
    }
    result = run(holds=[held(session_doc=False, visitor_doc=visitor)])
    row = result.row

    assert (result.reason, row["session_id"], row["visitor_id"]) == (
        "live_hold",
        "s1",
        "v1",
    )
    assert row["first_touch"] == record(ORGANIC)
    assert row["last_touch"] == record(PAID)
    assert row["analytics_ids"] is None
    assert row["consent_analytics"] is None


# -- direct returns -----------------------------------------------------------


def test_a_direct_return_keeps_first_and_last_non_direct_touches():
    result = run(holds=[held(touch=DIRECT, first=ORGANIC, last_non_direct=PAID)])
    row = result.row

    assert (row["source"], row["medium"]) == ("(direct)", "(none)")
    assert row["direct_return"] is True
    assert row["first_touch"] == record(ORGANIC)
    assert row["last_touch"] == record(DIRECT)
    assert row["last_non_direct_touch"] == record(PAID)
    assert row["click_ids"]["gclid"] == "Cj0-test"


def test_a_direct_first_visit_is_no_direct_return():
    result = run(holds=[held(touch=DIRECT)])

    assert result.row["direct_return"] is False
    assert result.row["last_non_direct_touch"] is None
    assert result.row["click_ids"] == {
        "gclid": None,
        "gbraid": None,
        "wbraid": None,
        "yclid": None,
        "fbclid": None,
    }


# -- static, default and unknown numbers --------------------------------------


def test_a_static_number_is_its_channel_with_confidence_1():
    channel = {
        "utm_source": "billboard",
        "utm_medium": "offline",
        "utm_campaign": "mkad_2026",
    }
    result = run(num=number(kind="static", channel=channel))
    row = result.row

    assert (result.reason, result.confidence) == ("static_number", 1.0)
    assert (row["number_kind"], row["source"], row["medium"], row["campaign"]) == (
        "static",
        "billboard",
        "offline",
        "mkad_2026",
    )
    assert row["last_touch"]["utm_source"] == "billboard"
    assert row["first_touch"] == row["last_touch"] == row["last_non_direct_touch"]
    assert (row["session_id"], row["candidates"]) == (None, [])


def test_the_default_number_gives_an_unattributed_row():
    result = run(c=call(tracking_number=DEFAULT), num=None)
    row = result.row

    assert (result.reason, result.confidence) == ("default_number", 0.0)
    assert (row["number_kind"], row["source"], row["visitor_id"]) == (
        "default",
        None,
        None,
    )
    assert (row["first_touch"], row["last_touch"], row["click_ids"]) == (
        None,
        None,
        None,
    )


@pytest.mark.parametrize(
    "tracking,num",
    [
        ("+74955557777", None),
        (NUMBER, {"number": NUMBER, "site_id": "other", "kind": "dynamic"}),
        (None, None),
    ],
)
def test_a_number_outside_the_sites_pool_is_unknown(tracking, num):
    result = stitching.stitch(call(tracking_number=tracking), SITE, num, [], None, NOW)

    assert (result.reason, result.confidence, result.row["number_kind"]) == (
        "unknown_number",
        0.0,
        "unknown",
    )


# -- repeat callers -----------------------------------------------------------


def test_a_first_call_creates_the_callers_record():
    result = run(holds=[held()])

    assert result.row["first_time_caller"] is True
    assert result.row["repeat_of_visitor"] is None
    caller = result.caller
    assert {
        k: caller[k]
        for k in (
            "site_id",
            "caller_hash",
            "first_seen_at",
            "first_call_id",
            "last_call_at",
            "last_call_id",
            "calls",
        )
    } == {
        "site_id": "demo",
        "caller_hash": CALLER_HASH,
        "first_seen_at": T0,
        "first_call_id": "call-1",
        "last_call_at": T0,
        "last_call_id": "call-1",
        "calls": 1,
    }
    assert caller["last_attributed"]["visitor_id"] == "v1"
    assert caller["last_attributed"]["last_touch"] == PAID
    assert caller["expires_at"] == NOW + dt.timedelta(days=760)


def test_a_repeat_caller_with_a_session_is_linked_to_the_earlier_visitor():
    result = run(holds=[held()], caller=earlier_caller())
    row = result.row

    assert (result.reason, result.confidence) == ("live_hold", 0.97)
    assert (row["first_time_caller"], row["repeat_of_visitor"]) == (False, "v0")
    assert row["visitor_id"] == "v1"
    assert result.caller["calls"] == 2
    assert result.caller["last_attributed"]["call_id"] == "call-1"


def test_a_repeat_caller_without_a_session_keeps_the_earlier_touches_at_05():
    result = run(c=call(tracking_number=DEFAULT), num=None, caller=earlier_caller())
    row = result.row

    assert (result.reason, result.confidence) == ("repeat_caller", 0.5)
    assert (row["visitor_id"], row["session_id"], row["number_kind"]) == (
        "v0",
        None,
        "default",
    )
    assert row["first_touch"] == record(ORGANIC)
    assert row["last_touch"] == record(PAID)
    assert (row["source"], row["medium"]) == ("google", "cpc")
    assert (row["first_time_caller"], row["repeat_of_visitor"]) == (False, "v0")
    assert row["analytics_ids"] is None
    # Only an attributed call becomes the caller's latest attribution.
    assert result.caller["last_attributed"]["call_id"] == "call-0"


def test_a_repeat_callers_fallback_is_never_surer_than_the_earlier_call():
    result = run(holds=[], caller=earlier_caller(confidence=0.3))

    assert (result.reason, result.confidence) == ("repeat_caller", 0.3)


def test_a_caller_whose_earlier_calls_were_unattributed_stays_unattributed():
    result = run(holds=[], caller=earlier_caller(attributed=False))

    assert (result.reason, result.confidence) == ("no_hold", 0.0)
    assert (result.row["first_time_caller"], result.row["repeat_of_visitor"]) == (
        False,
        None,
    )


def test_a_call_older_than_every_counted_one_is_the_first_time():
    """Stitched out of order: the earlier call arrives second."""
    later = earlier_caller(at=T0 + dt.timedelta(hours=1))
    result = run(holds=[held()], caller=later)

    assert result.row["first_time_caller"] is True
    assert result.caller["first_seen_at"] == T0
    assert result.caller["first_call_id"] == "call-1"
    assert result.caller["last_call_id"] == "call-0"
    # The later call's attribution stays the latest one.
    assert result.caller["last_attributed"]["call_id"] == "call-0"
    # And a later attribution is no fallback for an earlier call.
    fallback = run(holds=[], caller=later)
    assert fallback.reason == "no_hold"


def test_a_withheld_number_has_no_caller_record():
    result = run(c=call(caller_hash=None, caller_mask=None), holds=[held()])

    assert result.caller is None
    assert (result.row["first_time_caller"], result.row["repeat_of_visitor"]) == (
        None,
        None,
    )


# -- later versions, the message, parsing -------------------------------------


def test_a_later_recording_is_the_next_version_with_the_same_attribution():
    row = run(holds=[held()]).row
    later = stitching.with_recording(
        row, "https://pbx.example/rec/1.mp3", NOW + dt.timedelta(minutes=5)
    )

    assert (later["row_id"], later["version"], later["recording_ref"]) == (
        "call-1:2",
        2,
        "https://pbx.example/rec/1.mp3",
    )
    assert later["recorded_at"] == "2026-03-12T10:08:00+00:00"
    unchanged = {
        k: v
        for k, v in later.items()
        if k not in ("row_id", "version", "recording_ref", "recorded_at")
    }
    assert unchanged == {
        k: v
        for k, v in row.items()
        if k not in ("row_id", "version", "recording_ref", "recorded_at")
    }


def test_the_stitched_message_is_the_row_plus_schema_and_raw_caller():
    row = run(holds=[held()]).row
    body = stitching.message(row, "+79161234567")

    assert set(body) == (set(row) - {"row_id"}) | {"schema", "caller"}
    assert (body["schema"], body["caller"]) == (1, "+79161234567")


def test_meta_hash_is_made_only_from_the_number_that_matches_the_hash():
    body = {"call_id": "c-9", "site_id": "demo", "caller": "+79161234567",
            "caller_hash": CALLER_HASH, "started_at": "2026-03-12T10:00:00Z"}

    assert stitching.parse_call(body).caller_hash_digits == (
        hashlib.sha256(b"79161234567").hexdigest())
    other = {**body, "caller": "+79160000000"}
    assert stitching.parse_call(other).caller_hash_digits is None
    assert stitching.parse_call({**body, "caller": None}).caller_hash_digits is None


def test_parse_call_reads_the_completed_message():
    body = {
        "call_id": "c-9",
        "site_id": "demo",
        "provider": "twilio",
        "provider_call_id": "CA1",
        "tracking_number": NUMBER,
        "caller": "+79161234567",
        "caller_hash": CALLER_HASH,
        "caller_mask": "+7*********67",
        "started_at": "2026-03-12T13:00:00+03:00",
        "answered": False,
        "ring_s": 20,
        "talk_s": 0,
        "status": "no_answer",
        "recording_ref": None,
        "raw_ref": "raw/CA1",
        "completed_at": "2026-03-12T10:00:20Z",
        "later_field": 1,
    }

    parsed = stitching.parse_call(body)

    assert parsed == Call(
        call_id="c-9",
        site_id="demo",
        started_at=T0,
        tracking_number=NUMBER,
        provider="twilio",
        provider_call_id="CA1",
        caller_hash=CALLER_HASH,
        caller_mask="+7*********67",
        caller_hash_digits=hashlib.sha256(b"79161234567").hexdigest(),
        answered=False,
        ring_s=20,
        talk_s=0,
        status="no_answer",
        recording_ref=None,
        raw_ref="raw/CA1",
        completed_at=T0 + dt.timedelta(seconds=20),
    )


@pytest.mark.parametrize(
    "change,message",
    [
        ({"call_id": None}, "Expected call_id in the call, found none."),
        (
            {"started_at": "2026-03-12T10:00:00"},
            "Expected started_at with a UTC offset, found '2026-03-12T10:00:00'.",
        ),
        (
            {"started_at": "yesterday"},
            "Expected started_at as an ISO-8601 time, found 'yesterday'.",
        ),
        ({"talk_s": -1}, "Expected talk_s as whole seconds, found -1."),
        ({"answered": "yes"}, "Expected answered to be true or false, found 'yes'."),
        ({"site_id": 7}, "Expected site_id to be text, found int."),
    ],
)
def test_a_malformed_call_is_refused_with_the_field_named(change, message):
    body = {"call_id": "c-9", "site_id": "demo", "started_at": "2026-03-12T10:00:00Z"}

    with pytest.raises(BadRequest) as err:
        stitching.parse_call(body | change)
    assert err.value.message == message
