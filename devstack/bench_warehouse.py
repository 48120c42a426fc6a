"""Benchmark ``warehouse``: the views, the quality run and the report on the
BigQuery emulator over a week of generated rows.

Loads 3,000 sessions of 1,000 visitors over 7 days and 30 campaigns, 1,000
calls (a fifth unattributed or direct returns), leads, deals and costs, then
times the full ``funnel`` query, ``calls_by_model``, the quality run of the
last day (MERGE + read-back) and the HTML report. Prints one line:

    {"bench": "warehouse", "sessions": 3000, "calls": 1000, "funnel_ms": ...,
     "calls_by_model_ms": ..., "quality_run_ms": ..., "report_ms": ...,
     "funnel_calls_per_model": ...}
"""

from __future__ import annotations

import datetime as dt
import random
import statistics
import tempfile
import time
from pathlib import Path

from devstack.bench import bench, emit
from devstack.stack import Stack

SITE = "bench-wh"
DAYS = 7
VISITORS = 1000
CALLS = 1000
CAMPAIGNS = 30


def _rows(rng: random.Random) -> dict[str, list[dict]]:
    from tests import warehouse_fixtures as wf

    start = dt.date(2026, 11, 1)
    channels = [("google", "cpc"), ("yandex", "cpc"), ("meta", "paid_social")]
    campaigns = [(*channels[i % 3], f"bench_{i:02d}") for i in range(CAMPAIGNS)]
    out = {"sessions": [], "calls": [], "leads": [], "deals": [], "ad_costs": []}
    visits: dict[str, list[tuple]] = {}
    for n in range(VISITORS * 3):
        visitor = f"v{n % VISITORS}"
        day = start + dt.timedelta(days=rng.randrange(DAYS))
        when = wf.at(day.isoformat(), f"{rng.randrange(8, 22):02d}:{n % 60:02d}")
        source, medium, campaign = (
            ("(direct)", "(none)", None)
            if rng.random() < 0.2
            else rng.choice(campaigns)
        )
        sid = f"s{n}"
        out["sessions"].append(
            wf.session(SITE, sid, visitor, when, source, medium, campaign)
        )
        visits.setdefault(visitor, []).append((when, sid, source, medium, campaign))

    for n in range(CALLS):
        visitor = f"v{rng.randrange(VISITORS)}"
        when, sid, source, medium, campaign = max(
            visits.get(visitor) or [(wf.at(start.isoformat()), None, None, None, None)]
        )
        own = None if source is None else wf.touch(source, medium, campaign)
        cid = f"c{n}"
        out["calls"].append(
            wf.call(
                SITE,
                cid,
                when,
                own=own,
                visitor=visitor if own else None,
                session_id=sid if own else None,
                talk_s=rng.randrange(0, 200),
                caller=f"h{rng.randrange(800)}",
                kind="dynamic" if own else "default",
            )
        )
        if rng.random() < 0.9:
            out["leads"].append(wf.lead(SITE, cid, f"L{n}", when=when))
            if rng.random() < 0.3:
                out["deals"].append(
                    wf.deal(
                        SITE,
                        f"D{n}",
                        when,
                        call_id=cid,
                        stage="won",
                        won=True,
                        revenue=float(rng.randrange(1000, 9000)),
                    )
                )
    for i in range(DAYS):
        day = (start + dt.timedelta(days=i)).isoformat()
        for source, medium, campaign in campaigns:
            out["ad_costs"].append(
                wf.cost(
                    SITE,
                    day,
                    "bench",
                    source,
                    medium,
                    campaign,
                    f"{rng.randrange(100, 900)}.00",
                    rng.randrange(20, 200),
                )
            )
    return out


def _ms(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return round(statistics.median(times), 1)


@bench("warehouse")
def warehouse_bench() -> None:
    from ops import report
    from shared import clients, quality

    stack = Stack(
        functions=("quality_report",),
        quiet=True,
        env_overrides={"CALLTRACK_LOG_LEVEL": "WARNING"},
    ).start()
    try:
        client = stack.bigquery()
        dataset = clients.dataset_id()
        rows = _rows(random.Random(11))
        for table, items in rows.items():
            for i in range(0, len(items), 500):
                assert (
                    client.insert_rows_json(f"{dataset}.{table}", items[i : i + 500])
                    == []
                )

        def funnel():
            return stack.query(
                "SELECT model, SUM(calls) AS calls"
                " FROM `{dataset}.funnel` GROUP BY model"
            )

        def by_model():
            return stack.query("SELECT COUNT(*) AS n FROM `{dataset}.calls_by_model`")

        last_day = dt.date(2026, 11, 1) + dt.timedelta(days=DAYS - 1)
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "report.html"
            figures = {
                "funnel_ms": _ms(funnel),
                "calls_by_model_ms": _ms(by_model),
                "quality_run_ms": _ms(lambda: quality.run(last_day), repeat=1),
                "report_ms": _ms(lambda: report.write_report(out), repeat=1),
            }
        per_model = {r["model"]: round(r["calls"], 6) for r in funnel()}
        emit(
            {
                "bench": "warehouse",
                "sessions": len(rows["sessions"]),
                "calls": len(rows["calls"]),
                **figures,
                "funnel_calls_per_model": sorted(set(per_model.values())),
            }
        )
    finally:
        stack.stop()
