"""Pub/Sub function ``stitch``: completed calls -> attributed rows and messages.

From ``call-events``: ``call.completed`` is attributed to a session and its
touches (``shared.stitching``), written to the BigQuery ``calls`` table and
published as ``call.stitched`` on ``calls-stitched``; ``call.recording`` adds
the next row version with the recording and publishes ``call.updated``.

At least once: a redelivered or replayed message finds the ledger
``stitched_calls/{call_id}`` and repeats only what did not finish (see
``shared.stitch_store``). Any failure raises, so Pub/Sub redelivers; after five
attempts the message goes to ``call-events-dead-letter``, from which
``python -m ops replay --topic call-events`` brings it back.
"""

from __future__ import annotations

import functools
import logging

import functions_framework

from shared import clients, events, log, settings
from shared.errors import BadRequest, CallTrackError, PermanentError
from shared.pool import SiteCache
from shared.stitch_store import Stitcher, StitchStore
from shared.store import FirestoreStore

logger = logging.getLogger("functions.stitch")

COMPLETED = "call.completed"
RECORDING = "call.recording"


@functools.cache
def _stitcher() -> Stitcher:
    conf = settings.get()
    client = clients.firestore()
    return Stitcher(
        StitchStore(client),
        SiteCache(FirestoreStore(client), conf.site_cache_s),
        publish=events.publish,
        topic=conf.topic_calls_stitched,
    )


@functions_framework.cloud_event
def stitch(cloud_event):
    conf = settings.get()
    log.configure(conf.log_level, conf.project)
    kind, body = events.decode(cloud_event)
    handlers = {COMPLETED: _stitcher().completed, RECORDING: _stitcher().recording}
    handler = handlers.get(kind)
    if handler is None:
        msg = f"Expected a message type in {sorted(handlers)}, found {kind!r}."
        raise PermanentError(msg)

    try:
        handler(body)
    except Exception as exc:
        code = exc.code if isinstance(exc, CallTrackError) else type(exc).__name__
        # No error here can hold the caller's number: it never leaves the body.
        logger.error(
            "Stitching call %s failed (%s); Pub/Sub will redeliver it: %.300s",
            body.get("call_id"), code, exc,
            extra={"fields": {"event": "stitch_failed", "call_id": body.get("call_id"),
                              "type": kind, "code": code}},
        )
        if isinstance(exc, BadRequest):
            # A malformed message stays malformed: no retry will stitch it.
            raise PermanentError(exc.message, code=exc.code) from exc
        raise
