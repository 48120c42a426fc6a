"""Pub/Sub function ``quality_report``: the daily quality checks.

Cloud Scheduler publishes ``{"tick": "quality-tick"}`` (attribute
``type=tick``) to ``quality-tick`` every morning; each tick checks the day
before its publish time (or ``"day": "YYYY-MM-DD"`` from the body, for a
backfill), merges the rows into BigQuery ``quality_daily`` and logs a
``quality_breach`` event for every breached target (``shared.quality``).

Idempotent: a redelivered tick replaces the same day's rows. A BigQuery failure
raises, so Pub/Sub redelivers; after five attempts the tick goes to
``quality-tick-dead-letter``.
"""

from __future__ import annotations

import logging

import functions_framework

from shared import events, log, quality, settings
from shared.errors import BadRequest, CallTrackError, PermanentError

logger = logging.getLogger("functions.quality_report")

TICK = "tick"


@functions_framework.cloud_event
def quality_report(cloud_event):
    conf = settings.get()
    log.configure(conf.log_level, conf.project)
    kind, body = events.decode(cloud_event)
    if kind != TICK:
        msg = f"Expected a message of type {TICK!r}, found {kind!r}."
        raise PermanentError(msg)

    try:
        day = quality.day_of_tick(body, cloud_event["time"])
        quality.run(day)
    except Exception as exc:
        code = exc.code if isinstance(exc, CallTrackError) else type(exc).__name__
        logger.error(
            "The quality report failed (%s); Pub/Sub will redeliver the tick: %.300s",
            code,
            exc,
            extra={"fields": {"event": "quality_failed", "code": code}},
        )
        if isinstance(exc, BadRequest):
            raise PermanentError(exc.message, code=exc.code) from exc
        raise
