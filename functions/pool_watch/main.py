"""Pub/Sub function ``pool_watch``: every site's pool in the logs, on a tick.

Cloud Scheduler publishes ``{"tick": "pool-tick"}`` (every five minutes by
default). For each site this logs one ``pool_status`` line (held, cooling,
free numbers and utilisation, the held share of the dynamic pool), which the
``calltrack/pool_utilisation`` metric reads, and a ``pool_pressure`` warning
when utilisation is over 75%: the level at which the pool is due to grow
(``python -m ops pool-size``). Exhaustion itself is logged by ``assign`` as it
happens (``pool_exhausted``).

Idempotent: it only reads and logs; a repeated tick logs a second snapshot.
"""

from __future__ import annotations

import logging

import functions_framework

from shared import clients, events, log, pool_admin, settings
from shared.errors import PermanentError

logger = logging.getLogger("functions.pool_watch")


@functions_framework.cloud_event
def pool_watch(cloud_event):
    conf = settings.get()
    log.configure(conf.log_level, conf.project)
    kind, _ = events.decode(cloud_event)
    if kind != "tick":
        raise PermanentError(f"Expected a message of type tick, found {kind!r}.")

    client = clients.firestore()
    for site in client.collection("sites").select([]).stream():
        status = pool_admin.pool_status(client, site.id)
        fields = {"event": "pool_status", **status.to_dict()}
        logger.info(
            "Pool of site %s: %d held, %d cooling, %d free",
            site.id,
            status.held,
            status.cooling,
            status.free,
            extra={"fields": fields},
        )
        if status.dynamic and status.utilisation > pool_admin.PRESSURE:
            logger.warning(
                "Pool of site %s is %.0f%% held: add numbers (ops pool-size)",
                site.id,
                100 * status.utilisation,
                extra={"fields": {**fields, "event": "pool_pressure"}},
            )
