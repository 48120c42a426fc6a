"""Pub/Sub function ``record_sessions``: session and hold rows -> BigQuery.

At least once: Pub/Sub may deliver a message twice; each row carries its own
insert id (``row_id``), so BigQuery keeps one copy. A failure raises, Pub/Sub
redelivers, and after the subscription's attempts the message goes to the
dead-letter topic, from which ``python -m ops replay`` brings it back.
"""

from __future__ import annotations

import logging

import functions_framework

from shared import events, log, settings, warehouse
from shared.errors import PermanentError

logger = logging.getLogger("functions.record_sessions")

TABLES = {"session": "sessions", "hold": "number_holds"}


@functions_framework.cloud_event
def record_sessions(cloud_event):
    conf = settings.get()
    log.configure(conf.log_level, conf.project)
    kind, row = events.decode(cloud_event)
    table = TABLES.get(kind)
    if table is None:
        raise PermanentError(
            f"Expected a message type in {sorted(TABLES)}, found {kind!r}."
        )

    warehouse.insert_rows(table, [row])
    logger.debug("Recorded %s row %s", kind, row.get("row_id"))
