"""CRM adapters against the strict fakes, and webhook verification, without
the emulators: what each CRM receives, how its failures map to retries."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time

import pytest

from shared import crm
from shared.crm import config, content
from shared.crm.base import Lead
from shared.crm.http import Http
from shared.errors import (
    BadRequest,
    ConfigError,
    Forbidden,
    PermanentError,
    TransientError,
    Unauthorized,
)
from shared.providers.base import WebhookRequest
from shared.sites import site_from_doc
from tests.fakes import crm as fake

FAKE = fake.SERVER
CALLER = fake.CALLER


def stitched(**over) -> dict:
    return fake.stitched_call(**{"site_id": "crm-amo", **over})


def cfg(site_id: str, **extra) -> config.CrmConfig:
    site = site_from_doc(
        {
            "site_id": site_id,
            "default_number": "+74951230000",
            "extra": {"crm": {**fake.site_crm(site_id), **extra}},
        }
    )
    return config.from_site(site, fake.secrets())


def adapter(site_id: str, **extra):
    return crm.adapter(cfg(site_id, **extra), FAKE.hubspot_url)


def run_create(a, lead: Lead) -> dict:
    state, saves = {}, []
    a.create(lead, state, lambda s: saves.append(dict(s)))
    return {**state, "saves": saves}


# -- lead content --------------------------------------------------------------


def test_lead_values_carry_both_touches_click_ids_and_the_call():
    fields = content.lead_fields(stitched(call_id="call-x", visitor_id="vis-1"))

    assert fields["first_campaign"] == "brand" and fields["last_campaign"] == "kitchens"
    assert fields["campaign"] == "kitchens" and fields["yclid"] == "y-9"
    assert fields["ga_client_id"] == "123.456" and fields["visitor_id"] == "vis-1"
    assert fields["call_id"] == "call-x" and fields["duration_s"] == 42
    assert fields["recording_url"] == "https://pbx.example.test/rec/1.mp3"
    assert CALLER not in json.dumps(fields)


def test_a_direct_return_credits_the_last_non_direct_touch():
    body = stitched(
        source="(direct)", medium="(none)", campaign=None, direct_return=True
    )

    assert content.credited_touch(body)["campaign"] == "kitchens"
    assert content.title(body) == "Call: yandex / cpc"


def test_config_refuses_an_unknown_crm_field_key_and_stray_secrets():
    site = site_from_doc(
        {
            "site_id": "crm-amo",
            "default_number": "+74951230000",
            "extra": {"crm": {**fake.site_crm("crm-amo"), "fields": {"nonsense": 1}}},
        }
    )
    with pytest.raises(ConfigError):
        config.from_site(site, fake.secrets())
    site = site_from_doc(
        {
            "site_id": "crm-amo",
            "default_number": "+74951230000",
            "extra": {"crm": fake.site_crm("crm-amo")},
        }
    )
    with pytest.raises(ConfigError):
        config.from_site(site, {"crm-amo": {"amocrm_tokn": "x"}})
    assert cfg("crm-amo").crm == "amocrm"
    assert cfg("crm-amo", type="kommo").crm == "amocrm"


# -- amoCRM --------------------------------------------------------------------


def test_amocrm_lead_has_contact_phone_tags_mapped_fields_and_a_note():
    body = stitched()
    state = run_create(adapter("crm-amo"), Lead.of(body))

    lead = FAKE.amo_leads[int(state["crm_lead_id"])]
    assert lead["status_id"] == fake.AMO_STAGE
    assert {t["name"] for t in lead["_embedded"]["tags"]} == {"calltracking", "paid"}
    assert {
        f["field_id"]: f["values"][0]["value"] for f in lead["custom_fields_values"]
    } == {512001: "kitchens", 512002: body["call_id"], 512003: 0.9}
    contact = FAKE.amo_contacts[int(state["contact_id"])]
    phone = contact["custom_fields_values"][0]
    assert phone["field_code"] == "PHONE"
    assert phone["values"] == [{"value": CALLER, "enum_code": "WORK"}]
    note = [n for n in FAKE.amo_notes if n["entity_id"] == lead["id"]]
    assert (
        len(note) == 1
        and "First touch: google / cpc / brand" in note[0]["params"]["text"]
    )
    assert [s.get("noted") for s in state["saves"]] == [None, True]


def test_amocrm_resumes_after_the_note_failed_without_a_second_lead():
    a = adapter("crm-amo")
    state: dict = {}
    leads_before = len(FAKE.amo_leads)
    lead = Lead.of(stitched())
    FAKE.fail_next("amocrm", 503, path="/notes")
    with pytest.raises(TransientError):
        a.create(lead, state, lambda s: None)
    assert "crm_lead_id" in state and "noted" not in state

    a.create(lead, state, lambda s: None)

    assert len(FAKE.amo_leads) == leads_before + 1
    assert state["noted"] is True
    assert sum(n["entity_id"] == int(state["crm_lead_id"]) for n in FAKE.amo_notes) == 1


def test_amocrm_open_lead_rule_follows_won_and_lost_statuses():
    a = adapter("crm-amo")
    state = run_create(a, Lead.of(stitched()))
    lead_id = state["crm_lead_id"]

    assert a.is_open(lead_id) is True
    FAKE.amo_move(int(lead_id), 143)
    assert a.is_open(lead_id) is False
    assert a.is_open("999999") is False  # gone: amoCRM answers 204


def test_amocrm_refuses_a_stage_outside_the_pipeline_as_permanent():
    a = adapter("crm-amo", stage=9999)
    with pytest.raises(PermanentError) as err:
        run_create(a, Lead.of(stitched()))

    assert err.value.code == "crm_refused"
    assert "status_id does not belong" in FAKE.rejected[-1][2]["detail"]


def test_rate_limits_outages_and_timeouts_are_transient_bad_tokens_permanent():
    a = adapter("crm-amo")
    for status in (429, 500, 502, 503):
        FAKE.fail_next("amocrm", status)
        with pytest.raises(TransientError):
            run_create(a, Lead.of(stitched()))
    FAKE.delay_next("amocrm", 1.0)
    slow = crm.AmoCrm(cfg("crm-amo"), Http("amocrm", timeout_s=0.2))
    with pytest.raises(TransientError):
        run_create(slow, Lead.of(stitched()))
    secrets = {"amocrm_token": "nope"}
    wrong = crm.AmoCrm(dataclasses.replace(cfg("crm-amo"), secrets=secrets))
    with pytest.raises(PermanentError) as err:
        run_create(wrong, Lead.of(stitched()))
    assert err.value.code == "crm_auth"


def test_amocrm_webhook_needs_the_url_secret_and_the_sites_account():
    a = adapter("crm-amo")
    state = run_create(a, Lead.of(stitched()))
    form = FAKE.amo_webhook(int(state["crm_lead_id"]))
    now = dt.datetime.now(dt.UTC)

    def req(raw=form):
        return WebhookRequest.build(
            "POST",
            "http://x/amocrm/crm-amo/s",
            {"Content-Type": "application/x-www-form-urlencoded"},
            raw,
        )

    assert a.webhook(req(), [fake.AMO_WEBHOOK_SECRET], now) == [state["crm_lead_id"]]
    with pytest.raises(Unauthorized):
        a.webhook(req(), ["wrong"], now)
    with pytest.raises(Unauthorized):
        a.webhook(req(), [], now)
    with pytest.raises(Forbidden):
        a.webhook(
            req(FAKE.amo_webhook(int(state["crm_lead_id"]), "other")),
            [fake.AMO_WEBHOOK_SECRET],
            now,
        )
    with pytest.raises(BadRequest):
        a.webhook(req(b"account[subdomain]=shop"), [fake.AMO_WEBHOOK_SECRET], now)


# -- Bitrix24 ------------------------------------------------------------------


def test_bitrix24_lead_add_sends_phone_utm_comments_and_mapped_fields():
    body = stitched(site_id="crm-bitrix")
    state = run_create(adapter("crm-bitrix"), Lead.of(body))

    lead = FAKE.bitrix_leads[int(state["crm_lead_id"])]
    assert lead["PHONE"] == [{"VALUE": CALLER, "VALUE_TYPE": "WORK"}]
    assert (
        lead["UTM_SOURCE"],
        lead["UTM_MEDIUM"],
        lead["UTM_CAMPAIGN"],
        lead["UTM_CONTENT"],
    ) == ("yandex", "cpc", "kitchens", "ad7")
    assert "UTM_TERM" not in lead
    assert lead["UF_CRM_CALL_ID"] == body["call_id"] and lead["SOURCE_ID"] == "CALL"
    assert "Click ids: yclid=y-9" in lead["COMMENTS"]
    assert lead["STATUS_ID"] == "NEW"


def test_bitrix24_wrong_webhook_code_is_an_auth_error():
    url = FAKE.url + "/bitrix/rest/1/wrongcode/"
    bad = dataclasses.replace(cfg("crm-bitrix"), secrets={"bitrix24_webhook_url": url})
    with pytest.raises(PermanentError) as err:
        run_create(crm.Bitrix24(bad), Lead.of(stitched()))

    assert err.value.code == "crm_auth"


def test_bitrix24_open_rule_and_deal_read_back():
    a = adapter("crm-bitrix")
    state = run_create(a, Lead.of(stitched()))
    lead_id = state["crm_lead_id"]
    assert a.is_open(lead_id) is True

    deal_id = FAKE.bitrix_convert(int(lead_id), "EXECUTING", "P", "1500.00")
    assert a.is_open(lead_id) is False
    FAKE.bitrix_move(deal_id, "WON", "S", "25000.50")
    deal = a.fetch_deal(str(deal_id))
    assert (
        deal.lead_id,
        deal.stage,
        deal.won,
        deal.lost,
        deal.revenue,
        deal.currency,
    ) == (lead_id, "WON", True, False, 25000.5, "RUB")


def test_bitrix24_webhook_checks_the_application_token_and_event():
    a = adapter("crm-bitrix")
    now = dt.datetime.now(dt.UTC)

    def req(raw):
        return WebhookRequest.build(
            "POST",
            "http://x/bitrix24/crm-bitrix",
            {"Content-Type": "application/x-www-form-urlencoded"},
            raw,
        )

    assert a.webhook(req(FAKE.bitrix_webhook(77)), [], now) == ["77"]
    with pytest.raises(Unauthorized):
        a.webhook(req(FAKE.bitrix_webhook(77, token="forged")), [], now)
    raw = FAKE.bitrix_webhook(77).replace(b"ONCRMDEALUPDATE", b"ONCRMLEADADD")
    with pytest.raises(BadRequest):
        a.webhook(req(raw), [], now)


# -- HubSpot -------------------------------------------------------------------


def test_hubspot_creates_a_contact_then_an_associated_deal():
    body = stitched(site_id="crm-hubspot")
    state = run_create(adapter("crm-hubspot"), Lead.of(body))

    contact = FAKE.hs_contacts[state["contact_id"]]
    deal = FAKE.hs_deals[state["crm_lead_id"]]
    assert contact["properties"] == {"phone": CALLER}
    assert deal["properties"]["dealstage"] == "appointmentscheduled"
    assert deal["properties"]["calltracking_call_id"] == body["call_id"]
    assert deal["properties"]["utm_campaign"] == "kitchens"
    assert (
        "Landing page: https://shop.example.test/k" in deal["properties"]["description"]
    )
    assert deal["associations"][0]["to"]["id"] == state["contact_id"]
    assert [set(s) for s in state["saves"]] == [
        {"contact_id"},
        {"contact_id", "crm_lead_id"},
    ]


def test_hubspot_refuses_unknown_properties():
    a = adapter("crm-hubspot", fields={"gclid": "hs_gclid_custom"})
    with pytest.raises(PermanentError):
        run_create(a, Lead.of(stitched(click_ids={"gclid": "g"})))

    assert "Property values were not valid" in FAKE.rejected[-1][2]["message"]


def test_hubspot_v3_signature_and_five_minute_window():
    a = adapter("crm-hubspot")
    url = "https://fn.example.test/hubspot/crm-hubspot"
    now = dt.datetime.now(dt.UTC)

    def req(body, headers, at=url):
        return WebhookRequest.build("POST", at, headers, body)

    body, headers = FAKE.hubspot_webhook(url, ["5", "6", "5"])
    assert a.webhook(req(body, headers), [], now) == ["5", "6"]
    with pytest.raises(Unauthorized):
        a.webhook(req(body, headers, url + "?x=1"), [], now)
    body2, headers2 = FAKE.hubspot_webhook(url, ["5"], secret="other")
    with pytest.raises(Unauthorized):
        a.webhook(req(body2, headers2), [], now)
    old = int((now.timestamp() - 301) * 1000)
    body3, headers3 = FAKE.hubspot_webhook(url, ["5"], stamp_ms=old)
    with pytest.raises(Forbidden):
        a.webhook(req(body3, headers3), [], now)
    body4, headers4 = FAKE.hubspot_webhook(url, ["5"], prop="hubspot_owner_id")
    assert a.webhook(req(body4, headers4), [], now) == []


# -- generic hook --------------------------------------------------------------


def test_generic_hook_posts_signed_json_with_an_idempotency_key():
    a = adapter("crm-hook")
    lead = Lead.of(stitched(site_id="crm-hook"))
    state = run_create(a, lead)
    again: dict = {}
    a.create(lead, again, lambda s: None)

    assert state["crm_lead_id"].startswith("ext-")
    assert again["crm_lead_id"] == state["crm_lead_id"]  # the receiver deduplicated
    sent = FAKE.hook_leads[state["crm_lead_id"]]
    assert sent["phone"] == CALLER and sent["fields"]["first_campaign"] == "brand"


def test_generic_deal_webhook_is_verified_and_typed():
    a = adapter("crm-hook")
    now = dt.datetime.now(dt.UTC)
    deal = {
        "deal_id": "d1",
        "lead_id": "ext-1",
        "stage": "won",
        "won": True,
        "revenue": 990.5,
        "currency": "EUR",
        "changed_at": "2026-12-03T12:00:00+00:00",
    }

    def req(pair):
        return WebhookRequest.build(
            "POST", "http://x/webhook/crm-hook", pair[1], pair[0]
        )

    [parsed] = a.webhook(req(FAKE.hook_deal(deal)), [], now)
    assert (parsed.won, parsed.revenue, parsed.currency) == (True, 990.5, "EUR")
    with pytest.raises(Unauthorized):
        a.webhook(req(FAKE.hook_deal(deal, secret="x")), [], now)
    with pytest.raises(Forbidden):
        a.webhook(req(FAKE.hook_deal(deal, stamp=int(time.time()) - 900)), [], now)
    with pytest.raises(BadRequest):
        a.webhook(req(FAKE.hook_deal({**deal, "revenue": "lots"})), [], now)
    with pytest.raises(BadRequest):
        a.webhook(req(FAKE.hook_deal({"deal_id": "d1", "won": True})), [], now)
