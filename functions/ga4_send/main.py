"""Pub/Sub function ``ga4_send``: stitched calls -> GA4 Measurement Protocol.

From ``calls-stitched``: each ``call.stitched`` message becomes one GA4 event
``call`` (``shared.ga4``), when the site has a measurement id, the visitor
gave analytics consent and the call is at most 72 hours old. ``call.updated``
(a later recording) is not sent: GA4 events cannot be amended, and a second
event would count the call twice.

At least once: the ledger ``ga4_sent/{call_id}`` makes a redelivery harmless.
A GA4 outage (5xx, 408, 429, network) raises, so Pub/Sub redelivers with
backoff; after five attempts the message goes to ``calls-stitched-dead-letter``
(``python -m ops replay --topic calls-stitched`` brings it back).
"""

from __future__ import annotations

import functools
import logging

import functions_framework

from shared import clients, events, ga4, log, settings
from shared.errors import CallTrackError
from shared.pool import SiteCache
from shared.store import FirestoreStore

logger = logging.getLogger("functions.ga4_send")

STITCHED = "call.stitched"


@functools.cache
def _forwarder() -> ga4.Forwarder:
    conf = settings.get()
    client = clients.firestore()
    return ga4.Forwarder(
        client,
        SiteCache(FirestoreStore(client), conf.site_cache_s),
        ga4.Sender(conf.ga4_endpoint),
        conf.ga4_api_secrets,
    )


@functions_framework.cloud_event
def ga4_send(cloud_event):
    conf = settings.get()
    log.configure(conf.log_level, conf.project)
    kind, body = events.decode(cloud_event)
    if kind != STITCHED:
        logger.debug("Ignoring %s message for GA4", kind)
        return

    try:
        _forwarder().handle(body)
    except Exception as exc:
        code = exc.code if isinstance(exc, CallTrackError) else type(exc).__name__
        logger.error(
            "Sending call %s to GA4 failed (%s); Pub/Sub will redeliver it: %.300s",
            body.get("call_id"), code, exc,
            extra={"fields": {"event": "ga4_failed", "call_id": body.get("call_id"),
                              "code": code}},
        )
        raise
