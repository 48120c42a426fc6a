"""The stitch function over Pub/Sub, against the Firestore, Pub/Sub and BigQuery
emulators: visits are made through the assign function, calls are published
to ``call-events`` as the webhook publishes them, and the results are read
from the ``calls`` table and a pull subscription on ``calls-stitched``."""

from __future__ import annotations

import datetime as dt
import itertools
import json

import pytest

from shared.phones import digits_hash, mask, phone_hash
from tests.conftest import DEFAULT_NUMBER, numbers, wait_for
from tests.fakes import calls
from tests.fakes.calls import CALLER

PAID = {"utm_source": "google", "utm_medium": "cpc", "utm_campaign": "kitchen_msk",
        "gclid": "Cj0KCQ-stitch"}
DIRECT = {"landing_page": "https://shop.example.test/"}
GA_CLIENT = "123456789.1700000000"
BILLBOARD = ("+74955550900", {"utm_source": "billboard", "utm_medium": "offline",
                              "utm_campaign": "mkad"})
COLUMNS = ("call_id, version, reason, confidence, session_id, visitor_id, hold_id, "
           "number_kind, source, medium, campaign, first_time_caller, "
           "repeat_of_visitor, direct_return")
_ids = itertools.count(1)


def visit(touch=PAID, visitor_id=None, first_touch=None, last_non_direct=None,
          consent=True) -> dict:
    n = next(_ids)
    return {
        "visitor_id": visitor_id or f"stitch-visitor-{n:06d}",
        "session_id": f"stitch-session-{n:06d}",
        "page_url": "https://shop.example.test/kitchens",
        "referrer": "",
        "first_touch": first_touch or touch,
        "last_touch": touch,
        "last_non_direct_touch": last_non_direct,
        "ga_client_id": GA_CLIENT,
        "ga_session_id": "1741773000",
        "consent": {"analytics": consent, "ads": consent},
    }


def rows(stack, call_id: str, columns: str = COLUMNS) -> list[dict]:
    return stack.query(f"select {columns} from `{{dataset}}.calls` "
                       f"where call_id = '{call_id}' order by version")


def stitched_rows(stack, call_id: str, count: int = 1,
                  columns: str = COLUMNS) -> list[dict]:
    return wait_for(lambda: (found := rows(stack, call_id, columns))
                    and len(found) >= count and found)


def hold_of(fs, session_id: str) -> tuple[str, dict]:
    (snap,) = [s for s in fs.collection("holds").stream()
               if s.to_dict()["session_id"] == session_id]
    return snap.id, snap.to_dict()


def log_count(stack, text: str) -> int:
    return stack.log_text("stitch").count(text)


@pytest.fixture(scope="module")
def downstream(stack):
    subscription = calls.Subscription("calls-stitched")
    yield subscription
    subscription.delete()


def test_a_call_during_a_live_hold_is_stitched_to_that_session(
        make_site, assign_client, stack, fs, downstream):
    make_site(dynamic_numbers=numbers(2))
    v = visit()
    number = assign_client.call("POST", "/?site=demo", v).json()["number"]
    hold_id, _ = hold_of(fs, v["session_id"])
    call = calls.completed(number)
    calls.publish(call)

    (row,) = stitched_rows(stack, call["call_id"])
    assert row == {
        "call_id": call["call_id"], "version": 1, "reason": "live_hold",
        "confidence": 0.97, "session_id": v["session_id"],
        "visitor_id": v["visitor_id"], "hold_id": hold_id, "number_kind": "dynamic",
        "source": "google", "medium": "cpc", "campaign": "kitchen_msk",
        "first_time_caller": True, "repeat_of_visitor": None, "direct_return": False,
    }
    (full,) = rows(stack, call["call_id"], "*")
    assert full["click_ids"]["gclid"] == "Cj0KCQ-stitch"
    assert full["analytics_ids"]["ga_client_id"] == GA_CLIENT
    assert (full["first_touch"]["source"], full["last_touch"]["utm_campaign"]) == (
        "google", "kitchen_msk")
    assert (full["caller_hash"], full["caller_mask"]) == (
        phone_hash(CALLER), mask(CALLER))
    assert full["caller_hash_digits"] == digits_hash(CALLER)
    assert full["candidates"] == [{"session_id": v["session_id"],
                                   "visitor_id": v["visitor_id"], "hold_id": hold_id,
                                   "score": 0.97, "reason": "live_hold"}]
    assert CALLER not in json.dumps(full, default=str)


def test_the_stitched_call_is_published_once_with_the_caller_for_the_crm(
        make_site, assign_client, stack, fs, downstream):
    make_site(dynamic_numbers=numbers(2))
    number = assign_client.call("POST", "/?site=demo", visit()).json()["number"]
    call = calls.completed(number)
    calls.publish(call)

    (message,) = wait_for(lambda: downstream.of_call(call["call_id"]))
    kind, body = message
    assert (kind, body["schema"], body["version"], body["reason"]) == (
        "call.stitched", 1, 1, "live_hold")
    assert (body["caller"], body["caller_hash"]) == (CALLER, phone_hash(CALLER))
    ledger = fs.collection("stitched_calls").document(call["call_id"]).get().to_dict()
    assert (ledger["version"], ledger["written_version"],
            ledger["published_version"]) == (1, 1, 1)
    stored = [d.to_dict() for d in fs.collection("callers").stream()]
    assert [c["calls"] for c in stored] == [1]
    assert CALLER not in json.dumps(stored + [ledger], default=str)


def test_a_late_call_within_cooldown_scores_by_the_minutes_since_the_page_closed(
        make_site, assign_client, stack, fs):
    make_site(dynamic_numbers=numbers(2))
    v = visit()
    number = assign_client.call("POST", "/?site=demo", v).json()["number"]
    assign_client.call("POST", "/release?site=demo", {"session_id": v["session_id"]})
    _, hold = hold_of(fs, v["session_id"])
    # Half the 15 min cool-down after the page closed.
    call = calls.completed(number, started_at=hold["until"] + dt.timedelta(seconds=450))
    calls.publish(call)

    (row,) = stitched_rows(stack, call["call_id"])
    assert (row["reason"], row["confidence"], row["session_id"]) == (
        "cooldown", 0.7, v["session_id"])


def test_an_overflow_number_shared_by_two_visits_keeps_both_candidates(
        make_site, assign_client, stack, fs):
    make_site(dynamic_numbers=numbers(1), overflow_numbers=["+74955550801"],
              overflow_policy="share")
    assign_client.call("POST", "/?site=demo", visit())
    first, second = visit(), visit()
    shared = {assign_client.call("POST", "/?site=demo", v).json()["number"]
              for v in (first, second)}
    assert shared == {"+74955550801"}
    call = calls.completed("+74955550801")
    calls.publish(call)

    (row,) = stitched_rows(stack, call["call_id"], columns="*")
    assert (row["reason"], row["confidence"], row["session_id"]) == (
        "shared_number", 0.485, second["session_id"])
    assert row["shared_number"] is True
    assert [(c["session_id"], c["score"], c["reason"]) for c in row["candidates"]] == [
        (second["session_id"], 0.97, "live_hold"),
        (first["session_id"], 0.97, "live_hold")]


def test_a_static_number_call_is_credited_to_its_channel(make_site, stack):
    make_site(static_numbers=[BILLBOARD])
    call = calls.completed(BILLBOARD[0])
    calls.publish(call)

    (row,) = stitched_rows(stack, call["call_id"])
    assert (row["reason"], row["confidence"], row["number_kind"], row["source"],
            row["medium"], row["campaign"]) == (
        "static_number", 1.0, "static", "billboard", "offline", "mkad")


def test_default_unknown_and_unheld_numbers_give_unattributed_rows(make_site, stack):
    make_site(dynamic_numbers=numbers(1))
    sent = {
        "default_number": calls.completed(DEFAULT_NUMBER),
        "unknown_number": calls.completed("+74955557777"),
        "no_hold": calls.completed(numbers(1)[0]),
    }
    for call in sent.values():
        calls.publish(call)

    for reason, call in sent.items():
        (row,) = stitched_rows(stack, call["call_id"])
        assert (row["reason"], row["confidence"], row["session_id"],
                row["source"]) == (reason, 0.0, None, None)


def test_a_repeat_caller_without_a_session_keeps_the_earlier_visitors_touches(
        make_site, assign_client, stack, fs):
    make_site(dynamic_numbers=numbers(2))
    v = visit()
    number = assign_client.call("POST", "/?site=demo", v).json()["number"]
    first = calls.completed(number)
    calls.publish(first)
    stitched_rows(stack, first["call_id"])
    # Days later the same person dials the number printed on the invoice.
    again = calls.completed(DEFAULT_NUMBER,
                            started_at=dt.datetime.now(dt.UTC) + dt.timedelta(days=3))
    calls.publish(again)

    (row,) = stitched_rows(stack, again["call_id"])
    assert row | {"call_id": None} == {
        "call_id": None, "version": 1, "reason": "repeat_caller", "confidence": 0.5,
        "session_id": None, "visitor_id": v["visitor_id"], "hold_id": None,
        "number_kind": "default", "source": "google", "medium": "cpc",
        "campaign": "kitchen_msk", "first_time_caller": False,
        "repeat_of_visitor": v["visitor_id"], "direct_return": False,
    }
    (caller,) = [d.to_dict() for d in fs.collection("callers").stream()]
    assert (caller["calls"], caller["first_call_id"], caller["last_call_id"]) == (
        2, first["call_id"], again["call_id"])


def test_a_direct_return_carries_the_first_and_last_non_direct_touches(
        make_site, assign_client, stack):
    make_site(dynamic_numbers=numbers(2), dynamic_rule={"everyone": True})
    paid = visit()
    assign_client.call("POST", "/?site=demo", paid)
    back = visit(DIRECT, visitor_id=paid["visitor_id"], first_touch=PAID,
                 last_non_direct=PAID)
    number = assign_client.call("POST", "/?site=demo", back).json()["number"]
    call = calls.completed(number)
    calls.publish(call)

    (row,) = stitched_rows(stack, call["call_id"], columns="*")
    assert (row["session_id"], row["source"], row["medium"], row["direct_return"]) == (
        back["session_id"], "(direct)", "(none)", True)
    assert (row["first_touch"]["source"], row["last_touch"]["source"],
            row["last_non_direct_touch"]["source"]) == ("google", "(direct)", "google")
    assert row["click_ids"]["gclid"] == "Cj0KCQ-stitch"


def test_a_redelivered_call_makes_one_row_one_message_and_one_count(
        make_site, assign_client, stack, fs, downstream):
    make_site(dynamic_numbers=numbers(2))
    number = assign_client.call("POST", "/?site=demo", visit()).json()["number"]
    call = calls.completed(number)
    calls.publish(call)
    calls.publish(call)
    stitched_rows(stack, call["call_id"])
    calls.publish(call)

    # Every delivery is handled: one stitches; the repeats (retried while the
    # first holds its claim) find nothing left to do.
    wait_for(lambda: log_count(stack, f"Call {call['call_id']} is stitched already")
             == 2)
    assert log_count(stack, f"Stitched call {call['call_id']}") == 1
    assert len(rows(stack, call["call_id"])) == 1
    assert [kind for kind, _ in downstream.of_call(call["call_id"])] == [
        "call.stitched"]
    assert [d.to_dict()["calls"] for d in fs.collection("callers").stream()] == [1]


def test_a_later_recording_adds_version_2_with_the_same_attribution(
        make_site, assign_client, stack, downstream):
    make_site(dynamic_numbers=numbers(2))
    number = assign_client.call("POST", "/?site=demo", visit()).json()["number"]
    call = calls.completed(number)
    calls.publish(call)
    stitched_rows(stack, call["call_id"])
    later = calls.recording(call, "https://pbx.example.ru/rec/42.mp3")
    calls.publish(later, "call.recording")
    calls.publish(later, "call.recording")

    versions = stitched_rows(stack, call["call_id"], count=2,
                             columns=COLUMNS + ", recording_ref")
    assert [(r["version"], r["recording_ref"]) for r in versions] == [
        (1, None), (2, "https://pbx.example.ru/rec/42.mp3")]
    strip = ("version", "recording_ref")
    assert ({k: v for k, v in versions[0].items() if k not in strip}
            == {k: v for k, v in versions[1].items() if k not in strip})
    messages = wait_for(lambda: len(found := downstream.of_call(call["call_id"])) == 2
                        and found)
    assert [(kind, body["version"], body["caller"]) for kind, body in messages] == [
        ("call.stitched", 1, CALLER), ("call.updated", 2, None)]
    wait_for(lambda: log_count(stack, f"Call {call['call_id']} is stitched already")
             == 1)
    assert len(rows(stack, call["call_id"])) == 2


def test_a_recording_that_overtakes_its_call_waits_for_it(make_site, assign_client,
                                                          stack):
    make_site(dynamic_numbers=numbers(2))
    number = assign_client.call("POST", "/?site=demo", visit()).json()["number"]
    call = calls.completed(number)
    calls.publish(calls.recording(call, "rec-7"), "call.recording")
    wait_for(lambda: log_count(stack, f"Stitching call {call['call_id']} failed "
                                      "(not_yet_stitched)") >= 1)
    calls.publish(call)

    versions = stitched_rows(stack, call["call_id"], count=2,
                             columns="version, reason, recording_ref")
    assert versions == [{"version": 1, "reason": "live_hold", "recording_ref": None},
                        {"version": 2, "reason": "live_hold",
                         "recording_ref": "rec-7"}]
