"""Pub/Sub function ``crm_lead``: stitched calls -> leads in the site's CRM.

From ``calls-stitched``: ``call.stitched`` becomes a lead in the CRM named by
the site's ``extra.crm`` (amoCRM/Kommo, Bitrix24, HubSpot or a signed JSON
webhook), or a note on the caller's open lead; ``call.updated`` adds a later
recording's link to that lead (``shared.crm.leads``). Every lead action is a
row in BigQuery ``leads``. The call's own row was written by ``stitch``
before this message existed, so a CRM outage never holds it up.

Idempotent: the ledger ``crm_leads/{site}:{call}`` makes a redelivery or a
replay repeat nothing. A CRM outage or rate limit (5xx, 408, 429, network)
raises, so Pub/Sub redelivers with backoff (1-10 s); after five attempts the
message goes to ``calls-stitched-dead-letter`` (``python -m ops replay
--topic calls-stitched`` brings it back).
"""

from __future__ import annotations

import functools
import logging

import functions_framework

from shared import clients, crm, events, log, settings
from shared.crm.leads import LeadSender
from shared.errors import CallTrackError
from shared.pool import SiteCache
from shared.store import FirestoreStore

logger = logging.getLogger("functions.crm_lead")


@functools.cache
def _sender() -> LeadSender:
    conf = settings.get()
    client = clients.firestore()
    return LeadSender(
        client,
        SiteCache(FirestoreStore(client), conf.site_cache_s),
        conf.crm_secrets,
        lambda cfg: crm.adapter(cfg, conf.hubspot_endpoint),
    )


@functions_framework.cloud_event
def crm_lead(cloud_event):
    conf = settings.get()
    log.configure(conf.log_level, conf.project)
    kind, body = events.decode(cloud_event)
    try:
        _sender().handle(kind, body)
    except Exception as exc:
        code = exc.code if isinstance(exc, CallTrackError) else type(exc).__name__
        logger.error(
            "Sending call %s to the CRM failed (%s); Pub/Sub will redeliver it: %.300s",
            body.get("call_id"),
            code,
            exc,
            extra={
                "fields": {
                    "event": "crm_lead_failed",
                    "call_id": body.get("call_id"),
                    "code": code,
                }
            },
        )
        raise
