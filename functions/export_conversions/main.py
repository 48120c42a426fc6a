"""Pub/Sub function ``export_conversions``: offline conversions to ad platforms.

Cloud Scheduler publishes ``{"tick": "exports-tick"}`` (type ``tick``) to
``exports-tick``; each tick polls open uploads, selects due conversions from
BigQuery and sends them to Google Ads, Yandex Metrica, Meta and VK Ads per
site configuration (``shared.exports``, docs/exports.md).

Idempotent: the Firestore ledger ``conversion_exports`` claims each
conversion per platform before it is sent, so a redelivered or concurrent
tick sends nothing twice. A tick that fails part way raises, and Pub/Sub
redelivers it; what it recorded stands.
"""

from __future__ import annotations

import functools
import logging

import functions_framework

from shared import events, log, settings
from shared.errors import CallTrackError
from shared.exports import factory

logger = logging.getLogger("functions.export_conversions")

TICK = "tick"


@functools.cache
def _exporter():
    return factory.build(settings.get())


@functions_framework.cloud_event
def export_conversions(cloud_event):
    conf = settings.get()
    log.configure(conf.log_level, conf.project)
    kind, _body = events.decode(cloud_event)
    if kind != TICK:
        logger.debug("Ignoring %s message on exports-tick", kind)
        return

    try:
        _exporter().tick()
    except Exception as exc:
        code = exc.code if isinstance(exc, CallTrackError) else type(exc).__name__
        logger.error(
            "Export tick failed (%s); Pub/Sub will redeliver it: %.300s",
            code,
            exc,
            extra={"fields": {"event": "export_failed", "code": code}},
        )
        raise
