"""Operator command ``costs-load``: ad spend from a CSV into ``ad_costs``.

``python -m ops costs-load --site demo costs.csv`` checks the whole file (format
in ``shared.costs`` and docs/warehouse.md) and loads it in one load job. Safe
to repeat: the latest load of a (site, platform, date) is the one the views use.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

from shared import costs


def _load(args) -> int:
    text = Path(args.csv).read_text() if args.csv != "-" else sys.stdin.read()
    rows = costs.parse(text, args.site, dt.datetime.now(dt.UTC))
    count = costs.load(rows)

    days = sorted({r["date"] for r in rows})
    platforms = sorted({r["platform"] for r in rows})
    total = sum(float(r["cost"]) for r in rows)
    print(
        f"loaded {count} cost rows for {args.site}: {days[0]}..{days[-1]}, "
        f"{', '.join(platforms)}, total {total:.2f} (load {rows[0]['load_id']})"
    )
    return 0


def register(sub) -> None:
    cmd = sub.add_parser(
        "costs-load",
        help="load ad spend from a CSV into BigQuery ad_costs",
        description="Load ad spend (date, platform, campaign, UTM triple, "
        "impressions, clicks, cost, currency) from a CSV; see docs/warehouse.md.",
    )
    cmd.add_argument("--site", required=True, help="site id the spend is for")
    cmd.add_argument("csv", help="the CSV file, or - for stdin")
    cmd.set_defaults(func=_load)
