"""Pure rules of the pool, touches, sites and the edge, without I/O."""

from __future__ import annotations

import datetime as dt
import json
import logging
import random

import pytest

from shared import log, phones, touches
from shared.errors import BadRequest
from shared.pool import CandidateCache, claimable_by, is_bot, is_free, parse_request
from shared.ratelimit import TokenBuckets
from shared.sites import DynamicRule, site_from_doc
from shared.store import Snapshot

NOW = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC)
LP = "https://shop.example.test/landing"


def number(available_in_s=-1, lease_in_s=None, holder="v1", last="v1", **extra):
    lease = None
    if lease_in_s is not None:
        lease = {
            "visitor_id": holder,
            "expires_at": NOW + dt.timedelta(seconds=lease_in_s),
        }
    return {
        "kind": "dynamic",
        "overflow": False,
        "lease": lease,
        "available_at": NOW + dt.timedelta(seconds=available_in_s),
        "last_visitor_id": last,
        **extra,
    }


@pytest.mark.parametrize(
    "doc,free",
    [
        (number(available_in_s=-1), True),
        (number(available_in_s=0), True),
        (number(available_in_s=1), False),
        (number(kind="static"), False),
        (number(overflow=True), False),
    ],
)
def test_a_number_is_free_once_its_cooldown_has_passed(doc, free):
    assert is_free(doc, NOW) is free


def test_a_visitor_may_take_back_its_own_number_during_cooldown():
    cooling = number(available_in_s=600, lease_in_s=-10, holder="v1", last="v1")

    assert claimable_by(cooling, "v1", NOW) is True
    assert claimable_by(cooling, "v2", NOW) is False


def test_a_live_lease_is_claimable_only_by_its_holder():
    held = number(available_in_s=900, lease_in_s=60, holder="v1")

    assert claimable_by(held, "v1", NOW) is True
    assert claimable_by(held, "v2", NOW) is False


class ListStore:
    def __init__(self, ids):
        self.snaps = [Snapshot(i, {}, 1) for i in ids]
        self.queries = 0

    def free_numbers(self, site_id, now, limit):
        self.queries += 1
        return self.snaps[:limit]


def test_candidate_cache_never_hands_one_number_to_two_requests():
    store = ListStore([f"n{i}" for i in range(10)])
    cache = CandidateCache(store, window=10, clock=lambda: 0.0)
    taken = [cache.take("s", NOW, random.Random(1)).id for _ in range(10)]

    assert sorted(taken) == sorted(f"n{i}" for i in range(10))
    assert store.queries == 1
    assert cache.take("s", NOW, random.Random(1)) is None


def test_candidate_cache_picks_among_the_four_least_recently_released():
    store = ListStore([f"n{i}" for i in range(10)])
    picks = {
        CandidateCache(store, 10, clock=lambda: 0.0)
        .take("s", NOW, random.Random(seed))
        .id
        for seed in range(50)
    }

    assert picks == {"n0", "n1", "n2", "n3"}


@pytest.mark.parametrize(
    "touch,direct",
    [
        ({}, True),
        ({"referrer": "https://shop.example.test/a", "landing_page": LP}, True),
        ({"referrer": "https://www.google.com/", "landing_page": LP}, False),
        ({"utm_source": "newsletter"}, False),
        ({"gclid": "abc"}, False),
    ],
)
def test_a_touch_is_direct_without_utm_click_id_or_external_referrer(touch, direct):
    assert touches.is_direct(touch) is direct


@pytest.mark.parametrize(
    "touch,channel",
    [
        ({"utm_source": "google", "utm_medium": "cpc"}, ("google", "cpc")),
        ({"yclid": "123"}, ("yandex", "cpc")),
        (
            {"referrer": "https://yandex.ru/search", "landing_page": LP},
            ("yandex", "organic"),
        ),
        (
            {"referrer": "https://blog.other.test/p", "landing_page": LP},
            ("blog.other.test", "referral"),
        ),
        ({}, ("(direct)", "(none)")),
    ],
)
def test_channel_is_derived_when_utm_is_missing(touch, channel):
    assert touches.channel(touch) == channel


def test_a_direct_return_keeps_the_last_non_direct_touch():
    paid = {"utm_source": "google", "utm_medium": "cpc"}
    stored = {"first_touch": paid, "last_touch": paid, "last_non_direct_touch": paid}
    merged = touches.merge_visitor_touches(stored, {"last_touch": {"landing_page": LP}})

    assert merged == {
        "first_touch": paid,
        "last_touch": {"landing_page": LP},
        "last_non_direct_touch": paid,
    }


def test_dynamic_rule_selects_paid_mediums_and_click_ids():
    rule = DynamicRule()

    assert rule.matches({"utm_medium": "cpc"}) is True
    assert rule.matches({"gclid": "x"}) is True
    assert rule.matches({"utm_medium": "email"}) is False
    assert DynamicRule(everyone=True).matches({}) is True


def test_site_documents_are_validated_with_a_reason():
    with pytest.raises(BadRequest, match="overflow_policy"):
        site_from_doc(
            {
                "site_id": "s1",
                "default_number": "+74951230000",
                "overflow_policy": "nope",
            }
        )
    with pytest.raises(BadRequest, match="display template with 10"):
        site_from_doc(
            {
                "site_id": "s1",
                "default_number": "+74951230000",
                "display_format": "+7 ###",
            }
        )
    site = site_from_doc(
        {
            "site_id": "s1",
            "default_number": "8 (495) 123-00-00",
            "allowed_origins": ["https://a.test/"],
        }
    )
    assert (site.default_number, site.allows_origin("https://a.test")) == (
        "+74951230000",
        True,
    )


def test_parse_request_keeps_only_known_touch_keys_and_drops_ids_types():
    req = parse_request(
        "s1",
        {
            "visitor_id": "visitor-1",
            "last_touch": {"utm_source": "google", "x": "y"},
            "ga_client_id": "123.456",
            "consent": {"analytics": True, "ads": "yes"},
        },
        "Mozilla/5.0",
    )

    assert req.last_touch == {"utm_source": "google"}
    assert (req.consent_analytics, req.consent_ads) == (True, False)
    assert req.ids == {"ga_client_id": "123.456"}


@pytest.mark.parametrize(
    "ua,bot",
    [
        (
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            True,
        ),
        ("Mozilla/5.0 (compatible; YandexBot/3.0)", True),
        ("", True),
        ("Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0 Safari/537.36", False),
        ("Mozilla/5.0 (X11; Linux x86_64) HeadlessChrome/156.0 Safari/537.36", False),
    ],
)
def test_known_bots_are_recognised(ua, bot):
    assert is_bot(ua) is bot


def test_token_buckets_allow_a_burst_then_the_rate():
    clock = [0.0]
    buckets = TokenBuckets(per_min=60, burst=3, clock=lambda: clock[0])
    first = [buckets.allow("ip") for _ in range(4)]
    clock[0] = 1.0

    assert first[:3] == [0.0, 0.0, 0.0]
    assert first[3] == pytest.approx(1.0)
    assert buckets.allow("ip") == 0.0
    assert buckets.allow("other-ip") == 0.0


@pytest.mark.parametrize(
    "raw,e164",
    [
        ("8 (495) 123-45-67", "+74951234567"),
        ("84951234567", "+74951234567"),
        ("74951234567", "+74951234567"),
        ("+1 650-253-0000", "+16502530000"),
    ],
)
def test_phone_numbers_normalise_to_e164(raw, e164):
    assert phones.to_e164(raw, "RU") == e164


def test_phone_hash_and_mask_hide_the_number():
    assert phones.phone_hash("+74951234567") == (
        "39cae6bb4e77fcd8ca8d244a9d724a620157b2ff34dadcc6565586f3a6005fbc"
    )
    assert phones.mask("+74951234567") == "+7********67"


def test_trace_ids_come_from_either_header():
    w3c = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
    google = {"X-Cloud-Trace-Context": "4BF92F3577B34DA6A3CE929D0E0E4736/255;o=1"}

    assert log.trace_from_headers(w3c) == (
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "00f067aa0ba902b7",
    )
    assert log.trace_from_headers(google) == (
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "00000000000000ff",
    )
    assert log.trace_from_headers({}) is None


def test_log_lines_are_json_with_severity_and_trace():
    formatter = log.JsonFormatter("proj")
    record = logging.LogRecord(
        "x", logging.WARNING, __file__, 1, "pool %s", ("gone",), None
    )
    record.fields = {"event": "pool_exhausted"}
    token = log.set_trace(("abc", "def"))
    try:
        line = json.loads(formatter.format(record))
    finally:
        log.reset_trace(token)

    assert line["severity"] == "WARNING"
    assert line["message"] == "pool gone"
    assert line["event"] == "pool_exhausted"
    assert line["logging.googleapis.com/trace"] == "projects/proj/traces/abc"


def test_touch_utm_values_are_stored_normalised_with_the_raw_beside_them():
    touch = touches.clean_touch(
        {
            "utm_source": "Google",
            "utm_medium": "CPC",
            "utm_campaign": "kitchen_msk_leads_202611",
        },
        "t",
    )

    assert touch["utm_source"] == "google"
    assert touch["utm_medium"] == "cpc"
    assert touch["utm_raw"] == {
        "utm_source": "Google",
        "utm_medium": "CPC",
        "utm_campaign": "kitchen_msk_leads_202611",
    }
    assert touch["utm_findings"] == ["not_lowercase"]


def test_conforming_touch_utm_values_carry_no_raw_copy():
    touch = touches.clean_touch({"utm_source": "google", "utm_medium": "cpc"}, "t")

    assert touch == {"utm_source": "google", "utm_medium": "cpc"}
