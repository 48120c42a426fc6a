"""Operator command ``quality``: the daily quality checks for one day.

``python -m ops quality --day 2026-12-01`` runs what the ``quality_report``
function runs on its tick (``shared.quality.run``): it merges the day's checks
into ``quality_daily``, logs a ``quality_breach`` event per missed target and
prints the rows. ``--dry-run`` computes and prints without writing. Exit code
1 when a target was missed.
"""

from __future__ import annotations

import datetime as dt

from shared import quality


def _run(args) -> int:
    day = (
        dt.date.fromisoformat(args.day)
        if args.day
        else dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    )
    rows = quality.evaluate(day) if args.dry_run else quality.run(day)
    if args.site:
        rows = [r for r in rows if r["site_id"] == args.site]

    for r in sorted(
        rows, key=lambda r: (not r["breached"], r["site_id"], r["check_name"])
    ):
        scope = (
            f"{r['source']}/{r['medium']}/{r['campaign']}"
            if r.get("campaign")
            else "site"
        )
        value = "-" if r["value"] is None else f"{r['value']:.3f}"
        base = "" if r.get("baseline") is None else f" (baseline {r['baseline']:.3f})"
        flag = "BREACH" if r["breached"] else "ok"
        print(
            f"{flag:6} {r['site_id']} {r['check_name']} {scope}: {value}{base}"
            f" {r['comparison']} {r['target'] if r['target'] is not None else ''}"
        )
    breached = sum(1 for r in rows if r["breached"])
    print(f"{day}: {len(rows)} checks, {breached} breached")
    return 1 if breached else 0


def register(sub) -> None:
    cmd = sub.add_parser("quality", help="run the daily quality checks for a day")
    cmd.add_argument("--day", help="YYYY-MM-DD (default: yesterday, UTC)")
    cmd.add_argument("--site", help="print only this site's checks")
    cmd.add_argument(
        "--dry-run",
        action="store_true",
        help="compute and print; write and log nothing",
    )
    cmd.set_defaults(func=_run)
