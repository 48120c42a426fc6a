"""The in-memory simulation and a live run through the functions agree.

A short, busy stretch of a seeded day (the late-morning peak) goes through
``run_product`` (the pool and stitching code on the in-memory store) and
through ``run_live`` (the same visits as HTTP requests to assign and signed
generic webhooks, stitched by the stitch function into the BigQuery
emulator), with a pool smaller than the peak so that numbers are reused.
Every scored call must get the same verdict in both, but for the odd call
that compressed time puts on the edge of a timer.
"""

from __future__ import annotations

import datetime as dt
import random
import time

import pytest

from simulator import traffic
from simulator.live import run_live
from simulator.run import REACH_S, run_product
from simulator.traffic import Params, generate, peak_concurrent

SEED = 11
SCALE = 20  # 10 simulated minutes (+ tails) in about 50 wall seconds
WINDOW = (dt.timedelta(hours=11), dt.timedelta(minutes=10))
CALL_TAIL = dt.timedelta(minutes=3)
# A call-heavy site: three in four paid visits call (8% in the default mix),
# so that the small case still has enough calls to compare.
CALL_SHARE = 0.75


def busy_stretch() -> tuple[list[traffic.Visit], Params]:
    """The visits starting in WINDOW, with calls no later than CALL_TAIL after."""
    params = Params(seed=SEED, visits_per_day=3000, visit_max_s=480)
    start = traffic.START + WINDOW[0]
    end = start + WINDOW[1]
    visits = [v for v in generate(params) if start <= v.start < end]

    rng = random.Random(SEED)
    for n, visit in enumerate(visits):
        if visit.paid and not visit.calls and rng.random() < CALL_SHARE:
            caller = f"+7998{n:07d}"
            visit.calls.append(traffic._call(rng, params, visit, caller))
        # Calls hours later are scored apart and would only stretch the run.
        visit.calls = [c for c in visit.calls if c.at <= end + CALL_TAIL]
    return visits, params


def verdict(outcome: str | None, visit_id: int) -> str:
    if outcome is None:
        return "unattributed"
    return "correct" if outcome == f"sim-session-{visit_id:06d}" else "wrong"


def test_busy_stretch_is_call_heavy_and_under_pressure():
    visits, _ = busy_stretch()
    calls = [c for v in visits if v.paid for c in v.calls]
    peak = peak_concurrent(visits)

    assert 30 <= len(visits) <= 70
    assert len(calls) >= 12
    assert peak >= 4
    assert all(
        c.at <= v.end + dt.timedelta(seconds=REACH_S) for v in visits for c in v.calls
    )


def test_live_run_agrees_with_the_in_memory_run(stack):
    visits, _ = busy_stretch()
    pool = max(2, round(0.9 * peak_concurrent(visits)))

    memory = run_product(visits, pool, seed=SEED)
    started = time.monotonic()
    live = run_live(stack, visits, pool, SCALE, progress=print)
    wall = time.monotonic() - started

    print("in memory:", memory.to_dict())
    print(
        "live:     ",
        live.to_dict(),
        f"missing={live.missing}",
        f"late_s={live.late_s}",
        f"wall_s={wall:.0f}",
    )
    assert live.missing == 0
    assert live.calls == memory.calls >= 12
    # Pressure: the small pool made the product reuse numbers or fall back.
    assert memory.correct < memory.calls or memory.exhausted > 0

    same = 0
    for key, got in memory.outcomes.items():
        assert key in live.outcomes
        visit_id = key[0]
        same += verdict(got, visit_id) == verdict(live.outcomes[key], visit_id)
    agreement = same / memory.calls
    print(f"verdict agreement {same}/{memory.calls} = {agreement:.0%}")
    assert agreement >= 0.9
    assert abs(live.correct - memory.correct) <= 1
    assert abs(live.exhausted - memory.exhausted) <= 2
    assert wall < 120


@pytest.mark.parametrize("scale", [7, 30])
def test_scales_that_would_round_a_timer_are_refused(scale):
    from simulator.live import live_site_doc

    with pytest.raises(ValueError, match="divide by scale"):
        live_site_doc("demo", scale, None)
