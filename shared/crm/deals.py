"""CRM deal changes -> ``deals`` rows tied to the call, session and visitor.

``DealRecorder.record`` takes what a verified webhook named (deal ids to read
from the CRM, or whole deals from the generic hook), finds the lead the
product created for each (``crm_links``), appends one ``deals`` row per
change and publishes it as ``deal.changed`` on ``crm-events``. Deals the
product did not create (no link) are ignored: they are no call's revenue.

Idempotent: the row's insert id (``event_id``) is a hash of the deal's state,
so a webhook delivered twice, or two webhooks read after the same change,
leave one row. Reports take the latest row per deal (``changed_at``, then
``recorded_at``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Callable

from shared.crm import store
from shared.crm.base import Deal

logger = logging.getLogger(__name__)

TABLE = "deals"
MESSAGE = "deal.changed"


def event_id(site_id: str, crm: str, deal: Deal) -> str:
    parts = (
        site_id,
        crm,
        deal.deal_id,
        deal.stage,
        deal.won,
        deal.lost,
        deal.revenue,
        deal.currency,
        deal.changed_at.isoformat(),
    )
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:32]


class DealRecorder:
    def __init__(
        self,
        client,
        insert: Callable[[str, list[dict]], None],
        publish: Callable[[str, list[tuple[str, dict]]], object],
        topic: str,
        now: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.client = client
        self.insert = insert
        self.publish = publish
        self.topic = topic
        self.now = now or (lambda: dt.datetime.now(dt.UTC))

    def _link(self, cfg, deal: Deal) -> dict | None:
        if deal.call_id and not deal.lead_id:
            ledger = store.read(self.client, store.LEDGER, cfg.site_id, deal.call_id)
            if not ledger or not ledger.get("crm_lead_id"):
                return None
            lead_id = ledger["crm_lead_id"]
        else:
            lead_id = deal.lead_id or deal.deal_id
        return store.read(self.client, store.LINKS, cfg.site_id, cfg.crm, lead_id)

    def row(self, cfg, deal: Deal, link: dict) -> dict:
        eid = event_id(cfg.site_id, cfg.crm, deal)
        return {
            "row_id": eid,
            "event_id": eid,
            "site_id": cfg.site_id,
            "crm": cfg.crm,
            "crm_deal_id": deal.deal_id,
            "crm_lead_id": link.get("crm_lead_id"),
            "call_id": link.get("call_id"),
            "visitor_id": link.get("visitor_id"),
            "session_id": link.get("session_id"),
            "source": link.get("source"),
            "medium": link.get("medium"),
            "campaign": link.get("campaign"),
            "pipeline": deal.pipeline,
            "stage": deal.stage,
            "won": deal.won,
            "lost": deal.lost,
            "revenue": deal.revenue,
            "currency": deal.currency,
            "changed_at": deal.changed_at.isoformat(),
            "recorded_at": self.now().isoformat(),
        }

    def record(self, cfg, crm, items: list) -> dict:
        """Append the rows of the named deals; returns their ids and the
        deals ignored (gone from the CRM, or not the product's)."""
        rows, links, ignored = [], [], []
        for item in items:
            deal = item if isinstance(item, Deal) else crm.fetch_deal(item)
            link = self._link(cfg, deal) if deal else None
            if link is None:
                ignored.append(deal.deal_id if deal else str(item))
                continue
            rows.append(self.row(cfg, deal, link))
            links.append((link, deal))

        self.insert(TABLE, rows)
        if rows:
            self.publish(
                self.topic,
                [
                    (MESSAGE, {k: v for k, v in row.items() if k != "row_id"})
                    for row in rows
                ],
            )
        for link, deal in links:
            # The latest state decides the repeat caller rule of the lead.
            store.ref(
                self.client, store.LINKS, cfg.site_id, cfg.crm, link["crm_lead_id"]
            ).set(
                {
                    "stage": deal.stage,
                    "won": deal.won,
                    "lost": deal.lost,
                    "deal_id": deal.deal_id,
                    "changed_at": deal.changed_at,
                },
                merge=True,
            )
        for row in rows:
            logger.info(
                "Deal %s of call %s: stage %s, revenue %s %s",
                row["crm_deal_id"],
                row["call_id"],
                row["stage"],
                row["revenue"],
                row["currency"],
                extra={
                    "fields": {
                        "event": "crm_deal",
                        "site_id": cfg.site_id,
                        "crm": cfg.crm,
                        "call_id": row["call_id"],
                        "won": row["won"],
                        "lost": row["lost"],
                    }
                },
            )
        return {"recorded": [row["event_id"] for row in rows], "ignored": ignored}
