"""Hand-made warehouse rows for the view and quality tests.

Each test module loads its rows into its own dataset of the stack's BigQuery
emulator (tables and views from the same files as production), so other
tests' rows never change the expected numbers.
"""

from __future__ import annotations

import itertools

from shared import queries, warehouse
from shared.stitching import touch_record

PROJECT = "calltrack-local"
_ids = itertools.count(1)


def at(day: str, hhmm: str = "12:00") -> str:
    return f"{day}T{hhmm}:00+00:00"


def make_dataset(stack, name: str) -> str:
    """A fresh dataset with every table and view; returns project.dataset."""
    client = stack.bigquery()
    dataset = f"{PROJECT}.{name}"
    client.delete_dataset(dataset, delete_contents=True, not_found_ok=True)
    warehouse.ensure_tables(client, dataset)
    warehouse.ensure_views(client, dataset)
    return dataset


def load(stack, dataset: str, table: str, rows: list[dict]) -> None:
    body = [warehouse.conform(table, row) for row in rows]
    errors = stack.bigquery().insert_rows_json(f"{dataset}.{table}", body)
    assert errors == []


def query(stack, dataset: str, sql: str, **params) -> list[dict]:
    return queries.rows(sql, client=stack.bigquery(), dataset=dataset, **params)


def touch(
    source: str, medium: str, campaign: str | None = None, when: str | None = None
) -> dict:
    if source == "(direct)":
        return {"landing_page": "https://shop.example.test/", "at": when}
    return {
        "utm_source": source,
        "utm_medium": medium,
        "utm_campaign": campaign,
        "at": when,
    }


def session(
    site: str,
    sid: str,
    visitor: str,
    when: str,
    source: str,
    medium: str,
    campaign: str | None = None,
    *,
    exhausted: bool = False,
) -> dict:
    return {
        "session_id": sid,
        "site_id": site,
        "visitor_id": visitor,
        "started_at": when,
        "source": source,
        "medium": medium,
        "campaign": campaign,
        "number_kind": "dynamic",
        "pool_exhausted": exhausted,
    }


def call(
    site: str,
    cid: str,
    when: str,
    *,
    own: dict | None = None,
    first: dict | None = None,
    non_direct: dict | None = None,
    visitor: str | None = None,
    session_id: str | None = None,
    answered: bool = True,
    talk_s: int = 60,
    caller: str | None = None,
    version: int = 1,
    kind: str = "dynamic",
    reason: str | None = None,
    recording: str | None = None,
) -> dict:
    """A calls row; source/medium/campaign come from the own touch as stitch
    derives them (touch_record), so the fixture matches real rows."""
    own_rec = touch_record(own)
    first_rec = touch_record(first or own)
    nd_rec = touch_record(non_direct)
    direct = own_rec is not None and own_rec["source"] == "(direct)"
    return {
        "call_id": cid,
        "version": version,
        "recorded_at": when,
        "site_id": site,
        "provider": "generic",
        "started_at": when,
        "number": "+74955551000",
        "number_kind": kind,
        "caller_hash": caller,
        "answered": answered,
        "status": "answered" if answered else "no_answer",
        "talk_s": talk_s if answered else 0,
        "recording_ref": recording,
        "reason": reason or ("live_hold" if own_rec else "default_number"),
        "confidence": 0.97 if own_rec else 0.0,
        "session_id": session_id,
        "visitor_id": visitor,
        "direct_return": bool(direct and nd_rec),
        "source": own_rec and own_rec["source"],
        "medium": own_rec and own_rec["medium"],
        "campaign": own_rec and own_rec["utm_campaign"],
        "first_touch": first_rec if own_rec else None,
        "last_touch": own_rec,
        "last_non_direct_touch": nd_rec,
        "stitched_at": when,
    }


def lead(
    site: str,
    cid: str,
    crm_lead_id: str,
    action: str = "created",
    when: str | None = None,
) -> dict:
    when = when or at("2026-11-02", "13:00")
    return {
        "lead_id": f"{site}:{cid}",
        "site_id": site,
        "crm": "amocrm",
        "crm_lead_id": crm_lead_id,
        "call_id": cid,
        "action": action,
        "created_at": when,
        "recorded_at": when,
    }


def deal(
    site: str,
    deal_id: str,
    changed: str,
    *,
    call_id: str | None = None,
    lead_id: str | None = None,
    stage: str = "new",
    won: bool = False,
    lost: bool = False,
    revenue: float | None = None,
) -> dict:
    return {
        "event_id": f"e{next(_ids)}",
        "site_id": site,
        "crm": "amocrm",
        "crm_deal_id": deal_id,
        "crm_lead_id": lead_id,
        "call_id": call_id,
        "stage": stage,
        "won": won,
        "lost": lost,
        "revenue": revenue,
        "currency": "RUB",
        "changed_at": changed,
        "recorded_at": changed,
    }


def cost(
    site: str,
    day: str,
    platform: str,
    source: str,
    medium: str,
    campaign: str | None,
    cost_value: str,
    clicks: int,
    *,
    loaded_at: str = "2026-11-10T08:00:00+00:00",
) -> dict:
    return {
        "load_id": f"load-{loaded_at}",
        "loaded_at": loaded_at,
        "site_id": site,
        "date": day,
        "platform": platform,
        "campaign": f"{platform} {campaign}",
        "utm_source": source,
        "utm_medium": medium,
        "utm_campaign": campaign,
        "impressions": clicks * 10,
        "clicks": clicks,
        "cost": cost_value,
        "currency": "RUB",
    }
