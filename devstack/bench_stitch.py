"""Benchmark ``stitch``: 1,000 completed calls through the stitch function.

A stack with ``assign`` and ``stitch`` on the emulators: 40 paid visits take
numbers through ``assign``, then 1,000 ``call.completed`` messages (calls on
those numbers while held, on a static number, on the default number, repeat
callers among them) are published to ``call-events`` at once, and the clock
runs until every row is in the BigQuery emulator. The Pub/Sub emulator pushes
one message at a time, so ``per_s`` is bounded by it as much as by stitching;
``decide_per_s`` is the pure decision (``shared.stitching.stitch``) alone.

    {"bench": "stitch", "calls": 1000, "per_s": ..., "seconds": ...,
     "rows": 1000, "decide_per_s": ...}
"""

from __future__ import annotations

import datetime as dt
import time
import uuid

from devstack.bench import bench, emit
from devstack.stack import Stack

SITE = "bench-stitch"
CALLS = 1000
VISITS = 40
POOL = [f"+7495600{i:04d}" for i in range(VISITS)]
STATIC = "+74956009999"
DEFAULT = "+74951230000"
PAID = {"utm_source": "google", "utm_medium": "cpc", "gclid": "bench"}


def _calls(numbers: list[str]) -> list[dict]:
    from shared.phones import mask, phone_hash

    now = dt.datetime.now(dt.UTC)
    bodies = []
    for n in range(CALLS):
        number = (numbers[n % len(numbers)], STATIC, DEFAULT)[
            0 if n % 10 < 8 else (1 if n % 10 == 8 else 2)
        ]
        caller = f"+7916{n % 700:07d}"  # 300 callers call twice
        call_id = f"bench-{uuid.uuid4().hex[:16]}"
        bodies.append(
            {
                "call_id": call_id,
                "site_id": SITE,
                "provider": "generic",
                "provider_call_id": call_id,
                "tracking_number": number,
                "caller": caller,
                "caller_hash": phone_hash(caller),
                "caller_mask": mask(caller),
                "started_at": now.isoformat(),
                "answered": True,
                "ring_s": 5,
                "talk_s": 60,
                "status": "answered",
                "recording_ref": None,
                "raw_ref": None,
                "completed_at": (now + dt.timedelta(seconds=65)).isoformat(),
            }
        )
    return bodies


def _decide_per_s() -> float:
    from shared import stitching
    from shared.sites import site_from_doc

    site = site_from_doc(
        {"site_id": SITE, "default_number": DEFAULT, "allowed_origins": []}
    )
    now = dt.datetime.now(dt.UTC)
    hold = {
        "site_id": SITE,
        "number": POOL[0],
        "session_id": "s",
        "visitor_id": "v",
        "from": now - dt.timedelta(seconds=60),
        "until": now + dt.timedelta(60),
    }
    held = [stitching.Held("h", hold, {"touch": PAID}, {"first_touch": PAID})]
    number = {"site_id": SITE, "kind": "dynamic"}
    started = time.perf_counter()
    for n in range(5000):
        call = stitching.Call(
            call_id=f"c{n}",
            site_id=SITE,
            started_at=now,
            tracking_number=POOL[0],
            caller_hash=f"{n:064d}",
        )
        stitching.stitch(call, site, number, held, None, now)
    return 5000 / (time.perf_counter() - started)


@bench("stitch")
def stitch_bench() -> None:
    from shared import events, pool_admin, settings
    from tests.conftest import Client

    stack = Stack(
        functions=("assign", "stitch"),
        quiet=True,
        env_overrides={
            "CALLTRACK_LOG_LEVEL": "WARNING",
            "CALLTRACK_RATE_PER_MIN": "6000",
            "CALLTRACK_RATE_BURST": "1000",
        },
    ).start()
    try:
        client = stack.firestore()
        pool_admin.put_site(
            client,
            {
                "site_id": SITE,
                "default_number": DEFAULT,
                "allowed_origins": ["https://shop.example.test"],
                "lease_s": 3600,
            },
        )
        pool_admin.import_numbers(
            client,
            SITE,
            [{"number": n} for n in POOL]
            + [
                {
                    "number": STATIC,
                    "kind": "static",
                    "channel": {"utm_source": "billboard", "utm_medium": "offline"},
                }
            ],
        )
        shown = []
        for n in range(VISITS):
            body = {
                "visitor_id": f"bench-v{n:04d}-{uuid.uuid4().hex[:6]}",
                "session_id": f"bench-s{n:04d}-{uuid.uuid4().hex[:6]}",
                "first_touch": PAID,
                "last_touch": PAID,
            }
            answer = (
                Client(stack.urls["assign"]).call("POST", f"/?site={SITE}", body).json()
            )
            shown.append(answer["number"])

        bodies = _calls(shown)
        topic = settings.get().topic_call_events
        started = time.perf_counter()
        for at in range(0, CALLS, 100):
            events.publish(
                topic, [("call.completed", b) for b in bodies[at : at + 100]]
            )
        rows = 0
        deadline = started + 900
        while rows < CALLS and time.perf_counter() < deadline:
            time.sleep(1)
            rows = stack.query(
                f"select count(distinct call_id) as n from `{{dataset}}.calls` "
                f"where site_id = '{SITE}'"
            )[0]["n"]
        wall = time.perf_counter() - started
        emit(
            {
                "bench": "stitch",
                "calls": CALLS,
                "per_s": round(rows / wall, 1),
                "seconds": round(wall, 1),
                "rows": rows,
                "decide_per_s": round(_decide_per_s()),
            }
        )
    finally:
        stack.stop()
