"""``make demo``: a simulated day of a call-tracking site through the product.

1. Generates one seeded day of traffic (``simulator.traffic``, seed 1, the
   day the accuracy report and the benchmark use) with the truth about every
   call, and scores it in memory (``simulator.run.run_product``) with a pool
   of the day's peak of concurrent paid visits.
2. Brings the local stack up and replays the busiest stretch of that day
   through the real functions (``simulator.live.run_live``): page starts,
   heartbeats and goodbyes to ``assign``, calls as signed webhooks to
   ``call_webhook``, stitched by ``stitch`` into BigQuery and sent by
   ``ga4_send`` to the GA4 fake. Time is compressed 20x (the site's timers
   too). A whole day would take 72 minutes at that pace, and the site's
   timers are whole seconds (renew 40 s / 20 = 2 s), so the live part is the
   peak stretch; the same visits also run in memory, to show both agree.
3. Plays the people around the product (``devstack.demo_downstream``): the
   stitched calls become leads in the CRM fake, sales wins every other one
   (``crm_webhook``), the day's ad spend is loaded, the quality checks run,
   and an export dry run prints what would go to the ad platforms.
4. Prints the funnel (visits, paid, calls, stitched correct / wrong /
   unattributed), the pool status and the BigQuery rows per table, writes
   ``out/report.html`` (``ops.report``) and ``out/accuracy.html``
   (``simulator.report``), and stops everything.

``--serve`` then keeps the stack and the demo landing page up for a browser
until Ctrl-C, with the demo site's real (uncompressed) timers.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import sys
import time

from devstack import demo_downstream
from devstack.stack import ROOT, Stack

SITE = "demo"
ORIGIN = "http://shop.example.test"
DEFAULT_NUMBER = "+74951230000"
POOL = [f"+7495555{1000 + i:04d}" for i in range(40)]
OUT = ROOT / "out"
SEED = 1
SCALE = 20
# The busiest stretch replayed live: 40 simulated minutes of visit starts, 2
# wall minutes at SCALE; visits still open TAIL after it are left to memory.
WINDOW = dt.timedelta(minutes=40)
TAIL = dt.timedelta(minutes=10)


def say(text: str) -> None:
    print(text, flush=True)


def stack_env() -> dict:
    """The test stack's environment (provider secrets of site ``demo``, the GA4,
    CRM and ad-platform fakes), without the per-IP limit: every simulated
    visitor comes from the demo's own machine."""
    from tests.conftest import STACK_ENV

    return {
        **STACK_ENV,
        "CALLTRACK_RATE_PER_MIN": "0",
        "CALLTRACK_LOG_LEVEL": "INFO",
        "CALLTRACK_SITE_CACHE_S": "5",
    }


def busiest_stretch(visits, window=WINDOW, tail=TAIL):
    """The visits that start in the ``window`` with most paid starts and end
    within ``tail`` after it, without calls placed hours later (scored apart
    anyway); returns (visits, window start, dropped visits, dropped calls)."""
    from simulator.run import REACH_S

    paid = [v.start for v in visits if v.paid]
    best = max(paid, key=lambda at: sum(1 for s in paid if at <= s < at + window))
    end = best + window
    cut = end + tail
    chosen, dropped_visits, dropped_calls = [], 0, 0
    for visit in visits:
        if not best <= visit.start < end:
            continue
        if visit.end > cut:
            dropped_visits += 1
            continue
        reach = visit.end + dt.timedelta(seconds=REACH_S)
        calls = [c for c in visit.calls if c.at <= reach]
        dropped_calls += len(visit.calls) - len(calls)
        chosen.append(dataclasses.replace(visit, calls=calls))
    return chosen, best, dropped_visits, dropped_calls


def site_extra() -> dict:
    """The demo site's ``extra``: the GA4 fake's stream, its CRM and exports."""
    from tests.fakes import ga4 as fake_ga4

    return {
        "ga4_measurement_id": fake_ga4.MEASUREMENT_ID,
        **demo_downstream.site_extra(),
    }


def configure(stack: Stack) -> None:
    """The demo site with real timers and a 40-number pool (for ``--serve``)."""
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
            "extra": site_extra(),
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


def table_counts(stack: Stack) -> dict[str, int]:
    """Rows in every table of the warehouse (schema files name the tables)."""
    from shared.warehouse import table_names

    counts = {}
    for name in table_names():
        rows = stack.query(f"select count(*) as n from `{{dataset}}.{name}`")
        counts[name] = rows[0]["n"]
    return counts


def _figures(score) -> str:
    return (
        f"{score.calls} calls: {score.correct} correct, {score.wrong} wrong, "
        f"{score.unattributed} unattributed ({score.share('correct'):.1%} correct);"
        f" {score.exhausted} exhaustions"
    )


def simulate_day():
    from simulator.run import run_product
    from simulator.traffic import Params, generate, peak_concurrent

    params = Params(seed=SEED, days=1)
    day = generate(params)
    peak = peak_concurrent(day)
    paid = [v for v in day if v.paid]
    say(
        f"Simulated day (seed {SEED}): {len(day)} visits, {len(paid)} paid, "
        f"{sum(len(v.calls) for v in day)} calls ({sum(len(v.calls) for v in paid)}"
        f" from paid visits); peak {peak} concurrent paid visits -> pool {peak}"
    )
    started = time.monotonic()
    memory = run_product(day, peak, SEED)
    say(
        f"  whole day in memory ({time.monotonic() - started:.1f} s): "
        f"{_figures(memory)}; {sum(memory.late.values())} calls placed hours "
        "later, scored apart"
    )
    return day, peak, memory


def replay_live(stack: Stack, day, pool: int) -> dict:
    from simulator.live import run_live
    from simulator.run import run_product, session_id
    from tests.fakes import ga4 as fake_ga4

    visits, start, dropped_visits, dropped_calls = busiest_stretch(day)
    calls = sum(len(v.calls) for v in visits)
    say(
        f"Busiest {WINDOW.seconds // 60} min of the day from {start:%H:%M} UTC: "
        f"{len(visits)} visits ({sum(v.paid for v in visits)} paid), {calls} calls"
        f" replayed live at {SCALE}x ({dropped_visits} visits open past "
        f"{TAIL.seconds // 60} min after and {dropped_calls} calls hours later "
        "stay in memory)"
    )
    overrides = {"extra": site_extra()}
    started = time.monotonic()
    live = run_live(
        stack, visits, pool, SCALE, overrides, progress=say, paid_calls_only=False
    )
    wall = time.monotonic() - started
    memory = run_product(visits, pool, SEED, overrides)
    truth = {v.visit_id: session_id(v) for v in visits}
    same = sum(
        _verdict(got, truth[key[0]]) == _verdict(live.outcomes.get(key), truth[key[0]])
        for key, got in memory.outcomes.items()
    )
    say(f"  live through the functions ({wall:.0f} s): {_figures(live)}")
    say(f"  same visits in memory:  {_figures(memory)}")
    say(
        f"  verdict agreement {same}/{memory.calls}; "
        f"{live.missing} calls missing in BigQuery; "
        f"events at most {live.late_s:.1f} s behind schedule"
    )
    sent = len(fake_ga4.SERVER.received())
    say(f"  GA4 (fake Measurement Protocol) received {sent} call events")
    return {
        "window_start": start.isoformat(),
        "visits": len(visits),
        "paid_visits": sum(v.paid for v in visits),
        "calls": calls,
        "live": live.to_dict(),
        "memory": memory.to_dict(),
        "agreement": [same, memory.calls],
        "missing": live.missing,
        "ga4_events": sent,
        "wall_s": round(wall, 1),
    }


def _verdict(got, truth: str) -> str:
    if got is None:
        return "unattributed"
    return "correct" if got == truth else "wrong"


def write_reports(day_score, live: dict) -> list:
    from ops.report import write_report
    from simulator.report import write_accuracy_report

    OUT.mkdir(exist_ok=True)
    accuracy_rows = [
        {"run": "whole day, in memory", **day_score.to_dict()},
        {"run": "busiest stretch, in memory", **live["memory"]},
        {"run": "busiest stretch, live functions", **live["live"]},
    ]
    report = write_report(OUT / "report.html", SITE, accuracy_rows)
    say("Accuracy report (both pool policies, in memory; takes a minute)...")
    accuracy = write_accuracy_report(OUT, seed=SEED, days=1, progress=say)
    return [report, accuracy]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--serve",
        action="store_true",
        help="keep the stack and the demo page up until Ctrl-C",
    )
    args = parser.parse_args(argv)
    started = time.monotonic()

    day, peak, day_score = simulate_day()
    say("Starting the local stack (emulators + functions)...")
    stack = Stack(env_overrides=stack_env()).start()
    try:
        live = replay_live(stack, day, peak)
        OUT.mkdir(exist_ok=True)
        money = demo_downstream.run(stack, live["calls"], OUT, say)

        from shared import pool_admin

        status = pool_admin.pool_status(stack.firestore(), SITE)
        say(f"Pool status: {json.dumps(status.to_dict())}")
        summary = warehouse_summary(stack, live["visits"])
        say("Sessions in BigQuery by channel:")
        for row in summary["sessions_by_channel"]:
            say(
                f"  {row['source'] or '(none)':>18} / {row['medium'] or '(none)':<12}"
                f" {row['number_kind']:<8} {row['sessions']:5d}"
            )
        say(f"Hold events in BigQuery: {json.dumps(summary['hold_events'])}")
        counts = table_counts(stack)
        say(
            "BigQuery rows per table: "
            + ", ".join(f"{k} {v}" for k, v in counts.items())
        )

        OUT.mkdir(exist_ok=True)
        summary_path = OUT / "demo-report.json"
        summary_path.write_text(
            json.dumps(
                {
                    "day": day_score.to_dict(),
                    "live": live,
                    "pool": status.to_dict(),
                    "tables": counts,
                    "downstream": money,
                    **summary,
                },
                indent=2,
                default=str,
            )
        )
        paths = write_reports(day_score, live)
        for path in [summary_path, *paths]:
            say(f"Written: {path}")
        say(f"Demo done in {time.monotonic() - started:.0f} s.")
        if args.serve:
            configure(stack)
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
