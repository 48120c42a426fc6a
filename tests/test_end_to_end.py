"""End to end through the real functions: a visit takes a number from
``assign``, the provider reports the call to ``call_webhook``, ``stitch`` writes
the attributed row to BigQuery and ``ga4_send`` sends the ``call`` event to
the GA4 fake."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import time

from tests import signers
from tests.conftest import STACK_ENV, Client, numbers, wait_for
from tests.fakes import ga4 as fake_ga4

SECRET = json.loads(STACK_ENV["CALLTRACK_PROVIDER_SECRETS"])["demo"]["generic_secret"]
MEASUREMENT_ID = "G-E2E0000001"
PAID = {
    "utm_source": "google",
    "utm_medium": "cpc",
    "utm_campaign": "kitchen_msk_leads_202612",
    "gclid": "Cj0KCQ-e2e",
}
_ids = itertools.count(1)


def _hook(stack, body: dict) -> int:
    raw = json.dumps(body).encode()
    stamp = str(int(time.time()))
    client = Client(stack.urls["call_webhook"], origin=None)
    resp = client.call(
        "POST",
        "/generic/demo",
        raw=raw,
        content_type="application/json",
        headers={
            "X-Calltrack-Timestamp": stamp,
            "X-Calltrack-Signature": signers.generic_signature(SECRET, stamp, raw),
        },
    )
    return resp.status


def _call(stack, number: str, caller: str) -> str:
    """A provider reports a 40 s answered call on ``number``; its call id."""
    provider_id = f"e2e-{next(_ids)}-{time.time_ns()}"
    # The visit is still on the page: the call starts now, while its hold lives.
    started = dt.datetime.now(dt.UTC)
    common = {"call_id": provider_id, "tracking_number": number, "caller": caller}
    start = {**common, "event": "start", "occurred_at": started.isoformat()}
    end = {
        **common,
        "event": "end",
        "occurred_at": dt.datetime.now(dt.UTC).isoformat(),
        "started_at": started.isoformat(),
        "answered": True,
        "ring_s": 10,
        "talk_s": 40,
        "status": "answered",
    }
    assert _hook(stack, start) == 200
    assert _hook(stack, end) == 200
    return f"generic:demo:{provider_id}"


def _visit(stack, consent: bool) -> dict:
    n = next(_ids)
    body = {
        "visitor_id": f"e2e-visitor-{n:04d}-{time.time_ns() % 10**6}",
        "session_id": f"e2e-session-{n:04d}-{time.time_ns() % 10**6}",
        "page_url": "https://shop.example.test/kitchens?utm_source=google",
        "first_touch": PAID,
        "last_touch": PAID,
        "ga_client_id": f"{n}123456.1700000000",
        "ga_session_id": "1764700000",
        "consent": {"analytics": consent, "ads": consent},
    }
    answer = Client(stack.urls["assign"]).call("POST", "/?site=demo", body).json()
    return {**body, **answer}


def _row(stack, call_id: str):
    found = stack.query(
        "select session_id, visitor_id, reason, source, medium, campaign, "
        "caller_hash, caller_mask, first_touch, click_ids "
        f"from `{{dataset}}.calls` where call_id = '{call_id}'"
    )
    return found[0] if found else None


def test_a_paid_visit_and_its_call_end_as_a_stitched_row_and_a_ga4_event(
    stack, make_site
):
    make_site(
        dynamic_numbers=numbers(2, start=7100),
        extra={"ga4_measurement_id": MEASUREMENT_ID},
    )
    fake_ga4.SERVER.clear()
    visit = _visit(stack, consent=True)

    call_id = _call(stack, visit["number"], "+79167770001")

    row = wait_for(lambda: _row(stack, call_id))
    assert (row["session_id"], row["visitor_id"], row["reason"]) == (
        visit["session_id"],
        visit["visitor_id"],
        "live_hold",
    )
    assert (row["source"], row["medium"], row["campaign"]) == (
        "google",
        "cpc",
        "kitchen_msk_leads_202612",
    )
    assert row["first_touch"]["gclid"] == "Cj0KCQ-e2e"
    assert "+79167770001" not in json.dumps(row, default=str)
    assert row["caller_mask"].endswith("01") and len(row["caller_hash"]) == 64

    (sent,) = wait_for(lambda: fake_ga4.SERVER.for_client(visit["ga_client_id"]))
    assert sent.valid and sent.query["measurement_id"] == MEASUREMENT_ID
    (event,) = sent.body["events"]
    assert event["name"] == "call"
    assert event["params"]["campaign"] == "kitchen_msk_leads_202612"


def test_without_analytics_consent_the_call_is_stitched_but_not_sent_to_ga4(
    stack, make_site
):
    make_site(
        dynamic_numbers=numbers(2, start=7200),
        extra={"ga4_measurement_id": MEASUREMENT_ID},
    )
    fake_ga4.SERVER.clear()
    visit = _visit(stack, consent=False)

    call_id = _call(stack, visit["number"], "+79167770002")

    row = wait_for(lambda: _row(stack, call_id))
    assert row["session_id"] == visit["session_id"]
    (skipped,) = wait_for(lambda: _skips(stack, call_id))
    assert skipped["reason"] == "consent"
    assert fake_ga4.SERVER.received() == []


def _skips(stack, call_id: str) -> list[dict]:
    lines = [
        json.loads(line)
        for line in stack.log_text("ga4_send").splitlines()
        if line.startswith("{")
    ]
    return [
        x
        for x in lines
        if x.get("event") == "ga4_skipped" and x.get("call_id") == call_id
    ]
