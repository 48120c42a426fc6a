"""``make demo``: a simulated stream of visits through the real functions.

Brings the local stack up, configures a demo site with a pool, sends visits
through the real ``assign`` function (paid, organic, direct, returning
visitors, page views, heartbeats and releases), then prints the pool status
and what reached BigQuery, writes a report under ``out/`` and stops
everything. ``--serve`` keeps the stack and the demo landing page up for a
browser until Ctrl-C.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import random
import sys
import time

from devstack.stack import ROOT, Stack

SITE = "demo"
ORIGIN = "http://shop.example.test"
DEFAULT_NUMBER = "+74951230000"
POOL = [f"+7495555{1000 + i:04d}" for i in range(40)]
OUT = ROOT / "out"

# Channel mix of the simulated visits: (weight, touch).
CHANNELS = [
    (
        30,
        {
            "utm_source": "google",
            "utm_medium": "cpc",
            "utm_campaign": "kitchen_msk_leads_202612",
            "gclid": "gclid",
        },
    ),
    (
        25,
        {
            "utm_source": "yandex",
            "utm_medium": "cpc",
            "utm_campaign": "kitchen_msk_leads_202612",
            "yclid": "yclid",
        },
    ),
    (10, {"utm_source": "meta", "utm_medium": "paid_social", "fbclid": "fbclid"}),
    (15, {"referrer": "https://www.google.com/", "landing_page": ORIGIN + "/"}),
    (10, {}),
    (5, {"utm_source": "newsletter", "utm_medium": "email"}),
    (5, {"referrer": "https://blog.partner.test/post", "landing_page": ORIGIN + "/"}),
]


def say(text: str) -> None:
    print(text, flush=True)


def _touch(rng: random.Random) -> dict:
    weights = [w for w, _ in CHANNELS]
    touch = dict(rng.choices([t for _, t in CHANNELS], weights)[0])
    for key in ("gclid", "yclid", "fbclid"):
        if key in touch:
            touch[key] = f"{key}-{rng.randrange(10**9)}"
    return touch


def run_visits(stack: Stack, count: int, seed: int = 7) -> dict:
    from tests.conftest import Client

    rng = random.Random(seed)
    plans = []
    returning = []
    for n in range(count):
        if returning and rng.random() < 0.15:
            visitor = rng.choice(returning)
            touch = {}  # a direct return
        else:
            visitor = f"demo-visitor-{n:05d}"
            touch = _touch(rng)
            returning.append(visitor)
        plans.append((n, visitor, touch, rng.randint(1, 4), rng.random() < 0.7))

    kinds: dict[str, int] = {}

    def one(plan):
        n, visitor, touch, pages, releases = plan
        client = Client(stack.urls["assign"], origin=ORIGIN, ip=f"10.20.{n % 250}.1")
        body = {
            "visitor_id": visitor,
            "session_id": f"demo-session-{n:05d}",
            "page_url": ORIGIN + "/",
            "first_touch": touch,
            "last_touch": touch,
            "consent": {"analytics": True, "ads": n % 10 != 0},
        }
        answer = client.call("POST", f"/?site={SITE}", body).json()
        for _ in range(pages - 1):
            client.call(
                "POST",
                f"/renew?site={SITE}",
                {"session_id": answer["session_id"], "visitor_id": visitor},
            )
        if releases:
            client.call(
                "POST", f"/release?site={SITE}", {"session_id": answer["session_id"]}
            )
        return answer["kind"]

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        for i, kind in enumerate(pool.map(one, plans), start=1):
            kinds[kind] = kinds.get(kind, 0) + 1
            if i % 100 == 0:
                say(f"  {i}/{count} visits ({time.monotonic() - started:.1f} s)")
    return kinds


def configure(stack: Stack) -> None:
    from shared import pool_admin

    client = stack.firestore()
    pool_admin.put_site(
        client,
        {
            "site_id": SITE,
            "default_number": DEFAULT_NUMBER,
            "allowed_origins": [ORIGIN, "http://127.0.0.1"],
            "display_format": "+7 (###) ###-##-##",
            "cooldown_s": 600,
            "overflow_policy": "share",
        },
    )
    rows = [{"number": n} for n in POOL]
    rows += [{"number": "+74955550801", "overflow": True}]
    rows += [
        {
            "number": "+74955550900",
            "kind": "static",
            "channel": {"utm_source": "billboard", "utm_medium": "offline"},
        }
    ]
    pool_admin.import_numbers(client, SITE, rows)


def warehouse_summary(stack: Stack, expected_sessions: int) -> dict:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        count = stack.query("select count(*) as n from `{dataset}.sessions`")[0]["n"]
        if count >= expected_sessions:
            break
        time.sleep(1)
    by_channel = stack.query(
        "select source, medium, number_kind, count(*) as sessions "
        "from `{dataset}.sessions` group by 1, 2, 3 order by sessions desc"
    )
    holds = stack.query(
        "select event, count(*) as n from `{dataset}.number_holds` "
        "group by 1 order by 1"
    )
    return {"sessions_by_channel": by_channel, "hold_events": holds}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--visits", type=int, default=300)
    parser.add_argument(
        "--serve",
        action="store_true",
        help="keep the stack and the demo page up until Ctrl-C",
    )
    args = parser.parse_args(argv)

    say("Starting the local stack (emulators + functions)...")
    stack = Stack(env_overrides={"CALLTRACK_RATE_PER_MIN": "0"}).start()
    try:
        configure(stack)
        say(f"Sending {args.visits} simulated visits through assign...")
        kinds = run_visits(stack, args.visits)
        say(f"Numbers shown: {json.dumps(kinds)}")

        from shared import pool_admin

        status = pool_admin.pool_status(stack.firestore(), SITE)
        say(f"Pool status: {json.dumps(status.to_dict())}")
        summary = warehouse_summary(stack, args.visits)
        say("Sessions in BigQuery by channel:")
        for row in summary["sessions_by_channel"]:
            say(
                f"  {row['source']:>18} / {row['medium']:<12} {row['number_kind']:<8}"
                f" {row['sessions']:5d}"
            )
        say(f"Hold events in BigQuery: {json.dumps(summary['hold_events'])}")

        OUT.mkdir(exist_ok=True)
        report = OUT / "demo-report.json"
        report.write_text(
            json.dumps(
                {"numbers_shown": kinds, "pool": status.to_dict(), **summary},
                indent=2,
                default=str,
            )
        )
        say(f"Report written to {report}")
        if args.serve:
            serve(stack)
    finally:
        stack.stop()
        say("Stack stopped.")
    return 0


def serve(stack: Stack) -> None:
    """Serve the demo landing page (if the snippet is built) until Ctrl-C."""
    import functools
    import http.server
    import threading

    page_dir = ROOT / "snippet"
    handler = functools.partial(
        http.server.SimpleHTTPRequestHandler, directory=str(page_dir)
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 8099), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    say(
        f"Demo page: http://127.0.0.1:8099/demo/?endpoint={stack.urls['assign']}"
        f"&site={SITE}  (Ctrl-C stops)"
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.shutdown()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
