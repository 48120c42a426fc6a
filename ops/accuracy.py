"""Operator commands ``accuracy-report`` and ``pool-size``.

``accuracy-report`` runs the traffic simulator through the product's pool and
stitching code and through the naive policy, over pool sizes from 0.6x to 1.6x
the peak of concurrent paid visits, and writes ``accuracy.html`` (table and
chart) and ``accuracy.json``.

``pool-size --site S`` reads the last 30 days of the site's ``sessions`` and
``number_holds`` from BigQuery: its observed peak of concurrent holds (the
``pool_sizing`` view's query), the seed rule (peak x 1.2-1.3), and the
product's recommendation: the smallest pool whose simulated accuracy, on
traffic shaped like the site's (its daily visits, hourly curve and visit
length), reaches the target. The simulated channel mix and calling habits stay
the defaults of ``simulator.traffic.Params``: BigQuery holds no call-timing
truth to fit them to (docs/accuracy.md).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

from shared import queries, warehouse
from shared.errors import NotFound
from simulator import run
from simulator.report import write_accuracy_report
from simulator.traffic import Params, generate, peak_concurrent

DAYS = 30
# Fewer observed sessions than this a day make a traffic shape of noise.
MIN_SESSIONS = 50


def register(subparsers) -> None:
    report = subparsers.add_parser(
        "accuracy-report",
        help="simulate both pool policies and write the accuracy report",
        description=(
            "Simulate seeded traffic through the product's pool and stitching "
            "and through a naive pool; write accuracy.html and accuracy.json."
        ),
    )
    report.add_argument("--out", type=Path, default=Path("out"), help="directory")
    report.add_argument("--seed", type=int, default=1)
    report.add_argument("--days", type=int, default=1)
    report.add_argument("--visits-per-day", type=int, default=3000)
    report.set_defaults(func=_report)

    size = subparsers.add_parser(
        "pool-size",
        help="recommend a site's pool size from its last 30 days",
        description=(
            "Observed peak of concurrent holds, the seed rule (1.2-1.3x) and "
            "the smallest pool whose simulated accuracy on the site's traffic "
            "shape reaches the target."
        ),
    )
    size.add_argument("--site", required=True)
    size.add_argument("--target", type=float, default=0.99)
    size.add_argument("--seed", type=int, default=1)
    size.set_defaults(func=_pool_size)


def _report(args) -> int:
    path = write_accuracy_report(
        args.out,
        seed=args.seed,
        days=args.days,
        visits_per_day=args.visits_per_day,
        progress=lambda line: print(line, file=sys.stderr, flush=True),
    )
    print(path)
    return 0


SHAPE_SQL = f"""
SELECT
  COUNT(*) AS sessions,
  COUNT(DISTINCT DATE(started_at)) AS days,
  EXTRACT(HOUR FROM started_at) AS hour
FROM `{{dataset}}.sessions`
WHERE site_id = @site
  AND started_at >= TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL {DAYS} DAY)
GROUP BY hour
"""

LENGTH_SQL = f"""
SELECT
  TIMESTAMP_DIFF(MAX(held_until), MIN(held_from), SECOND) AS seconds
FROM `{{dataset}}.number_holds`
WHERE site_id = @site
  AND held_from >= TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL {DAYS} DAY)
GROUP BY hold_id
"""


def observed(site_id: str) -> dict:
    """The site's peak, daily visits, hourly curve and median hold length."""
    # The view's own SQL, so this works before (or without) the view deployed.
    sizing = (warehouse.VIEWS_DIR / "pool_sizing.sql").read_text()
    peak = queries.rows(
        f"SELECT * FROM ({sizing}\n) WHERE site_id = @site", site=site_id
    )
    hours = queries.rows(SHAPE_SQL, site=site_id)
    if not peak or not hours:
        msg = f"Expected holds and sessions of site {site_id} in the last {DAYS} days."
        raise NotFound(msg, code="no_traffic")

    hourly = [0.0] * 24
    for row in hours:
        hourly[int(row["hour"])] = float(row["sessions"])
    days = max(int(row["days"]) for row in hours)
    lengths = sorted(
        row["seconds"] for row in queries.rows(LENGTH_SQL, site=site_id)
    )
    return {
        "peak_concurrent": int(peak[0]["peak_concurrent"]),
        "seed_rule": (peak[0]["seed_rule_low"], peak[0]["seed_rule_high"]),
        "sessions_per_day": sum(hourly) / max(1, days),
        "hourly": tuple(hourly),
        "median_hold_s": float(lengths[len(lengths) // 2]) if lengths else 150.0,
    }


def recommend(seen: dict, target: float, seed: int = 1) -> dict:
    """Simulate the site's traffic shape; the pool that reaches ``target``."""
    per_day = max(MIN_SESSIONS, round(seen["sessions_per_day"]))
    params = Params(
        seed=seed,
        days=1,
        visits_per_day=per_day,
        hourly=seen["hourly"] if sum(seen["hourly"]) else Params().hourly,
        visit_median_s=max(10.0, seen["median_hold_s"]),
    )
    visits = generate(params)
    peak = peak_concurrent(visits)
    x = run.pool_needed(visits, peak, "product", target, seed)
    numbers = None if x is None else math.ceil(x * seen["peak_concurrent"])
    return {"pool_x_peak": x, "numbers": numbers, "simulated_peak": peak}


def _pool_size(args) -> int:
    seen = observed(args.site)
    low, high = seen["seed_rule"]
    print(f"site {args.site}, last {DAYS} days")
    print(f"  peak concurrent holds: {seen['peak_concurrent']}")
    print(f"  seed rule (1.2-1.3x peak): {low}-{high} numbers")
    print(
        f"  traffic shape: {seen['sessions_per_day']:.0f} sessions a day, "
        f"median hold {seen['median_hold_s']:.0f} s"
    )

    advice = recommend(seen, args.target, args.seed)
    if advice["numbers"] is None:
        print(
            f"  recommendation: {args.target:.0%} correct is not reached by 4x "
            "peak on this traffic shape; see docs/accuracy.md for what limits it"
        )
        return 1
    print(
        f"  recommendation: {advice['numbers']} numbers "
        f"({advice['pool_x_peak']:.2f}x peak) for {args.target:.0%} correct"
    )
    return 0
