"""crm_lead on the local stack: stitched calls become leads in the fake CRMs,
once each, with the repeat caller rule, retries, dead letters and replay."""

from __future__ import annotations

import argparse

import pytest

from devstack.stack import MAX_DELIVERY_ATTEMPTS
from ops import replay
from shared import events, settings
from tests.conftest import wait_for
from tests.fakes import calls
from tests.fakes import crm as fake

FAKE = fake.SERVER
SITES = ("crm-amo", "crm-bitrix", "crm-hubspot", "crm-hook")
STATIC = "+74955550700"


def crm_site(make_site, site_id: str, **crm_extra) -> None:
    make_site(
        site_id=site_id,
        extra={"crm": {**fake.site_crm(site_id), **crm_extra}},
        static_numbers=[(STATIC, {"utm_source": "radio", "utm_medium": "offline"})],
    )


def publish(body: dict, kind: str = "call.stitched") -> None:
    events.publish(settings.get().topic_calls_stitched, [(kind, body)])


def lead_rows(stack, call_id: str) -> list[dict]:
    return stack.query(
        "select lead_id, crm, crm_lead_id, crm_contact_id, action, caller_hash, "
        "visitor_id, session_id, source, medium, campaign, confidence, ga_client_id "
        f"from `{{dataset}}.leads` where call_id = '{call_id}'"
    )


def row_of(stack, call_id: str) -> dict:
    return wait_for(lambda: lead_rows(stack, call_id))[0]


def failures(stack, call_id: str, code: str) -> int:
    return stack.log_text("crm_lead").count(
        f"Sending call {call_id} to the CRM failed ({code})"
    )


def lead_in_fake(site_id: str, crm_lead_id: str) -> dict:
    if site_id == "crm-amo":
        return FAKE.amo_leads[int(crm_lead_id)]
    if site_id == "crm-bitrix":
        return FAKE.bitrix_leads[int(crm_lead_id)]
    if site_id == "crm-hubspot":
        return FAKE.hs_deals[crm_lead_id]
    return FAKE.hook_leads[crm_lead_id]


def _id(site_id: str, row: dict):
    contact = row["crm_contact_id"]
    return int(contact) if site_id == "crm-amo" else contact


def notes_on(site_id: str, crm_lead_id: str) -> list[str]:
    """The texts the product added to a lead after creating it."""
    if site_id == "crm-amo":
        return [
            n["params"]["text"]
            for n in FAKE.amo_notes
            if n["entity_id"] == int(crm_lead_id)
        ]
    if site_id == "crm-bitrix":
        return [
            c["fields[COMMENT]"]
            for c in FAKE.bitrix_comments
            if c["fields[ENTITY_ID]"] == crm_lead_id
        ]
    if site_id == "crm-hubspot":
        return [
            n["properties"]["hs_note_body"]
            for n in FAKE.hs_notes
            if n["associations"][0]["to"]["id"] == crm_lead_id
        ]
    return [
        e.get("summary") or e.get("recording_url")
        for e in FAKE.hook_events
        if e.get("crm_lead_id") == crm_lead_id
    ]


@pytest.mark.parametrize("site_id", SITES)
def test_a_stitched_call_becomes_one_lead_and_one_leads_row(stack, make_site, site_id):
    crm_site(make_site, site_id)
    body = fake.stitched_call(site_id)
    publish(body)

    row = row_of(stack, body["call_id"])
    lead = lead_in_fake(site_id, row["crm_lead_id"])
    assert body["call_id"] in str(lead)
    # The CRM is the one place the raw number goes (on the contact, if any).
    contacts = {"crm-amo": FAKE.amo_contacts, "crm-hubspot": FAKE.hs_contacts}
    holder = contacts[site_id][_id(site_id, row)] if site_id in contacts else lead
    assert fake.CALLER in str(holder)
    assert row == {
        "lead_id": f"{site_id}:{body['call_id']}",
        "crm": fake.site_crm(site_id)["type"],
        "crm_lead_id": row["crm_lead_id"],
        "crm_contact_id": row["crm_contact_id"],
        "action": "created",
        "caller_hash": body["caller_hash"],
        "visitor_id": body["visitor_id"],
        "session_id": body["session_id"],
        "source": "yandex",
        "medium": "cpc",
        "campaign": "kitchens",
        "confidence": 0.9,
        "ga_client_id": "123.456",
    }
    assert fake.CALLER not in str(row)


@pytest.mark.parametrize("site_id", SITES)
def test_a_repeat_caller_with_an_open_lead_adds_to_it_and_redelivery_adds_nothing(
    stack, make_site, site_id
):
    crm_site(make_site, site_id)
    first = fake.stitched_call(site_id)
    publish(first)
    publish(first)  # a redelivery
    lead_id = row_of(stack, first["call_id"])["crm_lead_id"]
    repeat = fake.stitched_call(site_id, source="google", campaign="brand")
    publish(repeat)

    row = row_of(stack, repeat["call_id"])
    expected = "updated" if site_id == "crm-hook" else "noted"
    assert (row["action"], row["crm_lead_id"]) == (expected, lead_id)
    texts = notes_on(site_id, lead_id)
    assert any(f"Repeat call {repeat['call_id']}" in (t or "") for t in texts)
    leads_of_first = [
        r
        for r in FAKE.requests
        if first["call_id"] in str(r.body)
        and r.crm in ("amocrm", "bitrix24", "hubspot", "webhook")
        and (
            "complex" in r.path
            or r.path == "crm.lead.add"
            or r.path.endswith("/deals")
            or (r.crm == "webhook" and r.body.get("event") == "lead")
        )
    ]
    assert len(leads_of_first) == 1
    assert len(lead_rows(stack, first["call_id"])) == 1


def test_a_repeat_caller_whose_lead_was_lost_gets_a_new_lead(stack, make_site):
    crm_site(make_site, "crm-amo")
    first = fake.stitched_call("crm-amo")
    publish(first)
    lead_id = row_of(stack, first["call_id"])["crm_lead_id"]
    FAKE.amo_move(int(lead_id), 143)
    again = fake.stitched_call("crm-amo")
    publish(again)

    row = row_of(stack, again["call_id"])
    assert row["action"] == "created" and row["crm_lead_id"] != lead_id
    # The new lead reuses the caller's contact rather than making a second one.
    lead = FAKE.amo_leads[int(row["crm_lead_id"])]
    assert lead["_embedded"]["contacts"] == [{"id": int(row["crm_contact_id"])}]


def test_a_rate_limited_crm_is_retried_then_takes_the_lead(stack, make_site):
    crm_site(make_site, "crm-bitrix")
    body = fake.stitched_call("crm-bitrix")
    FAKE.fail_next("bitrix24", 429, times=2, path="crm.lead.add",
                   body=body["call_id"])
    publish(body)

    row = row_of(stack, body["call_id"])
    assert row["action"] == "created"
    assert failures(stack, body["call_id"], "crm_unavailable") == 2
    assert (
        FAKE.bitrix_leads[int(row["crm_lead_id"])]["UF_CRM_CALL_ID"] == body["call_id"]
    )


def test_a_crm_outage_dead_letters_the_lead_not_the_call_and_replay_sends_it(
    stack, make_site, capsys
):
    crm_site(make_site, "crm-hubspot")
    caller = "+79165550177"  # this test's own, so only its contact fails
    FAKE.fail_next("hubspot", 503, times=MAX_DELIVERY_ATTEMPTS, path="/contacts",
                   body=caller)
    call = calls.completed(STATIC, site_id="crm-hubspot", caller=caller)
    calls.publish(call)

    wait_for(
        lambda: (
            failures(stack, call["call_id"], "crm_unavailable") == MAX_DELIVERY_ATTEMPTS
        )
    )
    # The call itself is in BigQuery; only its lead waits.
    assert stack.query(
        f"select source from `{{dataset}}.calls` where call_id = '{call['call_id']}'"
    ) == [{"source": "radio"}]
    assert lead_rows(stack, call["call_id"]) == []

    def replayed() -> bool:
        args = argparse.Namespace(topic="calls-stitched", max=1000)
        assert replay.run(args) == 0
        return call["call_id"] in capsys.readouterr().out

    wait_for(replayed)
    row = row_of(stack, call["call_id"])
    assert (row["action"], row["source"], row["medium"]) == (
        "created",
        "radio",
        "offline",
    )
    deal = FAKE.hs_deals[row["crm_lead_id"]]
    assert deal["associations"][0]["to"]["id"] == row["crm_contact_id"]


def test_a_later_recording_is_added_to_the_lead_once(stack, make_site):
    crm_site(make_site, "crm-amo")
    body = fake.stitched_call("crm-amo", recording_ref=None)
    publish(body)
    lead_id = row_of(stack, body["call_id"])["crm_lead_id"]
    url = "https://pbx.example.test/rec/late.mp3"
    updated = {**body, "version": 2, "recording_ref": url, "caller": None}
    publish(updated, "call.updated")
    publish(updated, "call.updated")

    marker = fake.stitched_call("crm-amo", caller=None)
    publish(marker)  # delivered after both updates, so they were handled

    wait_for(lambda: any(url in t for t in notes_on("crm-amo", lead_id)))
    row_of(stack, marker["call_id"])
    assert sum(url in t for t in notes_on("crm-amo", lead_id)) == 1
    assert len(lead_rows(stack, body["call_id"])) == 1


def test_a_site_without_a_crm_sends_nothing(stack, make_site):
    make_site(site_id="no-crm")
    body = fake.stitched_call("no-crm")
    before = len(FAKE.requests)
    publish(body)
    marker = fake.stitched_call("crm-hook")
    crm_site(make_site, "crm-hook")
    publish(marker)  # delivered after the first, so the first was handled

    row_of(stack, marker["call_id"])
    assert lead_rows(stack, body["call_id"]) == []
    assert not [r for r in FAKE.requests[before:] if body["call_id"] in str(r.body)]
