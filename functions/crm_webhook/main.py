"""HTTP function ``crm_webhook``: CRMs report deal changes here.

One URL per CRM and site (docs/crm.md):

- ``POST /amocrm/{site_id}/{secret}``: amoCRM/Kommo status webhook
  (form-encoded; no signature, so the URL holds the site's secret); each lead
  is then read from amoCRM.
- ``POST /bitrix24/{site_id}``: Bitrix24 ``ONCRMDEALUPDATE`` with the site's
  ``auth[application_token]``; the deal is then read with ``crm.deal.get``.
- ``POST /hubspot/{site_id}``: HubSpot webhooks with ``X-HubSpot-Signature-v3``
  (at most 5 minutes old); each deal is then read from HubSpot.
- ``POST /webhook/{site_id}``: the generic signed JSON deal change.

Each change of a deal the product created is appended to BigQuery ``deals``
(linked to the lead, call, visitor and session) and published as
``deal.changed`` on ``crm-events`` (``shared.crm.deals``).

Answers: 200 with the recorded event ids and ignored deals; 400 for a
malformed body; 401 for a wrong or missing secret, token or signature; 403
for a stale signature or another account; 404 for an unknown site, CRM or
route; 503 when the CRM, Firestore, BigQuery or Pub/Sub is unavailable, so
the CRM retries. A refused request writes nothing. Idempotent: a repeated
webhook gives the same event ids, which BigQuery's insert ids deduplicate.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging

import flask
import functions_framework

from shared import clients, crm, events, settings, warehouse, web
from shared.crm import config
from shared.crm.deals import DealRecorder
from shared.errors import NotFound
from shared.pool import SiteCache
from shared.providers.base import WebhookRequest
from shared.store import FirestoreStore
from shared.webhook_store import sender_site, unavailable_as_transient

logger = logging.getLogger("functions.crm_webhook")

# CRM webhooks are a few KB (HubSpot batches up to 100 events).
MAX_BODY_BYTES = 256 * 1024


@functools.cache
def _sites() -> SiteCache:
    return SiteCache(FirestoreStore(clients.firestore()), settings.get().site_cache_s)


@functools.cache
def _recorder() -> DealRecorder:
    return DealRecorder(
        clients.firestore(),
        warehouse.insert_rows,
        events.publish,
        settings.get().topic_crm_events,
    )


@functions_framework.http
@web.endpoint
def crm_webhook(request: flask.Request):
    now = dt.datetime.now(dt.UTC)
    parts = request.path.strip("/").split("/")
    if len(parts) < 2 or parts[0] not in config.TYPES + tuple(config.ALIASES):
        raise NotFound("Expected /{crm}/{site_id}, found another path.", code="route")
    name, site_id, rest = config.ALIASES.get(parts[0], parts[0]), parts[1], parts[2:]
    cfg = _config(site_id, name)

    body = web.read_body(request, MAX_BODY_BYTES)
    req = WebhookRequest.build(
        request.method, web.public_url(request), dict(request.headers), body
    )
    conf = settings.get()
    adapter = crm.adapter(cfg, conf.hubspot_endpoint)
    items = adapter.webhook(req, rest, now)
    with unavailable_as_transient("Firestore"):
        result = _recorder().record(cfg, adapter, items)
    return web.json_response(result, 200)


def _config(site_id: str, name: str) -> config.CrmConfig:
    site = sender_site(_sites(), site_id)
    cfg = config.from_site(site, settings.get().crm_secrets)
    if cfg is None or cfg.crm != name:
        msg = f"Expected site {site_id} to use CRM {name}, found another or none."
        raise NotFound(msg, code="crm_not_configured")
    return cfg
