"""What is due: funnel events from BigQuery as ``Conversion`` objects.

Three queries, each over the longest platform window (``model.LOOKBACK``):

- calls: the latest version of each call (``calls`` is append-only);
- leads: each lead the CRM created for a call (``action = 'created'``);
- deals: each deal's latest won stage event, with its first won time (the
  conversion time) and current revenue (a later change is an adjustment).

Leads and deals take the click ids, analytics ids, ad consent and caller hash
of their call, found through ``call_id`` (for deals, else the lead's call).
``done`` reads the ledger table for what needs no Firestore look-up at all.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from shared.exports.model import FINAL, LOOKBACK, Conversion, ExportConfig

Query = Callable[[str, dict], list[dict]]

_CALLS = """
SELECT call_id, site_id, started_at, answered, talk_s, ring_s, first_time_caller,
       caller_hash, caller_hash_digits, consent_ads, click_ids, analytics_ids,
       landing_page, last_touch, visitor_id
FROM `{dataset}.calls`
WHERE started_at >= @since
QUALIFY ROW_NUMBER() OVER (PARTITION BY call_id ORDER BY version DESC) = 1
"""

_LATEST_CALLS = """
latest_calls AS (
  SELECT call_id, caller_hash, caller_hash_digits, consent_ads, click_ids,
         analytics_ids,
         landing_page, last_touch, visitor_id, started_at, talk_s, ring_s,
         answered, first_time_caller
  FROM `{dataset}.calls`
  WHERE started_at >= @since
  QUALIFY ROW_NUMBER() OVER (PARTITION BY call_id ORDER BY version DESC) = 1
)"""

_LEADS = """
WITH {latest_calls},
leads AS (
  SELECT lead_id, site_id, call_id, created_at
  FROM `{dataset}.leads`
  WHERE created_at >= @since AND action = 'created'
  QUALIFY ROW_NUMBER() OVER (PARTITION BY lead_id ORDER BY recorded_at DESC) = 1
)
SELECT l.lead_id, l.site_id, l.created_at, c.*
FROM leads AS l JOIN latest_calls AS c ON c.call_id = l.call_id
"""

_DEALS = """
WITH {latest_calls},
won AS (
  SELECT site_id, crm, crm_deal_id, crm_lead_id, call_id, revenue, currency,
         MIN(changed_at) OVER (PARTITION BY site_id, crm, crm_deal_id) AS won_at
  FROM `{dataset}.deals`
  WHERE changed_at >= @since AND won = TRUE
  QUALIFY ROW_NUMBER() OVER (
    PARTITION BY site_id, crm, crm_deal_id ORDER BY changed_at DESC, recorded_at DESC
  ) = 1
),
lead_calls AS (
  SELECT site_id, crm, crm_lead_id, ANY_VALUE(call_id) AS call_id
  FROM `{dataset}.leads`
  WHERE created_at >= @since AND crm_lead_id IS NOT NULL
  GROUP BY site_id, crm, crm_lead_id
)
SELECT w.site_id, w.crm, w.crm_deal_id, w.revenue, w.currency AS deal_currency,
       w.won_at, c.*
FROM won AS w
LEFT JOIN lead_calls AS lc
  ON lc.site_id = w.site_id AND lc.crm = w.crm AND lc.crm_lead_id = w.crm_lead_id
JOIN latest_calls AS c ON c.call_id = COALESCE(w.call_id, lc.call_id)
"""

_DONE = """
SELECT platform, conversion_id, state, value
FROM `{dataset}.conversion_exports`
WHERE recorded_at >= @since
QUALIFY ROW_NUMBER() OVER (
  PARTITION BY export_key ORDER BY recorded_at DESC, attempt DESC
) = 1
"""


def bigquery_query(sql: str, params: dict) -> list[dict]:
    """Run a query with named parameters (the ``Query`` the loaders take)."""
    from shared import queries

    return queries.rows(sql, **params)


def _at(value) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _context(row: dict) -> dict:
    touch = row.get("last_touch") or {}
    return {
        "consent_ads": row.get("consent_ads") is True,
        "click_ids": {k: v for k, v in (row.get("click_ids") or {}).items() if v},
        "analytics_ids": {
            k: v for k, v in (row.get("analytics_ids") or {}).items() if v
        },
        "caller_hash": row.get("caller_hash"),
        "caller_hash_digits": row.get("caller_hash_digits"),
        "visitor_id": row.get("visitor_id"),
        "call_id": row.get("call_id"),
        "touch_at": _at(touch.get("at")),
        "landing_page": row.get("landing_page"),
        "answered": row.get("answered"),
        "talk_s": row.get("talk_s"),
        "ring_s": row.get("ring_s"),
        "first_time_caller": row.get("first_time_caller"),
    }


def call_conversion(row: dict) -> Conversion:
    return Conversion(
        conversion_id=f"call:{row['call_id']}",
        site_id=row["site_id"],
        kind="call",
        occurred_at=_at(row["started_at"]),
        **_context(row),
    )


def lead_conversion(row: dict) -> Conversion:
    return Conversion(
        conversion_id=f"lead:{row['lead_id']}",
        site_id=row["site_id"],
        kind="lead",
        occurred_at=_at(row["created_at"]),
        **_context(row),
    )


def deal_conversion(row: dict) -> Conversion:
    deal_id = f"deal:{row['site_id']}:{row['crm']}:{row['crm_deal_id']}"
    revenue = row.get("revenue")
    return Conversion(
        conversion_id=deal_id,
        site_id=row["site_id"],
        kind="deal",
        occurred_at=_at(row["won_at"]),
        value=float(revenue) if revenue is not None else None,
        currency=row.get("deal_currency"),
        **_context(row),
    )


def funnel(conv: Conversion, conf: ExportConfig) -> list[Conversion]:
    """A call is a ``call`` and, answered and long enough, a ``qualified_call``."""
    if conv.kind != "call":
        return [conv]
    out = [conv]
    if conv.answered and (conv.talk_s or 0) >= conf.qualified_talk_s:
        from dataclasses import replace

        out.append(
            replace(conv, kind="qualified_call", conversion_id="q" + conv.conversion_id)
        )
    return out


def load(
    query: Query, dataset: str, now: dt.datetime, sites: set[str] | None = None
) -> list[Conversion]:
    """Every funnel event of the look-back window (optionally of some sites)."""
    params = {"since": now - LOOKBACK}
    latest = _LATEST_CALLS.format(dataset=dataset)
    out = [call_conversion(r) for r in query(_CALLS.format(dataset=dataset), params)]
    out += [
        lead_conversion(r)
        for r in query(_LEADS.format(dataset=dataset, latest_calls=latest), params)
    ]
    out += [
        deal_conversion(r)
        for r in query(_DEALS.format(dataset=dataset, latest_calls=latest), params)
    ]
    if sites is not None:
        out = [c for c in out if c.site_id in sites]
    return out


def done(query: Query, dataset: str, now: dt.datetime) -> dict:
    """{(platform, conversion_id): value} of conversions whose latest ledger
    row is final (an operator's resend writes a later retry_after row)."""
    rows = query(
        _DONE.format(dataset=dataset), {"since": now - LOOKBACK - dt.timedelta(days=30)}
    )
    return {
        (r["platform"], r["conversion_id"]): r.get("value")
        for r in rows
        if r["state"] in FINAL
    }
