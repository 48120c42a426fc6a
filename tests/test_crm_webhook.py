"""crm_webhook on the local stack: each CRM's deal webhook is verified, the
deal read back, and its stage and revenue appended to ``deals``, tied to the
call, session and visitor; refused requests write nothing."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from shared import events, settings, warehouse
from tests.conftest import Client, wait_for
from tests.fakes import calls
from tests.fakes import crm as fake

FAKE = fake.SERVER
FORM = "application/x-www-form-urlencoded"
STATIC = "+74955550701"


@pytest.fixture(scope="module", autouse=True)
def views(stack):
    """The report views over deals and leads (deals_latest, funnel)."""
    warehouse.ensure_views()


def crm_site(make_site, site_id: str, static: bool = False) -> None:
    channel = {
        "utm_source": "radio",
        "utm_medium": "offline",
        "utm_campaign": "morning_show",
    }
    make_site(
        site_id=site_id,
        extra={"crm": fake.site_crm(site_id)},
        static_numbers=[(STATIC, channel)] if static else [],
    )


def lead_for(stack, make_site, site_id: str) -> tuple[dict, str]:
    """A stitched call sent through crm_lead; (the call, its CRM lead id)."""
    crm_site(make_site, site_id)
    body = fake.stitched_call(site_id)
    events.publish(settings.get().topic_calls_stitched, [("call.stitched", body)])
    rows = wait_for(
        lambda: stack.query(
            f"select crm_lead_id from `{{dataset}}.leads` "
            f"where call_id = '{body['call_id']}'"
        )
    )
    return body, rows[0]["crm_lead_id"]


def deals(stack, site_id: str, deal_id: str) -> list[dict]:
    return stack.query(
        "select crm_deal_id, crm_lead_id, call_id, visitor_id, session_id, stage, "
        "won, lost, revenue, currency, campaign from `{dataset}.deals` "
        f"where site_id = '{site_id}' and crm_deal_id = '{deal_id}' "
        "order by changed_at, recorded_at"
    )


def post(
    stack, path: str, raw: bytes, headers: dict | None = None, content_type: str = FORM
):
    headers = dict(headers or {})
    kind = headers.pop("Content-Type", content_type)
    return Client(stack.urls["crm_webhook"], origin=None).call(
        "POST", path, raw=raw, content_type=kind, headers=headers
    )


def linked(body: dict) -> dict:
    return {
        "call_id": body["call_id"],
        "visitor_id": body["visitor_id"],
        "session_id": body["session_id"],
        "campaign": "kitchens",
    }


def test_amocrm_status_webhook_appends_the_deal_linked_to_the_call(stack, make_site):
    body, lead_id = lead_for(stack, make_site, "crm-amo")
    FAKE.amo_move(int(lead_id), 142, price=56000)
    path = f"/amocrm/crm-amo/{fake.AMO_WEBHOOK_SECRET}"

    resp = post(stack, path, FAKE.amo_webhook(int(lead_id)))

    assert resp.status == 200, resp.body
    assert resp.json()["ignored"] == [] and len(resp.json()["recorded"]) == 1
    assert deals(stack, "crm-amo", lead_id) == [
        {
            "crm_deal_id": lead_id,
            "crm_lead_id": lead_id,
            **linked(body),
            "stage": "142",
            "won": True,
            "lost": False,
            "revenue": 56000.0,
            "currency": "RUB",
        }
    ]
    # A redelivered webhook leaves one row (same event id).
    again = post(stack, path, FAKE.amo_webhook(int(lead_id)))
    assert again.json()["recorded"] == resp.json()["recorded"]
    assert len(deals(stack, "crm-amo", lead_id)) == 1


def test_bitrix24_deal_update_is_read_back_and_linked_through_the_lead(
    stack, make_site
):
    body, lead_id = lead_for(stack, make_site, "crm-bitrix")
    deal_id = FAKE.bitrix_convert(int(lead_id), "EXECUTING", "P", "1000.00")

    resp = post(stack, "/bitrix24/crm-bitrix", FAKE.bitrix_webhook(deal_id))

    assert resp.status == 200, resp.body
    assert deals(stack, "crm-bitrix", str(deal_id)) == [
        {
            "crm_deal_id": str(deal_id),
            "crm_lead_id": lead_id,
            **linked(body),
            "stage": "EXECUTING",
            "won": False,
            "lost": False,
            "revenue": 1000.0,
            "currency": "RUB",
        }
    ]


def test_hubspot_signed_webhook_and_revenue_changing_twice_ends_at_the_latest(
    stack, make_site
):
    body, deal_id = lead_for(stack, make_site, "crm-hubspot")
    url = stack.urls["crm_webhook"] + "/hubspot/crm-hubspot"

    for stage, amount in (("contractsent", "1000"), ("closedwon", "2500.5")):
        FAKE.hubspot_move(deal_id, stage, amount)
        raw, headers = FAKE.hubspot_webhook(url, [deal_id])
        resp = post(stack, "/hubspot/crm-hubspot", raw, headers)
        assert resp.status == 200, resp.body

    rows = deals(stack, "crm-hubspot", deal_id)
    assert [(r["stage"], r["revenue"]) for r in rows] == [
        ("contractsent", 1000.0),
        ("closedwon", 2500.5),
    ]
    latest = stack.query(
        "select call_id, won, won_revenue from `{dataset}.deals_latest` "
        f"where site_id = 'crm-hubspot' and crm_deal_id = '{deal_id}'"
    )
    assert latest == [{"call_id": body["call_id"], "won": True, "won_revenue": 2500.5}]


def test_generic_signed_deal_change_by_call_id(stack, make_site):
    body, lead_id = lead_for(stack, make_site, "crm-hook")
    deal = {
        "deal_id": "D-77",
        "call_id": body["call_id"],
        "stage": "paid",
        "won": True,
        "revenue": 120.25,
        "currency": "EUR",
        "changed_at": dt.datetime.now(dt.UTC).isoformat(),
    }
    raw, headers = FAKE.hook_deal(deal)

    resp = post(stack, "/webhook/crm-hook", raw, headers)

    assert resp.status == 200, resp.body
    assert deals(stack, "crm-hook", "D-77") == [
        {
            "crm_deal_id": "D-77",
            "crm_lead_id": lead_id,
            **linked(body),
            "stage": "paid",
            "won": True,
            "lost": False,
            "revenue": 120.25,
            "currency": "EUR",
        }
    ]


def test_a_deal_the_product_did_not_create_is_ignored(stack, make_site):
    crm_site(make_site, "crm-hook")
    raw, headers = FAKE.hook_deal(
        {"deal_id": "D-stranger", "lead_id": "ext-0", "won": True, "revenue": 5}
    )

    resp = post(stack, "/webhook/crm-hook", raw, headers)

    assert (resp.status, resp.json()) == (
        200,
        {"recorded": [], "ignored": ["D-stranger"]},
    )
    assert deals(stack, "crm-hook", "D-stranger") == []


def _refusals(stack, lead_ids: dict) -> list[tuple[str, bytes, dict, int, str]]:
    amo, deal = lead_ids["crm-amo"], lead_ids["crm-bitrix-deal"]
    hub = lead_ids["crm-hubspot"]
    url = stack.urls["crm_webhook"] + "/hubspot/crm-hubspot"
    hs_raw, hs_headers = FAKE.hubspot_webhook(url, [hub])
    _, forged = FAKE.hubspot_webhook(url, [hub], secret="not-the-secret")
    stale_ms = int((time.time() - 360) * 1000)
    stale_raw, stale = FAKE.hubspot_webhook(url, [hub], stamp_ms=stale_ms)
    hook = {"deal_id": "D-1", "lead_id": "x", "won": True}
    hook_raw, hook_headers = FAKE.hook_deal(hook, secret="wrong")
    old_raw, old_headers = FAKE.hook_deal(hook, stamp=int(time.time()) - 900)
    return [
        ("/amocrm/crm-amo/wrong-secret", FAKE.amo_webhook(int(amo)), {}, 401, "secret"),
        ("/amocrm/crm-amo", FAKE.amo_webhook(int(amo)), {}, 401, "secret"),
        (
            f"/amocrm/crm-amo/{fake.AMO_WEBHOOK_SECRET}",
            FAKE.amo_webhook(int(amo), subdomain="evil"),
            {},
            403,
            "account",
        ),
        (
            f"/amocrm/crm-amo/{fake.AMO_WEBHOOK_SECRET}",
            b"leads[status][0][id]=abc&account[subdomain]=shop",
            {},
            400,
            "amocrm_form",
        ),
        (
            "/bitrix24/crm-bitrix",
            FAKE.bitrix_webhook(deal, token="forged"),
            {},
            401,
            "token",
        ),
        (
            "/bitrix24/crm-bitrix",
            b"auth[application_token]="
            + fake.BITRIX_TOKEN.encode()
            + b"&event=ONCRMDEALUPDATE&data[FIELDS][ID]=x",
            {},
            400,
            "bitrix24_form",
        ),
        ("/hubspot/crm-hubspot", hs_raw, forged, 401, "signature"),
        (
            "/hubspot/crm-hubspot",
            hs_raw,
            {"Content-Type": "application/json"},
            401,
            "signature_missing",
        ),
        ("/hubspot/crm-hubspot", stale_raw, stale, 403, "replay"),
        ("/webhook/crm-hook", hook_raw, hook_headers, 401, "signature"),
        ("/webhook/crm-hook", old_raw, old_headers, 403, "replay"),
        (
            "/webhook/crm-hook",
            b"{}",
            {"Content-Type": "application/json"},
            401,
            "signature_missing",
        ),
        ("/salesforce/crm-hook", b"{}", {}, 404, "route"),
        ("/hubspot/crm-amo", hs_raw, hs_headers, 404, "crm_not_configured"),
    ]


def test_bad_or_unsigned_requests_are_refused_with_a_reason_and_write_nothing(
    stack, make_site
):
    ids = {}
    for site_id in ("crm-amo", "crm-bitrix", "crm-hubspot", "crm-hook"):
        ids[site_id] = lead_for(stack, make_site, site_id)[1]
    deal = FAKE.bitrix_convert(int(ids["crm-bitrix"]), "WON", "S", "10")
    ids["crm-bitrix-deal"] = str(deal)
    FAKE.amo_move(int(ids["crm-amo"]), 142, price=10)
    FAKE.hubspot_move(ids["crm-hubspot"], "closedwon", "10")

    for path, raw, headers, status, code in _refusals(stack, ids):
        resp = post(stack, path, raw, headers)
        assert (resp.status, resp.json()["error"]["code"]) == (status, code), path
        assert resp.json()["error"]["message"]

    for site_id, deal_id in (
        ("crm-amo", ids["crm-amo"]),
        ("crm-bitrix", ids["crm-bitrix-deal"]),
        ("crm-hubspot", ids["crm-hubspot"]),
        ("crm-hook", "D-1"),
    ):
        assert deals(stack, site_id, deal_id) == []


def test_end_to_end_call_to_lead_to_won_deal_to_revenue_on_the_campaign(
    stack, make_site
):
    site_id = "crm-e2e"
    crm_site(make_site, site_id, static=True)
    call = calls.completed(STATIC, site_id=site_id)
    calls.publish(call)
    lead_id = wait_for(
        lambda: stack.query(
            f"select crm_lead_id from `{{dataset}}.leads` "
            f"where call_id = '{call['call_id']}'"
        )
    )[0]["crm_lead_id"]
    lead = FAKE.bitrix_leads[int(lead_id)]
    assert (lead["UTM_SOURCE"], lead["UTM_CAMPAIGN"]) == ("radio", "morning_show")

    # A manager converts the lead, wins the deal, then corrects its amount.
    deal_id = FAKE.bitrix_convert(int(lead_id), "EXECUTING", "P", "30000")
    for stage, semantic, amount in (("WON", "S", "40000"), ("WON", "S", "45000")):
        hook = post(stack, f"/bitrix24/{site_id}", FAKE.bitrix_webhook(deal_id))
        assert hook.status == 200, hook.body
        FAKE.bitrix_move(deal_id, stage, semantic, amount)
    hook = post(stack, f"/bitrix24/{site_id}", FAKE.bitrix_webhook(deal_id))
    assert hook.status == 200, hook.body

    assert len(deals(stack, site_id, str(deal_id))) == 3
    funnel = stack.query(
        "select model, source, medium, campaign, calls, leads, deals, won_deals, "
        f"revenue from `{{dataset}}.funnel` where site_id = '{site_id}' "
        "and calls > 0 order by model"
    )
    assert funnel
    for row in funnel:
        assert row == {
            "model": row["model"],
            "source": "radio",
            "medium": "offline",
            "campaign": "morning_show",
            "calls": 1.0,
            "leads": 1.0,
            "deals": 1.0,
            "won_deals": 1.0,
            "revenue": 45000.0,
        }
