"""Benchmark ``export``: 10,000 due conversions through one export tick.

Starts the emulators (no functions) and the ad platform fakes, writes 10,000
answered calls of one site to the BigQuery emulator, and times one
``Exporter.tick`` in this process: the due queries, the Firestore claims,
Google Data Manager (2,000 events a request), Meta (1,000) and Metrica
``upload_calls``, the ledger writes and audit rows. Prints one line:

    {"bench": "export", "conversions": 10000, "per_s": ..., "requests": ...,
     "platforms": 3, "seconds": ..., "sent_once": true}
"""

from __future__ import annotations

import datetime as dt
import time

from devstack.bench import bench, emit
from devstack.stack import Stack

SITE = "bench-exports"
CALLS = 10_000


def _rows(now: dt.datetime) -> list[dict]:
    from tests.test_exports_e2e import call_row

    started = now - dt.timedelta(hours=3)
    return [call_row(SITE, f"bench-{i:05d}", started) for i in range(CALLS)]


@bench("export")
def export_bench() -> None:
    from tests.fakes import ads_all, ads_google, ads_meta, ads_yandex

    stack = Stack(
        functions=(),
        quiet=True,
        env_overrides={**ads_all.stack_env(), "CALLTRACK_LOG_LEVEL": "WARNING"},
    ).start()
    try:
        from shared import pool_admin, settings, warehouse
        from shared.exports import factory

        pool_admin.put_site(
            stack.firestore(),
            {
                "site_id": SITE,
                "default_number": "+74951230000",
                "allowed_origins": ["https://shop.example.test"],
                "extra": {
                    "exports": {
                        "values": {"qualified_call": 1000},
                        "google": {
                            "customer_id": "1234567890",
                            "actions": {"qualified_call": "901"},
                        },
                        "yandex": {"counter_id": "4455", "calls": ["qualified_call"]},
                        "meta": {
                            "pixel_id": "778899",
                            "events": {"qualified_call": "Contact"},
                        },
                    }
                },
            },
        )
        rows = _rows(dt.datetime.now(dt.UTC))
        for start in range(0, len(rows), 2000):
            warehouse.insert_rows("calls", rows[start : start + 2000])
        exporter = factory.build(settings.load())
        before = sum(len(s.received()) for s in ads_all.SERVERS)

        started = time.perf_counter()
        summary = exporter.tick({SITE})
        wall = time.perf_counter() - started

        requests = sum(len(s.received()) for s in ads_all.SERVERS) - before
        sent_once = (
            ads_google.SERVER.ingest_count == len(ads_google.SERVER.ingested) == CALLS
            and ads_meta.SERVER.received_events == CALLS
            and len(ads_yandex.SERVER.rows) == CALLS
        )
        emit(
            {
                "bench": "export",
                "conversions": CALLS,
                "per_s": round(CALLS / wall, 1),
                "requests": requests,
                "platforms": 3,
                "seconds": round(wall, 1),
                "sent_once": sent_once,
                "states": summary["states"],
            }
        )
    finally:
        stack.stop()
