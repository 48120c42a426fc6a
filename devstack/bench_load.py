"""Benchmark ``load``: visitors and a PBX at once, driven by locust from outside.

Run it with ``make bench BENCH=load`` (or ``.venv/bin/python -m devstack.bench
load``); it takes under a minute: about 15 s to start the stack and warm up,
30 s of load, then the checks. It starts a stack with only ``assign`` and
``call_webhook`` (``record_sessions`` is left out: the load is on the request
path, and BigQuery inserts would take CPU from it on a small machine), creates
a site with a pool of 200 numbers and a cool-down of 0 (so released numbers
come back at once and a long run measures claiming, not exhaustion), then runs
locust headless as a separate process for 30 s with the users of
``devstack/locustfile.py``, 3 visitors to 1 provider:

- a visitor posts a new paid visit, renews it 3 times 0.1-0.3 s apart and
  releases it, then starts the next visit 0.1-0.4 s later;
- a provider posts a signed generic-hook start and, 0.1-0.3 s later, the end
  of a new call, then the next call 0.1-0.4 s later.

That is a closed loop: ``per_s`` is what ``users`` users with those pauses
achieve, and latency includes queueing in the functions (8 threads each, as
functions-framework sizes them on 2 cores). A visit or call in progress when
the time is up is allowed to finish (``--stop-timeout``), so every visit ends
with its release. Latencies come from locust's histogram, which keeps whole
milliseconds below 100 ms and two significant figures above.

Afterwards it checks the pool in Firestore: ``double_holds`` counts holds in
the hold log that began on a number while an earlier hold of it was still
live (must be 0); ``unreleased_holds`` counts holds never released (0 when
every visit ended); ``calls_recorded`` counts, of the ``calls_acked`` calls
whose start and end were both answered 200, those whose merged call record is
complete (must be equal). Prints one line (``endpoints`` has ``n``, ``p50_ms``
and ``p99_ms`` for assign, renew, release, webhook start and webhook end):

    {"bench": "load", "users": 32, "seconds": ..., "requests": ...,
     "per_s": ..., "p50_ms": ..., "p99_ms": ..., "errors": 0,
     "assign_per_s": ..., "webhook_per_s": ..., "double_holds": 0,
     "unreleased_holds": 0, "calls_recorded": ..., "calls_acked": ...,
     "endpoints": {...}}

``assign_per_s`` counts every request to the assign function (new visits,
renews and releases); ``webhook_per_s`` every call event. A run on the
2-core development machine, beside other work (load average 1.4 before it),
in 47 s from start to stop:

    {"bench": "load", "users": 32, "seconds": 30.9, "requests": 2412,
     "per_s": 78.1, "p50_ms": 140.0, "p99_ms": 760.0, "errors": 0,
     "assign_per_s": 57.0, "webhook_per_s": 21.1, "double_holds": 0,
     "unreleased_holds": 0, "calls_recorded": 326, "calls_acked": 326,
     "endpoints": {"assign": {"n": 352, "p50_ms": 200.0, "p99_ms": 890.0},
                   "renew": {"n": 1056, "p50_ms": 150.0, "p99_ms": 750.0},
                   "release": {"n": 352, "p50_ms": 180.0, "p99_ms": 760.0},
                   "webhook start": {"n": 326, "p50_ms": 77.0, "p99_ms": 330.0},
                   "webhook end": {"n": 326, "p50_ms": 130.0, "p99_ms": 790.0}}}

The functions, the Firestore emulator and locust share the two cores, so
the latencies include waiting for a core and vary from run to run; the
figures that must not move are the zeros and ``calls_recorded ==
calls_acked``.

``tests/test_load_smoke.py`` runs the same locustfile for a few seconds
against the test stack, so this bench cannot rot unseen.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

from devstack.bench import bench, emit
from devstack.stack import ROOT, Stack

LOCUSTFILE = ROOT / "devstack" / "locustfile.py"
SITE = "bench-load"
SECRET = "bench-load-generic-secret"
ORIGIN = "https://shop.example.test"
POOL = 200
USERS = 32
SPAWN_RATE = 16
RUN_TIME_S = 30
STOP_TIMEOUT_S = 10
ASSIGN_NAMES = ("assign", "renew", "release")
WEBHOOK_NAMES = ("webhook start", "webhook end")


def run_locust(assign_url: str, webhook_url: str, *, site: str, secret: str,
               users: int, spawn_rate: float, run_time_s: int, workdir: Path,
               stop_timeout_s: int = STOP_TIMEOUT_S) -> dict:
    """Run the locustfile headless in its own process; its stats, by name.

    Returns {"entries": [locust stats entries], "calls_file": path, "log":
    path}. Locust exits 1 when any request failed; that is read from the
    stats, not from the exit code, so a failing run still reports.
    """
    calls_file = workdir / "calls.txt"
    calls_file.touch()
    log = workdir / "locust.log"
    argv = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
        "--users", str(users), "--spawn-rate", str(spawn_rate),
        "--run-time", f"{run_time_s}s", "--stop-timeout", str(stop_timeout_s),
        "--host", assign_url, "--webhook-host", webhook_url, "--site", site,
        "--calls-file", str(calls_file), "--json-file", str(workdir / "stats"),
        "--only-summary", "--loglevel", "WARNING",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LOCUST_GENERIC_SECRET": secret}
    # Bounded: the run, the graceful stop, and a minute for start-up and exit.
    limit = run_time_s + stop_timeout_s + 60
    with open(log, "wb") as out:
        subprocess.run(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                       stdin=subprocess.DEVNULL, timeout=limit, check=False)
    stats = workdir / "stats.json"
    if not stats.exists():
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"locust wrote no stats; its log ends:\n{tail}")
    return {"entries": json.loads(stats.read_text()), "calls_file": calls_file,
            "log": log}


def _hist_percentile(hist: collections.Counter, q: float) -> float:
    """``bench.percentile`` over a histogram of {milliseconds: count}."""
    total = sum(hist.values())
    if not total:
        return 0.0
    index = min(total - 1, max(0, round(q * (total - 1))))
    seen = 0
    for ms in sorted(hist):
        seen += hist[ms]
        if seen > index:
            return float(ms)
    return float(max(hist))


def _histogram(entries: list[dict]) -> collections.Counter:
    hist = collections.Counter()
    for entry in entries:
        # JSON turned locust's integer keys into text.
        hist.update({int(ms): n for ms, n in entry["response_times"].items()})
    return hist


def summarise(entries: list[dict]) -> dict:
    """Totals, rates and latency figures of a run, overall and per name."""
    if not entries:
        return {"seconds": 0.0, "requests": 0, "errors": 0, "p50_ms": 0.0,
                "p99_ms": 0.0, "by_name": {}}
    # From the first request to the last: the spawn ramp is in the run, the
    # process's start-up is not.
    seconds = (max(e["last_request_timestamp"] or 0 for e in entries)
               - min(e["start_time"] for e in entries))
    seconds = max(seconds, 1e-3)
    by_name = {}
    for entry in entries:
        hist = _histogram([entry])
        by_name[entry["name"]] = {
            "n": entry["num_requests"], "errors": entry["num_failures"],
            "p50_ms": _hist_percentile(hist, 0.5),
            "p99_ms": _hist_percentile(hist, 0.99),
        }
    hist = _histogram(entries)
    return {
        "seconds": round(seconds, 1),
        "requests": sum(e["num_requests"] for e in entries),
        "errors": sum(e["num_failures"] for e in entries),
        "p50_ms": _hist_percentile(hist, 0.5),
        "p99_ms": _hist_percentile(hist, 0.99),
        "by_name": by_name,
    }


def double_holds(holds: list[dict]) -> int:
    """Holds that began on a number while an earlier hold of it was live.

    Sorted by start, a hold overlaps an earlier one exactly when it starts
    before the latest end so far; comparing neighbours only would miss a
    short hold nested in a long one. Shared overflow holds are not exclusive,
    so they are left out.
    """
    spans = collections.defaultdict(list)
    for hold in holds:
        if not hold.get("shared"):
            spans[hold["number"]].append((hold["from"], hold["until"]))
    overlaps = 0
    for number_spans in spans.values():
        number_spans.sort()
        live_until = None
        for start, until in number_spans:
            if live_until is not None and start < live_until:
                overlaps += 1
            live_until = until if live_until is None else max(live_until, until)
    return overlaps


def _merged(doc: dict | None) -> bool:
    # Start and end both folded in: two event keys, and the end completed it.
    return bool(doc) and doc.get("completed") is True and len(doc.get("seen", [])) >= 2


def pool_check(fs, site: str, calls_file: Path) -> dict:
    """The invariants after a run, read back from Firestore."""
    from google.cloud.firestore_v1.base_query import FieldFilter

    from shared.webhook_store import CALLS, call_doc_id

    holds = [d.to_dict() for d in fs.collection("holds")
             .where(filter=FieldFilter("site_id", "==", site)).stream()]
    acked = calls_file.read_text().split()
    refs = [fs.collection(CALLS).document(call_doc_id("generic", site, call_id))
            for call_id in acked]
    recorded = 0
    for start in range(0, len(refs), 300):
        recorded += sum(1 for snap in fs.get_all(refs[start:start + 300])
                        if snap.exists and _merged(snap.to_dict()))
    return {
        "holds": len(holds),
        "double_holds": double_holds(holds),
        "unreleased_holds": sum(1 for h in holds if not h.get("released")),
        "calls_acked": len(acked),
        "calls_recorded": recorded,
    }


def _post(url: str, body: bytes, headers: dict) -> int:
    req = urllib.request.Request(url, data=body, method="POST", headers=headers)
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.status


def _warm_up(stack: Stack) -> None:
    """One visit and one call event, so imports and clients are not measured."""
    from shared.providers.generic import sign

    n = uuid.uuid4().hex
    headers = {"Origin": ORIGIN, "Content-Type": "text/plain;charset=UTF-8",
               "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0",
               "X-Forwarded-For": "10.76.0.1"}
    paid = {"utm_source": "google", "utm_medium": "cpc", "utm_campaign": "warm"}
    visit = {"visitor_id": f"wv-{n}", "session_id": f"ws-{n}", "last_touch": paid}
    base = f"{stack.urls['assign']}/%s?site={SITE}"
    _post(base % "", json.dumps(visit).encode(), headers)
    _post(base % "release", json.dumps({"session_id": f"ws-{n}"}).encode(), headers)
    body = json.dumps({"call_id": f"warm-{n}", "event": "start",
                       "tracking_number": "+74951234567"}).encode()
    stamp = str(int(time.time()))
    _post(f"{stack.urls['call_webhook']}/generic/{SITE}", body, {
        "Content-Type": "application/json", "X-Calltrack-Timestamp": stamp,
        "X-Calltrack-Signature": sign(SECRET, stamp, body)})


def _rate(summary: dict, names: tuple[str, ...]) -> float:
    n = sum(summary["by_name"].get(name, {}).get("n", 0) for name in names)
    return round(n / summary["seconds"], 1) if summary["seconds"] else 0.0


@bench("load")
def load_bench() -> None:
    from shared import pool_admin

    stack = Stack(functions=("assign", "call_webhook"), quiet=True, env_overrides={
        "CALLTRACK_PROVIDER_SECRETS": json.dumps({SITE: {"generic_secret": SECRET}}),
        # Each locust user has its own address already; the higher limit keeps
        # a user whose visits come faster than a browser's from a 429.
        "CALLTRACK_RATE_PER_MIN": "600", "CALLTRACK_RATE_BURST": "30",
        "CALLTRACK_LOG_LEVEL": "WARNING",
    }).start()
    try:
        fs = stack.firestore()
        pool_admin.put_site(fs, {
            "site_id": SITE, "default_number": "+74951230000",
            "allowed_origins": [ORIGIN], "cooldown_s": 0,
        })
        pool_admin.import_numbers(
            fs, SITE, [{"number": f"+7495777{i:04d}"} for i in range(POOL)])
        _warm_up(stack)
        with tempfile.TemporaryDirectory(prefix="calltrack-load-") as work:
            run = run_locust(stack.urls["assign"], stack.urls["call_webhook"],
                             site=SITE, secret=SECRET, users=USERS,
                             spawn_rate=SPAWN_RATE, run_time_s=RUN_TIME_S,
                             workdir=Path(work))
            summary = summarise(run["entries"])
            check = pool_check(fs, SITE, run["calls_file"])
            if summary["errors"]:
                # The failures' reasons are in locust's error report.
                print(run["log"].read_text(errors="replace")[-3000:],
                      file=sys.stderr)
        emit({
            "bench": "load", "users": USERS, "seconds": summary["seconds"],
            "requests": summary["requests"],
            "per_s": _rate(summary, tuple(summary["by_name"])),
            "p50_ms": summary["p50_ms"], "p99_ms": summary["p99_ms"],
            "errors": summary["errors"],
            "assign_per_s": _rate(summary, ASSIGN_NAMES),
            "webhook_per_s": _rate(summary, WEBHOOK_NAMES),
            "double_holds": check["double_holds"],
            "unreleased_holds": check["unreleased_holds"],
            "calls_recorded": check["calls_recorded"],
            "calls_acked": check["calls_acked"],
            "endpoints": {name: {k: v for k, v in figures.items() if k != "errors"}
                          for name, figures in summary["by_name"].items()},
        })
    finally:
        stack.stop()
