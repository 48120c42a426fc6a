"""Exports end to end: rows in the BigQuery emulator -> tick -> the platform
fakes received exactly the right events -> ledger in Firestore and BigQuery.

Most tests drive ``Exporter.tick`` in this process (real Firestore and
BigQuery emulators, the fakes over HTTP) with a controllable clock, so
retries, leases and windows can be crossed without waiting; one test sends a
real tick message through Pub/Sub to the deployed function. Each test uses
its own site id, since BigQuery rows outlive a test.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import logging
import threading
import uuid

import pytest

from ops.__main__ import main as ops_main
from shared import events, settings, warehouse
from shared.exports import factory
from shared.exports.exporter import EXPORT_LEDGER
from shared.exports.http import Http
from tests.conftest import wait_for
from tests.fakes import ads_all, ads_google, ads_meta, ads_vk, ads_yandex

PHONE_HASH = hashlib.sha256(b"+79161234567").hexdigest()
_n = itertools.count(1)


def site_id() -> str:
    return f"exp-{uuid.uuid4().hex[:10]}"


def exports_conf(google_api="data_manager", customer="1234567890", **over) -> dict:
    conf = {
        "values": {"qualified_call": 1500, "lead": 3000},
        "google": {
            "api": google_api,
            "customer_id": customer,
            "actions": {
                "qualified_call": "901",
                "lead": "903",
                "deal": "902",
                "deal_adjustment": "904",
            },
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
    conf.update(over)
    return conf


@pytest.fixture
def ads(stack):
    ads_all.clear()
    yield
    ads_all.clear()


class Clock:
    def __init__(self) -> None:
        self.at = dt.datetime.now(dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.at

    def advance(self, **delta) -> None:
        self.at += dt.timedelta(**delta)


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def exporter(stack, ads, clock):
    """The deployment's exporter, fast retries, secrets for any test site."""
    conf = settings.load()
    secrets = _Secrets()
    exp = factory.build(conf, Http(timeout_s=1.0, backoff_s=0.01), now=clock)
    exp.secrets = secrets
    return exp


class _Secrets(dict):
    def get(self, key, default=None):
        return ads_all.SECRETS


def make_export_site(make_site, sid: str, **conf) -> None:
    make_site(site_id=sid, extra={"exports": exports_conf(**conf)})


def call_row(sid: str, call_id: str, started: dt.datetime, **over) -> dict:
    row = {
        "row_id": f"{call_id}:1",
        "call_id": call_id,
        "version": 1,
        "recorded_at": started.isoformat(),
        "site_id": sid,
        "started_at": started.isoformat(),
        "reason": "exact",
        "confidence": 1.0,
        "stitched_at": started.isoformat(),
        "caller_hash": PHONE_HASH,
        "caller_mask": "+7*******67",
        "answered": True,
        "talk_s": 95,
        "ring_s": 6,
        "first_time_caller": True,
        "consent_ads": True,
        "consent_analytics": True,
        "visitor_id": f"visitor-{call_id}",
        "session_id": f"session-{call_id}",
        "click_ids": {"gclid": f"gclid-{call_id}", "fbclid": f"fbclid{next(_n)}"},
        "analytics_ids": {
            "ym_client_id": f"17000000{next(_n):011d}",
            "fbp": "fb.1.1764000000000.123456",
        },
        "landing_page": f"https://shop.example.test/?rb_clickid=rb-{call_id}",
        "last_touch": {
            "at": (started - dt.timedelta(minutes=5)).isoformat(),
            "source": "google",
            "medium": "cpc",
        },
    }
    row.update(over)
    return row


def deal_row(
    sid: str, deal_id: str, call_id: str, at: dt.datetime, revenue: float, won=True
) -> dict:
    event_id = f"{deal_id}:{at.timestamp()}:{revenue}"
    return {
        "row_id": event_id,
        "event_id": event_id,
        "site_id": sid,
        "crm": "amocrm",
        "crm_deal_id": deal_id,
        "call_id": call_id,
        "stage": "won",
        "won": won,
        "lost": False,
        "revenue": revenue,
        "currency": "RUB",
        "changed_at": at.isoformat(),
        "recorded_at": at.isoformat(),
    }


def lead_row(sid: str, lead_id: str, call_id: str, at: dt.datetime) -> dict:
    return {
        "row_id": lead_id,
        "lead_id": lead_id,
        "site_id": sid,
        "crm": "amocrm",
        "crm_lead_id": f"crm-{lead_id}",
        "call_id": call_id,
        "action": "created",
        "created_at": at.isoformat(),
        "recorded_at": at.isoformat(),
    }


def ledger(fs, sid: str) -> dict:
    from google.cloud.firestore_v1.base_query import FieldFilter

    query = fs.collection(EXPORT_LEDGER).where(filter=FieldFilter("site_id", "==", sid))
    return {s.id: s.to_dict() for s in query.stream()}


def bq_states(stack, sid: str) -> dict:
    rows = stack.query(
        "select export_key, state, attempt, recorded_at from "
        f"`{{dataset}}.conversion_exports` where site_id = '{sid}'"
    )
    out: dict = {}
    for r in sorted(rows, key=lambda r: (r["recorded_at"], r["attempt"])):
        out.setdefault(r["export_key"], []).append(r["state"])
    return out


def google_ids() -> list[str]:
    return sorted(t for _, t in ads_google.SERVER.ingested)


# -- the whole path -------------------------------------------------------------


def test_one_tick_sends_each_conversion_once_to_each_platform(
    stack, exporter, make_site, fs, clock
):
    sid = site_id()
    make_export_site(make_site, sid)
    t = clock() - dt.timedelta(hours=3)
    warehouse.insert_rows(
        "calls",
        [
            call_row(sid, f"{sid}-long", t),
            call_row(sid, f"{sid}-short", t, talk_s=12),
            call_row(sid, f"{sid}-noconsent", t, consent_ads=False),
            # A later version of the long call: the latest row counts, once.
            {
                **call_row(sid, f"{sid}-long", t, talk_s=120),
                "version": 2,
                "row_id": f"{sid}-long:2",
            },
        ],
    )
    warehouse.insert_rows("leads", [lead_row(sid, f"{sid}-L1", f"{sid}-long", t)])
    warehouse.insert_rows(
        "deals",
        [
            deal_row(
                sid, "D1", f"{sid}-short", t + dt.timedelta(hours=1), 0, won=False
            ),
            deal_row(sid, "D1", f"{sid}-short", t + dt.timedelta(hours=2), 125000.0),
        ],
    )

    summary = exporter.tick({sid})

    deal = f"deal:{sid}:amocrm:D1"
    assert google_ids() == sorted([f"qcall:{sid}-long", f"lead:{sid}-L1", deal])
    dm = ads_google.SERVER.received("/v1/events:ingest")
    assert len(dm) == 1 and ads_google.SERVER.ingest_count == 3
    rows = ads_yandex.SERVER.rows
    assert sorted(r["_kind"] for r in rows) == ["BASIC", "CALLS", "CALLS"]
    short = next(r for r in rows if r["_kind"] == "CALLS" and r["TalkDuration"] == "12")
    assert short["CallMissed"] == "0" and short["Tag"] == "call"
    assert next(r for r in rows if r["_kind"] == "BASIC")["Price"] == "125000"
    assert sorted(ads_meta.SERVER.events) == sorted(
        [("Contact", f"qcall:{sid}-long"), ("Purchase", deal)]
    )
    assert ads_vk.SERVER.hits == [
        {
            "pixel": "3344",
            "value": "125000",
            "goal": "purchase",
            "rb_clickid": f"rb-{sid}-short",
        }
    ]

    states = {k: v["state"] for k, v in ledger(fs, sid).items()}
    assert states[f"google:qcall:{sid}-long"] == "sent"
    assert states[f"meta:{deal}"] == "accepted"
    assert states[f"vk:{deal}"] == "accepted"
    assert states[f"yandex:call:{sid}-long"] == "sent"
    assert states[f"yandex:call:{sid}-noconsent"] == "rejected"
    assert ledger(fs, sid)[f"yandex:call:{sid}-noconsent"]["reason"].startswith(
        "no_consent"
    )
    assert not any("noconsent" in t for _, t in ads_google.SERVER.ingested)
    assert summary["claimed"] == 9

    # Later ticks poll the uploads and send nothing again.
    clock.advance(minutes=15)
    exporter.tick({sid})
    clock.advance(minutes=15)
    exporter.tick({sid})
    states = {k: v["state"] for k, v in ledger(fs, sid).items()}
    assert states[f"google:qcall:{sid}-long"] == "accepted"
    assert states[f"yandex:call:{sid}-long"] == "accepted"
    assert ads_google.SERVER.ingest_count == 3
    assert len(ads_yandex.SERVER.rows) == 3
    assert ads_meta.SERVER.received_events == 2 and len(ads_vk.SERVER.hits) == 1
    history = bq_states(stack, sid)
    assert history[f"google:qcall:{sid}-long"] == ["pending", "sent", "accepted"]
    assert history[f"meta:{deal}"] == ["pending", "accepted"]
    assert history[f"yandex:call:{sid}-noconsent"] == ["rejected"]


def test_a_tick_message_runs_the_deployed_function(stack, ads, make_site, fs):
    sid = "exports"
    make_export_site(
        make_site,
        sid,
        meta={"pixel_id": "778899", "events": {"qualified_call": "Contact"}},
    )
    t = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    call_id = f"fn-{uuid.uuid4().hex[:8]}"
    warehouse.insert_rows("calls", [call_row(sid, call_id, t)])

    events.publish("exports-tick", [("tick", {"tick": "exports-tick"})])

    wait_for(lambda: ("Contact", f"qcall:{call_id}") in ads_meta.SERVER.events)
    wait_for(
        lambda: (
            ledger(fs, sid).get(f"meta:qcall:{call_id}", {}).get("state") == "accepted"
        )
    )
    assert f"qcall:{call_id}" in google_ids()
    # The tick logs its summary once every platform is done, a little after
    # the ledger shows Meta's answer.
    wait_for(lambda: "export_tick" in stack.log_text("export_conversions"))
    log = stack.log_text("export_conversions")
    assert ads_google.SECRETS["google_refresh_token"] not in log
    assert ads_meta.SECRETS["meta_access_token"] not in log


# -- deals, consent, windows ------------------------------------------------------


def test_a_revenue_change_sends_an_adjustment_where_configured(
    stack, exporter, make_site, fs, clock
):
    sid = site_id()
    make_export_site(make_site, sid)
    t = clock() - dt.timedelta(hours=3)
    warehouse.insert_rows("calls", [call_row(sid, f"{sid}-c", t)])
    warehouse.insert_rows("deals", [deal_row(sid, "D9", f"{sid}-c", t, 1000.0)])
    exporter.tick({sid})
    deal = f"deal:{sid}:amocrm:D9"

    warehouse.insert_rows(
        "deals", [deal_row(sid, "D9", f"{sid}-c", t + dt.timedelta(hours=1), 1600.0)]
    )
    clock.advance(minutes=5)
    exporter.tick({sid})
    clock.advance(minutes=5)
    exporter.tick({sid})

    adj = ads_google.SERVER.ingested[("904", f"{deal}:adj1")]
    assert adj["conversionValue"] == 600.0
    assert ads_google.SERVER.ingested[("902", deal)]["conversionValue"] == 1000.0
    assert ads_google.SERVER.ingest_count == 3  # the call, the deal, the adjustment
    docs = ledger(fs, sid)
    assert docs[f"google:{deal}"]["value"] == 1600.0
    # Meta has no adjustment event configured: noted, not sent.
    assert docs[f"meta:{deal}"]["reason"].startswith("value_change_not_sent")
    assert ads_meta.SERVER.received_events == 2  # the call and the deal only


def test_windows_expire_without_sending(stack, exporter, make_site, fs, clock):
    sid = site_id()
    make_export_site(make_site, sid)
    t = clock() - dt.timedelta(days=25)
    warehouse.insert_rows("calls", [call_row(sid, f"{sid}-old", t)])

    exporter.tick({sid})

    docs = ledger(fs, sid)
    assert docs[f"yandex:call:{sid}-old"]["state"] == "expired"
    assert docs[f"meta:qcall:{sid}-old"]["state"] == "expired"
    assert docs[f"google:qcall:{sid}-old"]["state"] == "sent"
    assert ads_yandex.SERVER.rows == [] and ads_meta.SERVER.received_events == 0


# -- failures ------------------------------------------------------------------------


def test_5xx_is_retried_then_left_for_a_later_tick(
    stack, exporter, make_site, fs, clock
):
    sid = site_id()
    make_export_site(make_site, sid, yandex=None, meta=None, vk=None)
    warehouse.insert_rows(
        "calls", [call_row(sid, f"{sid}-a", clock() - dt.timedelta(hours=2))]
    )
    ads_google.SERVER.fail_next(503, times=3, match="events:ingest")

    exporter.tick({sid})

    doc = ledger(fs, sid)[f"google:qcall:{sid}-a"]
    assert doc["state"] == "retry_after" and doc["attempts"] == 1
    assert len(ads_google.SERVER.received("events:ingest")) == 3
    exporter.tick({sid})  # not yet due: nothing sent
    assert len(ads_google.SERVER.received("events:ingest")) == 3

    clock.advance(minutes=6)
    ads_google.SERVER.fail_next(
        429, times=1, match="events:ingest", headers={"Retry-After": "0"}
    )
    exporter.tick({sid})

    assert ledger(fs, sid)[f"google:qcall:{sid}-a"]["state"] == "sent"
    assert google_ids() == [f"qcall:{sid}-a"]


def test_one_bad_event_refuses_a_meta_batch_and_is_isolated(
    stack, exporter, make_site, fs, clock, caplog
):
    sid = site_id()
    make_export_site(make_site, sid, google=None, yandex=None, vk=None)
    t = clock() - dt.timedelta(hours=2)
    warehouse.insert_rows("calls", [call_row(sid, f"{sid}-{i}", t) for i in range(5)])
    ads_meta.SERVER.refuse_ids.add(f"qcall:{sid}-3")

    with caplog.at_level(logging.WARNING):
        exporter.tick({sid})

    states = {k: v["state"] for k, v in ledger(fs, sid).items()}
    assert states.pop(f"meta:qcall:{sid}-3") == "rejected"
    assert set(states.values()) == {"accepted"} and len(states) == 4
    assert len(ads_meta.SERVER.events) == 4
    refused = [
        r
        for r in caplog.records
        if getattr(r, "fields", {}).get("event") == "export_rejected"
    ]
    assert refused and refused[0].fields["site_id"] == sid
    assert refused[0].fields["platform"] == "meta"


def test_datamanager_fast_fail_is_bisected(stack, exporter, make_site, fs, clock):
    sid = site_id()
    make_export_site(make_site, sid, yandex=None, meta=None, vk=None)
    t = clock() - dt.timedelta(hours=2)
    warehouse.insert_rows("calls", [call_row(sid, f"{sid}-{i}", t) for i in range(4)])
    ads_google.SERVER.invalid_gclids.add(f"gclid-{sid}-2")

    exporter.tick({sid})

    docs = ledger(fs, sid)
    assert docs[f"google:qcall:{sid}-2"]["state"] == "rejected"
    assert "INVALID_GCLID" in docs[f"google:qcall:{sid}-2"]["reason"]
    assert len(google_ids()) == 3


def test_datamanager_failed_status_rejects_with_the_reason(
    stack, exporter, make_site, fs, clock
):
    sid = site_id()
    make_export_site(make_site, sid, yandex=None, meta=None, vk=None)
    warehouse.insert_rows(
        "calls", [call_row(sid, f"{sid}-a", clock() - dt.timedelta(hours=2))]
    )
    ads_google.SERVER.set_status("FAILED", [("INVALID_CONVERSION_ACTION", 1)])

    for _ in range(3):
        exporter.tick({sid})
        clock.advance(minutes=15)

    doc = ledger(fs, sid)[f"google:qcall:{sid}-a"]
    assert doc["state"] == "rejected"
    assert "INVALID_CONVERSION_ACTION" in doc["reason"]


def test_legacy_partial_failure_too_recent_is_retried_after_the_wait(
    stack, exporter, make_site, fs, clock
):
    sid = site_id()
    make_export_site(
        make_site,
        sid,
        google_api="legacy",
        customer="1112223333",
        yandex=None,
        meta=None,
        vk=None,
    )
    t = clock() - dt.timedelta(hours=2)
    warehouse.insert_rows(
        "calls",
        [call_row(sid, f"{sid}-{i}", t) for i in range(3)]
        + [call_row(sid, f"{sid}-phone", t, click_ids={})],
    )
    ads_google.SERVER.too_recent.add(f"gclid-{sid}-0")
    ads_google.SERVER.invalid_gclids.add(f"gclid-{sid}-1")

    exporter.tick({sid})

    docs = ledger(fs, sid)
    assert docs[f"google:qcall:{sid}-0"]["state"] == "retry_after"
    assert docs[f"google:qcall:{sid}-1"]["state"] == "rejected"
    assert docs[f"google:qcall:{sid}-2"]["state"] == "accepted"
    assert docs[f"google:qcall:{sid}-phone"]["state"] == "accepted"
    phone = ads_google.SERVER.orders[f"qcall:{sid}-phone"]
    assert phone["userIdentifiers"] == [{"hashedPhoneNumber": PHONE_HASH}]

    ads_google.SERVER.too_recent.clear()
    clock.advance(hours=5)
    exporter.tick({sid})
    assert ledger(fs, sid)[f"google:qcall:{sid}-0"]["state"] == "retry_after"
    clock.advance(hours=1, minutes=1)
    exporter.tick({sid})
    assert ledger(fs, sid)[f"google:qcall:{sid}-0"]["state"] == "accepted"
    assert ads_google.SERVER.legacy_rows == 3


def test_legacy_refuses_accounts_not_allowlisted(stack, exporter, make_site, fs, clock):
    sid = site_id()
    make_export_site(
        make_site,
        sid,
        google_api="legacy",
        customer="9998887777",
        yandex=None,
        meta=None,
        vk=None,
    )
    warehouse.insert_rows(
        "calls", [call_row(sid, f"{sid}-a", clock() - dt.timedelta(hours=2))]
    )

    exporter.tick({sid})

    doc = ledger(fs, sid)[f"google:qcall:{sid}-a"]
    assert doc["state"] == "rejected"
    assert "CUSTOMER_NOT_ALLOWLISTED" in doc["reason"]


# -- never twice -----------------------------------------------------------------------


def test_a_crash_between_send_and_ledger_write_is_settled(
    stack, exporter, make_site, fs, clock, monkeypatch
):
    sid = site_id()
    make_export_site(make_site, sid)
    t = clock() - dt.timedelta(hours=2)
    warehouse.insert_rows("calls", [call_row(sid, f"{sid}-a", t)])
    warehouse.insert_rows("deals", [deal_row(sid, "D1", f"{sid}-a", t, 500.0)])
    real = exporter._write_results

    def crash(*args, **kwargs):
        raise RuntimeError("process killed")

    monkeypatch.setattr(exporter, "_write_results", crash)
    for _platform in ("google", "yandex", "meta", "vk"):
        # Each tick dies after its first send; the next one finds that
        # platform's claims pending (within the lease) and goes on.
        with pytest.raises(RuntimeError):
            exporter.tick({sid})
    monkeypatch.setattr(exporter, "_write_results", real)
    sent_once = (
        ads_google.SERVER.ingest_count,
        ads_meta.SERVER.received_events,
        len(ads_vk.SERVER.hits),
        len(ads_yandex.SERVER.rows),
    )
    assert all(n > 0 for n in sent_once), sent_once

    exporter.tick({sid})  # within the lease: left alone
    clock.advance(minutes=11)
    exporter.tick({sid})
    exporter.tick({sid})  # a repeat is a no-op

    docs = ledger(fs, sid)
    assert all(d["state"] in ("sent", "accepted") for d in docs.values()), docs
    # Google and Meta were sent again with the same ids and deduplicated;
    # VK (no dedup) and Metrica (found by its upload comment) were not resent.
    assert len(google_ids()) == 2 and len(ads_meta.SERVER.events) == 2
    assert len(ads_vk.SERVER.hits) == 1
    assert len(ads_yandex.SERVER.rows) == sent_once[3]
    assert docs[f"vk:deal:{sid}:amocrm:D1"]["reason"].startswith("in_doubt")


def test_a_metrica_timeout_is_in_doubt_and_never_uploaded_twice(
    stack, exporter, make_site, fs, clock
):
    sid = site_id()
    make_export_site(make_site, sid, google=None, meta=None, vk=None)
    warehouse.insert_rows(
        "calls", [call_row(sid, f"{sid}-a", clock() - dt.timedelta(hours=2))]
    )
    ads_yandex.SERVER.delay_next(1.5, match="upload_calls")

    exporter.tick({sid})

    assert ledger(fs, sid)[f"yandex:call:{sid}-a"]["state"] == "pending"
    clock.advance(minutes=11)
    exporter.tick({sid})
    doc = ledger(fs, sid)[f"yandex:call:{sid}-a"]
    assert doc["state"] == "sent" and doc["reason"].startswith("in_doubt")
    assert len(ads_yandex.SERVER.rows) == 1


def test_two_ticks_at_once_send_nothing_twice(stack, exporter, make_site, fs, clock):
    sid = site_id()
    make_export_site(make_site, sid, google=None, yandex=None, vk=None)
    t = clock() - dt.timedelta(hours=2)
    warehouse.insert_rows("calls", [call_row(sid, f"{sid}-{i}", t) for i in range(6)])
    other = factory.build(
        settings.load(), Http(timeout_s=1.0, backoff_s=0.01), now=clock
    )
    other.secrets = exporter.secrets
    errors = []

    def run(exp):
        try:
            exp.tick({sid})
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(e,)) for e in (exporter, other)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()

    assert errors == []
    assert ads_meta.SERVER.received_events == 6 == len(ads_meta.SERVER.events)
    assert {d["state"] for d in ledger(fs, sid).values()} == {"accepted"}


def test_batches_stop_at_2000_events(stack, exporter, make_site, fs, clock):
    sid = site_id()
    make_export_site(make_site, sid, yandex=None, meta=None, vk=None)
    t = clock() - dt.timedelta(hours=2)
    warehouse.insert_rows(
        "calls", [call_row(sid, f"{sid}-{i}", t) for i in range(2050)]
    )

    exporter.tick({sid})

    sizes = sorted(
        len(r.json()["events"]) for r in ads_google.SERVER.received("events:ingest")
    )
    assert sizes == [50, 2000]
    assert len(google_ids()) == 2050


# -- operator commands ---------------------------------------------------------------


def test_dry_run_prints_the_requests_and_sends_nothing(
    stack, ads, make_site, fs, capsys, tmp_path
):
    sid = "exports-dry"
    make_export_site(make_site, sid)
    warehouse.insert_rows(
        "calls",
        [call_row(sid, f"{sid}-a", dt.datetime.now(dt.UTC) - dt.timedelta(hours=2))],
    )

    assert ops_main(["exports", "dry-run", "--site", sid, "--validate"]) == 0

    import json

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    by_platform = {line["platform"]: line for line in lines}
    assert set(by_platform) == {"google", "yandex", "meta"}
    google = by_platform["google"]
    assert google["body"]["validateOnly"] is True
    assert google["body"]["events"][0]["transactionId"] == f"qcall:{sid}-a"
    assert google["validation"]["status"] == 200
    assert by_platform["yandex"]["body"].startswith("ClientId,DateTime,")
    assert "access_token" not in json.dumps(lines)
    assert ads_google.SERVER.ingest_count == 0 and ads_google.SERVER.validated == 1
    assert ads_meta.SERVER.received_events == 0 and ads_yandex.SERVER.rows == []
    assert ledger(fs, sid) == {}

    out = tmp_path / "requests.jsonl"
    assert ops_main(["exports", "dry-run", "--site", sid, "--out", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 3


def test_status_and_resend_of_a_rejected_conversion(stack, ads, make_site, fs, capsys):
    sid = "exports-b"
    make_export_site(make_site, sid, yandex=None, google=None, vk=None)
    call_id = f"rs-{uuid.uuid4().hex[:8]}"
    warehouse.insert_rows(
        "calls",
        [call_row(sid, call_id, dt.datetime.now(dt.UTC) - dt.timedelta(hours=2))],
    )
    ads_meta.SERVER.refuse_ids.add(f"qcall:{call_id}")
    assert ops_main(["exports", "tick", "--site", sid]) == 0
    assert ops_main(["exports", "status", "--site", sid]) == 0
    assert f"{sid}\tmeta\trejected\t1" in capsys.readouterr().out

    ads_meta.SERVER.refuse_ids.clear()
    assert (
        ops_main(
            [
                "exports",
                "resend",
                "--site",
                sid,
                "--platform",
                "meta",
                "--conversion",
                f"qcall:{call_id}",
            ]
        )
        == 0
    )
    assert ops_main(["exports", "tick", "--site", sid]) == 0

    assert ledger(fs, sid)[f"meta:qcall:{call_id}"]["state"] == "accepted"
    assert ads_meta.SERVER.received_events == 1


def test_missing_or_refused_credentials_wait_and_are_reported(
    stack, exporter, make_site, fs, clock, caplog
):
    sid = site_id()
    make_export_site(make_site, sid, yandex=None, vk=None)
    warehouse.insert_rows(
        "calls", [call_row(sid, f"{sid}-a", clock() - dt.timedelta(hours=2))]
    )
    wrong_meta = {**ads_all.SECRETS, "meta_access_token": "revoked-token"}
    exporter.secrets = {
        sid: {k: v for k, v in wrong_meta.items() if not k.startswith("google_")}
    }

    with caplog.at_level(logging.WARNING):
        exporter.tick({sid})

    docs = ledger(fs, sid)
    google, meta = docs[f"google:qcall:{sid}-a"], docs[f"meta:qcall:{sid}-a"]
    assert google["state"] == meta["state"] == "retry_after"
    assert google["reason"].startswith("config: Expected google_client_id")
    assert meta["reason"].startswith("auth: ")
    assert ads_google.SERVER.ingest_count == 0 and ads_meta.SERVER.events == {}
    reported = {
        r.fields["platform"]
        for r in caplog.records
        if getattr(r, "fields", {}).get("event") == "export_rejected"
    }
    assert reported == {"google", "meta"}
    assert "revoked-token" not in caplog.text
