"""Chaos: faults in the middle of a stream of provider webhooks.

Each test streams signed calls (start + end) from a few provider threads into
``call_webhook`` while one fault happens: the Pub/Sub or Firestore emulator
stops answering and comes back, a function process is killed mid-request and
restarted, the BigQuery emulator is killed and restarted. A provider that gets
no 200 (a 503, a 500, a dropped connection or a timeout) retries, as real
providers do. Afterwards every call must have exactly one row in BigQuery
``calls`` and nothing may wait in ``call-events-dead-letter``; the figure
(calls sent, provider retries, rows written, duplicates, dead letters) is
printed per fault.

Pub/Sub and Firestore are frozen (SIGSTOP, then SIGCONT) rather than killed:
their emulators keep everything in memory, so a killed one forgets messages
and documents that the real, durable services keep; a frozen one is the
outage the product must survive (every call to it hangs, then succeeds).
Function processes and the BigQuery emulator (whose data directory persists)
are really killed with SIGKILL and started again on the same port.

The stack here is this module's own, with only ``call_webhook`` and
``stitch``; the module runs in about a minute and a half.
"""

from __future__ import annotations

import concurrent.futures
import io
import datetime as dt
import json
import os
import threading
import time
import urllib.error
import urllib.request

import pytest

from devstack.stack import Stack
from ops import replay
from shared import clients, pool_admin, settings
from shared.providers.generic import sign
from tests import figures

SITE = "chaos"
SECRET = "chaos-generic-secret-7d1e"
SENDERS = 4
CALLS = 18  # per fault
# A provider gives up on an answer after this long and retries the request.
PROVIDER_TIMEOUT_S = 5.0
PROVIDER_DEADLINE_S = 90.0


@pytest.fixture(scope="module")
def chaos():
    saved = dict(os.environ)
    pull_timeout = replay.PULL_TIMEOUT_S
    stack = Stack(
        functions=("call_webhook", "stitch"),
        quiet=True,
        env_overrides={
            "CALLTRACK_PROVIDER_SECRETS": json.dumps(
                {SITE: {"generic_secret": SECRET}}
            ),
            "CALLTRACK_PUBLISH_TIMEOUT_S": "2",
            "CALLTRACK_RATE_PER_MIN": "6000",
            "CALLTRACK_RATE_BURST": "300",
            "CALLTRACK_LOG_LEVEL": "INFO",
        },
    ).start()
    pool_admin.put_site(
        stack.firestore(),
        {
            "site_id": SITE,
            "default_number": "+74951230000",
            "allowed_origins": ["https://shop.example.test"],
        },
    )
    # An empty dead-letter pull need not wait long here.
    replay.PULL_TIMEOUT_S = 1.0
    try:
        yield stack
    finally:
        stack.stop()
        replay.PULL_TIMEOUT_S = pull_timeout
        # This process's clients pointed at this stack: give them back to the
        # session's stack, if one runs.
        os.environ.clear()
        os.environ.update(saved)
        settings.get.cache_clear()
        for client in (clients.firestore, clients.publisher, clients.bigquery):
            client.cache_clear()


class Provider:
    """A telephony provider: signs each event and retries until it gets a 200."""

    def __init__(self, url: str) -> None:
        self.url = f"{url}/generic/{SITE}"
        self.retries = 0
        self.lock = threading.Lock()

    def post(self, body: dict) -> None:
        raw = json.dumps(body).encode()
        deadline = time.monotonic() + PROVIDER_DEADLINE_S
        while True:
            stamp = str(int(time.time()))
            req = urllib.request.Request(
                self.url,
                data=raw,
                method="POST",
                headers={
                    "Content-Type": "application/json",
                    "X-Calltrack-Timestamp": stamp,
                    "X-Calltrack-Signature": sign(SECRET, stamp, raw),
                },
            )
            try:
                with urllib.request.urlopen(req, timeout=PROVIDER_TIMEOUT_S) as resp:
                    if resp.status == 200:
                        return
            except urllib.error.HTTPError as exc:
                assert exc.code >= 500, f"refused with {exc.code}: {exc.read()!r}"
            except OSError:
                pass  # refused, reset or timed out: the provider tries again
            with self.lock:
                self.retries += 1
            assert time.monotonic() < deadline, "the provider gave up"
            time.sleep(0.5)

    def call(self, call_id: str, n: int) -> None:
        started = dt.datetime.now(dt.UTC)
        common = {
            "call_id": call_id,
            "tracking_number": "+74951230000",
            "caller": f"+7916{n:07d}",
        }
        self.post({**common, "event": "start", "occurred_at": started.isoformat()})
        self.post(
            {
                **common,
                "event": "end",
                "occurred_at": dt.datetime.now(dt.UTC).isoformat(),
                "started_at": started.isoformat(),
                "answered": True,
                "ring_s": 7,
                "talk_s": 33,
                "status": "answered",
            }
        )


def _rows(stack: Stack, prefix: str) -> dict[str, int]:
    found = stack.query(
        "select call_id, count(*) as n from `{dataset}.calls` "
        f"where site_id = '{SITE}' "
        f"and starts_with(call_id, 'generic:{SITE}:{prefix}-') "
        "group by call_id"
    )
    return {row["call_id"]: row["n"] for row in found}


def _latest(stack: Stack, prefix: str) -> int:
    """Calls as the reports count them: one row per call in ``calls_latest``."""
    (row,) = stack.query(
        "select count(*) as n, count(distinct call_id) as calls "
        f"from `{{dataset}}.calls_latest` where site_id = '{SITE}' "
        f"and starts_with(call_id, 'generic:{SITE}:{prefix}-')"
    )
    assert row["n"] == row["calls"], row
    return row["n"]


def _rows_or_empty(stack: Stack, prefix: str) -> dict[str, int]:
    try:
        return _rows(stack, prefix)
    except Exception:  # the BigQuery emulator may still be coming back
        return {}


def _replay_dead_letters() -> int:
    """The operator's recovery: ``python -m ops replay --topic call-events``."""
    replayed, failed = replay.replay("call-events", 1000, out=io.StringIO())
    assert failed == 0
    return replayed


def _settle(stack: Stack, prefix: str, expected: set[str]) -> tuple[dict, int]:
    """Wait for every call's row; replay dead letters now and then meanwhile."""
    deadline = time.monotonic() + 75
    replayed = 0
    while True:
        rows = _rows_or_empty(stack, prefix)
        if set(rows) >= expected or time.monotonic() > deadline:
            break
        replayed += _replay_dead_letters()
        time.sleep(1)
    time.sleep(2)  # room for a late duplicate to land before counting
    return _rows(stack, prefix), replayed + _replay_dead_letters()


def _stream_with_fault(
    stack: Stack, prefix: str, fault, recover, down_s: float
) -> dict:
    """Send CALLS calls: a third before the fault, a third while it strikes,
    and the last third while the part is down, so that some calls always meet
    the fault however fast the machine is; then recover."""
    provider = Provider(stack.urls["call_webhook"])
    call_ids = [f"{prefix}-{n}-{time.time_ns() % 10**9}" for n in range(CALLS)]
    base = hash(prefix) % 10**5 * 10

    def send(index: int) -> None:
        provider.call(call_ids[index], base + index)

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(SENDERS) as pool:
        first = list(pool.map(send, range(CALLS // 3)))
        later = [pool.submit(send, i) for i in range(CALLS // 3, 2 * CALLS // 3)]
        time.sleep(0.1)  # the stream is flowing when the fault strikes
        fault()
        later += [pool.submit(send, i) for i in range(2 * CALLS // 3, CALLS)]
        time.sleep(down_s)
        recover()
        for future in later:
            future.result()
    assert len(first) == CALLS // 3

    expected = {f"generic:{SITE}:{c}" for c in call_ids}
    rows, replayed = _settle(stack, prefix, expected)
    figure = {
        "fault": prefix,
        "calls_sent": CALLS,
        "provider_retries": provider.retries,
        "rows_written": sum(rows.values()),
        "calls_with_rows": len(rows),
        "duplicates": sum(n - 1 for n in rows.values() if n > 1),
        "calls_in_reports": _latest(stack, prefix),
        "dead_letters_replayed": replayed,
        "seconds": round(time.monotonic() - started, 1),
    }
    figures.report(figure)
    return figure


def _exactly_once(
    figure: dict, dead_letters_allowed: bool = False, raw_duplicates: bool = False
) -> None:
    assert figure["calls_with_rows"] == figure["calls_sent"], figure
    assert figure["calls_in_reports"] == figure["calls_sent"], figure
    if not raw_duplicates:
        assert figure["rows_written"] == figure["calls_sent"], figure
    if not dead_letters_allowed:
        assert figure["dead_letters_replayed"] == 0, figure


def test_pubsub_outage_mid_stream_loses_and_duplicates_no_call(chaos):
    figure = _stream_with_fault(
        chaos,
        "pubsub",
        lambda: chaos.pause("pubsub"),
        lambda: chaos.resume("pubsub"),
        down_s=6,
    )

    _exactly_once(figure)
    # Publishing timed out while Pub/Sub was down, so providers had to retry.
    assert figure["provider_retries"] > 0


def test_firestore_outage_mid_stream_loses_and_duplicates_no_call(chaos):
    figure = _stream_with_fault(
        chaos,
        "firestore",
        lambda: chaos.pause("firestore"),
        lambda: chaos.resume("firestore"),
        down_s=6,
    )

    _exactly_once(figure)
    assert figure["provider_retries"] > 0


def test_webhook_process_killed_mid_request_and_restarted(chaos):
    figure = _stream_with_fault(
        chaos,
        "webhook-kill",
        lambda: chaos.kill("call_webhook"),
        lambda: chaos.restart("call_webhook"),
        down_s=1,
    )

    _exactly_once(figure)
    assert figure["provider_retries"] > 0


def test_stitch_process_killed_mid_request_and_restarted(chaos):
    figure = _stream_with_fault(
        chaos,
        "stitch-kill",
        lambda: chaos.kill("stitch"),
        lambda: chaos.restart("stitch"),
        down_s=2,
    )

    # While stitch is down the emulator may spend a message's five attempts in
    # a few seconds (it ignores the retry backoff), and a delivery killed
    # mid-request keeps its claim for 30 s, so a call may be dead-lettered;
    # the operator's replay brings it back, and still each is written once.
    _exactly_once(figure, dead_letters_allowed=True)


def test_a_call_waiting_for_its_push_when_stitch_dies_is_still_stitched(chaos):
    # Stitch frozen: the call's messages are published and wait for a push
    # that hangs. Seconds later the process dies; the restart must make them
    # due again however long before the kill they were published.
    provider = Provider(chaos.urls["call_webhook"])
    call_id = f"held-{time.time_ns() % 10**9}"
    chaos.pause("stitch")
    try:
        provider.call(call_id, 4242)
        time.sleep(3)
    finally:
        chaos.kill("stitch")
    chaos.restart("stitch")

    rows, replayed = _settle(chaos, "held", {f"generic:{SITE}:{call_id}"})

    assert rows == {f"generic:{SITE}:{call_id}": 1}
    assert replayed == 0


def test_bigquery_down_stitching_retries_and_catches_up(chaos):
    figure = _stream_with_fault(
        chaos,
        "bigquery",
        lambda: chaos.kill("bigquery"),
        lambda: chaos.restart("bigquery"),
        down_s=5,
    )

    # An insert cut off by the kill may have landed before its answer was
    # lost; the retry carries the same insert id, but BigQuery drops such
    # repeats only on a best-effort basis (the emulator forgets them when it
    # restarts). So the raw table may hold a second copy of a row version;
    # every view takes one row per call, and that is what reports count.
    _exactly_once(figure, raw_duplicates=True)
    assert figure["duplicates"] <= 2, figure
