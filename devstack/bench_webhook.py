"""Benchmark ``webhook``: signed call events from 20 concurrent senders.

Each sender posts 48 generic-hook events, 12 calls of start, answer, end and
recording, to a local stack that runs only ``call_webhook``. Every request is
verified, merged into its call's Firestore document and, for an end or a late
recording, published to ``call-events`` before the answer, so the figures are
the provider's real wait. Prints one line:

    {"bench": "webhook", "senders": 20, "events": 960, "per_s": ...,
     "ack_p50_ms": ..., "ack_p99_ms": ..., "errors": 0, "calls": 240,
     "completed_published": 240}
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import json
import time
import uuid

from devstack.bench import bench, emit, percentile
from devstack.stack import Stack

SITE = "bench-hooks"
SECRET = "bench-generic-secret"
SENDERS = 20
CALLS_PER_SENDER = 12
KINDS = ("start", "answer", "end", "recording")


def _event(call_id: str, kind: str, n: int) -> dict:
    now = dt.datetime.now(dt.UTC).isoformat()
    body = {"call_id": call_id, "event": kind, "occurred_at": now}
    if kind in ("start", "end"):
        body |= {"tracking_number": "+74951234567", "caller": f"+7916{n:07d}"}
    if kind == "end":
        body |= {"started_at": now, "answered": True, "ring_s": 9, "talk_s": 61}
    if kind == "recording":
        body["recording_url"] = f"https://pbx.example.test/rec/{call_id}.mp3"
    return body


def _sender(url: str, worker: int, calls: int) -> list[tuple[float, int]]:
    from shared.providers.generic import sign
    from tests.conftest import Client

    client = Client(url, origin=None, ip=f"10.8.{worker}.1")
    samples = []
    for n in range(calls):
        call_id = f"bench-{worker}-{n}-{uuid.uuid4().hex[:8]}"
        for kind in KINDS:
            body = json.dumps(_event(call_id, kind, worker * 1000 + n)).encode()
            stamp = str(int(time.time()))
            headers = {"X-Calltrack-Timestamp": stamp,
                       "X-Calltrack-Signature": sign(SECRET, stamp, body)}
            t0 = time.perf_counter()
            resp = client.call("POST", f"/generic/{SITE}", raw=body,
                               content_type="application/json", headers=headers)
            samples.append((time.perf_counter() - t0, resp.status))
    return samples


def _completed_published(stack: Stack) -> int:
    from google.cloud.firestore_v1.base_query import FieldFilter

    query = (stack.firestore().collection("calls")
             .where(filter=FieldFilter("site_id", "==", SITE))
             .where(filter=FieldFilter("completed_published", "==", True)))
    return sum(1 for _ in query.stream())


@bench("webhook")
def webhook_bench() -> None:
    from shared import pool_admin

    secrets = {SITE: {"generic_secret": SECRET}}
    stack = Stack(functions=("call_webhook",), quiet=True, env_overrides={
        "CALLTRACK_PROVIDER_SECRETS": json.dumps(secrets),
        "CALLTRACK_LOG_LEVEL": "WARNING",
    }).start()
    try:
        pool_admin.put_site(stack.firestore(), {
            "site_id": SITE, "default_number": "+74951230000",
            "allowed_origins": ["https://shop.example.test"],
        })
        url = stack.urls["call_webhook"]
        _sender(url, 99, 2)  # warm-up: imports, clients, connections

        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(SENDERS) as pool:
            runs = pool.map(lambda w: _sender(url, w, CALLS_PER_SENDER), range(SENDERS))
            samples = sum(runs, [])
        wall = time.perf_counter() - started

        latencies = [elapsed * 1000 for elapsed, _ in samples]
        emit({
            "bench": "webhook", "senders": SENDERS, "events": len(samples),
            "per_s": round(len(samples) / wall, 1),
            "ack_p50_ms": round(percentile(latencies, 0.5), 1),
            "ack_p99_ms": round(percentile(latencies, 0.99), 1),
            "errors": sum(1 for _, status in samples if status != 200),
            "calls": SENDERS * CALLS_PER_SENDER,
            # Warm-up calls are left out: they are not part of the run.
            "completed_published": _completed_published(stack) - 2,
        })
    finally:
        stack.stop()
