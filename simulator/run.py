"""Replay synthetic traffic through a pool policy and score every call.

``run_product`` drives the product's own ``shared.pool.Assigner`` (the code the
``assign`` function runs) on an in-memory store with a simulated clock, and
attributes each call with ``shared.stitching.stitch`` (the code ``stitch``
runs). ``run_naive`` models the common open-source policy for comparison: a
random free number, released after 5 minutes idle or 15 minutes in all, no
cool-down, no stickiness, and a call credited to whoever holds the number at
that moment.

Scores count the calls of paid visits (the ones a dynamic number exists for)
placed during the visit or within ``REACH_S`` of its end: correct (stitched to
the visit that truly produced it), wrong (stitched to another visit) or
unattributed. Calls placed later, from a number noted down hours or days
before, are counted apart (``late_*``): no session-level policy can reach them
without holding every number for days.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import random
from collections import Counter
from dataclasses import dataclass, field

from shared import phones, pool_admin, stitching
from shared.memstore import MemoryStore
from shared.pool import Assigner, AssignRequest
from shared.sites import site_from_doc
from shared.store import HOLDS, NUMBERS, SESSIONS, VISITORS
from simulator.traffic import Visit

SITE_ID = "sim"
DEFAULT_NUMBER = "+74951230000"
STATIC_NUMBER = "+74951239999"
# The naive policy's timers (rockstat calltracking-service's defaults).
NAIVE_IDLE_S = 300
NAIVE_TOTAL_S = 900
# Calls this long after the visit still count towards accuracy (the product's
# default cool-down).
REACH_S = 900

SITE = {
    "site_id": SITE_ID,
    "default_number": DEFAULT_NUMBER,
    "allowed_origins": [],
    "static_routes": [{"number": STATIC_NUMBER, "medium": "offline"}],
}


@dataclass
class Score:
    policy: str
    pool: int
    calls: int = 0
    correct: int = 0
    wrong: int = 0
    unattributed: int = 0
    exhausted: int = 0
    peak_held: int = 0
    by_window: Counter = field(default_factory=Counter)
    late: Counter = field(default_factory=Counter)
    outcomes: dict = field(default_factory=dict)  # (visit_id, at) -> session or None

    def add(self, call, visit_end, truth_session: str, got: str | None) -> None:
        verdict = (
            "unattributed"
            if got is None
            else ("correct" if got == truth_session else "wrong")
        )
        self.by_window[(call.window, verdict)] += 1
        if (call.at - visit_end).total_seconds() > REACH_S:
            self.late[verdict] += 1
            return
        self.calls += 1
        setattr(self, verdict, getattr(self, verdict) + 1)
        self.outcomes[(call.visit_id, call.at.isoformat())] = got

    def share(self, verdict: str) -> float:
        return getattr(self, verdict) / self.calls if self.calls else 0.0

    def to_dict(self) -> dict:
        return {
            "policy": self.policy,
            "pool": self.pool,
            "calls": self.calls,
            "correct": round(self.share("correct"), 4),
            "wrong": round(self.share("wrong"), 4),
            "unattributed": round(self.share("unattributed"), 4),
            "late_calls": sum(self.late.values()),
            "late_correct": self.late["correct"],
            "exhausted": self.exhausted,
            "utilisation": round(self.peak_held / self.pool, 3) if self.pool else 0,
        }


def session_id(visit: Visit) -> str:
    return f"sim-session-{visit.visit_id:06d}"


def _events(visits: list[Visit], renew_s: int):
    """(time, order, kind, visit, extra) for every page event and call."""
    seq = itertools.count()
    for visit in visits:
        yield visit.start, next(seq), "start", visit, None
        beat = visit.start + dt.timedelta(seconds=renew_s)
        hidden_from = hidden_to = None
        if visit.hidden:
            offset, length = visit.hidden
            hidden_from = visit.start + dt.timedelta(seconds=offset)
            hidden_to = hidden_from + dt.timedelta(seconds=length)
            if hidden_to < visit.end:
                yield hidden_to, next(seq), "beat", visit, None
        while beat < visit.end:
            if not (hidden_from and hidden_from <= beat < hidden_to):
                yield beat, next(seq), "beat", visit, None
            beat += dt.timedelta(seconds=renew_s)
        yield visit.end, next(seq), "leave", visit, None
        for call in visit.calls:
            yield call.at, next(seq), "call", visit, call


def _numbers(count: int) -> list[str]:
    return [f"+7495700{i:04d}" for i in range(count)]


def run_product(
    visits: list[Visit],
    pool_size: int,
    seed: int = 1,
    site_overrides: dict | None = None,
    keep_store: bool = False,
):
    """Score the product's policy; returns the Score (and store if asked)."""
    # Exhaustion is an expected event here, counted in the score, not logged.
    logging.getLogger("shared.pool").setLevel(logging.ERROR)
    store = MemoryStore()
    site = site_from_doc({**SITE, **(site_overrides or {})})
    store.put("sites", SITE_ID, site.to_doc())
    for number in _numbers(pool_size):
        store.put(NUMBERS, number, pool_admin.number_doc(site, number))
    store.put(
        NUMBERS,
        STATIC_NUMBER,
        pool_admin.number_doc(
            site,
            STATIC_NUMBER,
            "static",
            channel={"utm_source": "billboard", "utm_medium": "offline"},
        ),
    )

    clock = [visits[0].start if visits else dt.datetime.now(dt.UTC)]
    assigner = Assigner(store, rng=random.Random(seed), now=lambda: clock[0])
    score = Score("product", pool_size)
    shown: dict[int, str] = {}
    callers: dict[str, dict] = {}
    held = 0

    for at, _, kind, visit, call in sorted(
        _events(visits, site.renew_s), key=lambda e: (e[0], e[1])
    ):
        clock[0] = at
        sid = session_id(visit)
        if kind == "start":
            outcome = assigner.assign(_request(visit))
            shown[visit.visit_id] = outcome.assignment.number
            score.exhausted += int(outcome.exhausted)
        elif kind == "beat":
            outcome = assigner.renew(SITE_ID, sid)
            shown[visit.visit_id] = outcome.assignment.number
            score.exhausted += int(outcome.exhausted)
        elif kind == "leave":
            if visit.releases:
                assigner.release(SITE_ID, sid)
        elif visit.paid:
            got = _stitch_in_memory(store, site, call, shown[visit.visit_id], callers)
            score.add(call, visit.end, sid, got)
        if kind in ("start", "beat"):
            held = _live_leases(store, at) if kind == "start" else held
            score.peak_held = max(score.peak_held, held)

    return (score, store) if keep_store else score


def _live_leases(store: MemoryStore, now: dt.datetime) -> int:
    return sum(
        1
        for doc in store.all(NUMBERS).values()
        if doc.get("lease")
        and doc["lease"]["expires_at"] > now
        and doc["kind"] == "dynamic"
    )


def _request(visit: Visit) -> AssignRequest:
    touch = dict(visit.touch)
    return AssignRequest(
        site_id=SITE_ID,
        visitor_id=visit.visitor,
        session_id=session_id(visit),
        page_url="https://shop.example.test/",
        referrer=touch.get("referrer"),
        first_touch=touch or None,
        last_touch=touch or None,
        last_non_direct_touch=None,
        ids={},
        consent_analytics=True,
        consent_ads=True,
        user_agent="Mozilla/5.0 (simulated) Chrome/156",
    )


def _stitch_in_memory(store, site, call, number, callers) -> str | None:
    """What the stitch function would decide, reading the same documents."""
    limit = call.at + dt.timedelta(seconds=stitching.CLOCK_SKEW_S)
    holds = sorted(
        (
            (hid, h)
            for hid, h in store.all(HOLDS).items()
            if h["number"] == number and h["from"] <= limit
        ),
        key=lambda item: item[1]["from"],
        reverse=True,
    )
    holds = holds[: stitching.HOLDS_LIMIT]
    sessions, visitors = store.all(SESSIONS), store.all(VISITORS)
    held = [
        stitching.Held(
            hid, h, sessions.get(h["session_id"]), visitors.get(h["visitor_id"])
        )
        for hid, h in holds
    ]
    caller_hash = phones.phone_hash(call.caller)
    parsed = stitching.Call(
        call_id=f"{call.visit_id}-{call.at.timestamp()}",
        site_id=SITE_ID,
        started_at=call.at,
        tracking_number=number,
        caller_hash=caller_hash,
    )
    number_doc = store.all(NUMBERS).get(number)
    result = stitching.stitch(
        parsed, site, number_doc, held, callers.get(caller_hash), call.at
    )
    if result.caller is not None:
        callers[caller_hash] = result.caller
    return result.row["session_id"]


# -- the naive policy -------------------------------------------------------------


def run_naive(visits: list[Visit], pool_size: int, seed: int = 1) -> Score:
    rng = random.Random(seed)
    numbers = _numbers(pool_size)
    holder: dict[str, tuple[str, dt.datetime, dt.datetime]] = {}  # sid, start, seen
    shown: dict[int, str | None] = {}
    score = Score("naive", pool_size)

    def live(number: str, now: dt.datetime) -> str | None:
        entry = holder.get(number)
        if not entry:
            return None
        sid, start, seen = entry
        if (now - seen).total_seconds() > NAIVE_IDLE_S or (
            now - start
        ).total_seconds() > NAIVE_TOTAL_S:
            return None
        return sid

    for at, _, kind, visit, call in sorted(
        _events(visits, 40), key=lambda e: (e[0], e[1])
    ):
        sid = session_id(visit)
        number = shown.get(visit.visit_id)
        if kind == "start":
            if not visit.paid:
                shown[visit.visit_id] = None
                continue
            free = [n for n in numbers if live(n, at) is None]
            if not free:
                score.exhausted += 1
                shown[visit.visit_id] = None
                continue
            number = rng.choice(free)
            holder[number] = (sid, at, at)
            shown[visit.visit_id] = number
            score.peak_held = max(score.peak_held, pool_size - len(free) + 1)
        elif kind == "beat" and number and live(number, at) == sid:
            start = holder[number][1]
            holder[number] = (sid, start, at)
        elif kind == "call" and visit.paid:
            score.add(call, visit.end, sid, live(number, at) if number else None)
    return score


def sweep(
    visits: list[Visit],
    peak: int,
    multiples,
    seed: int = 1,
    site_overrides: dict | None = None,
) -> list[dict]:
    """Both policies at each pool size (multiples of the peak paid visits)."""
    rows = []
    for x in multiples:
        size = max(1, round(x * peak))
        for score in (
            run_product(visits, size, seed, site_overrides),
            run_naive(visits, size, seed),
        ):
            rows.append({**score.to_dict(), "pool_x_peak": x})
    return rows


def pool_needed(
    visits: list[Visit],
    peak: int,
    policy: str,
    target: float,
    seed: int = 1,
    site_overrides: dict | None = None,
    max_x: float = 4.0,
) -> float | None:
    """Smallest pool (multiple of peak, 0.05 steps) whose correct share reaches
    ``target``, by bisection; None when even ``max_x`` falls short."""

    def correct(x: float) -> float:
        size = max(1, round(x * peak))
        if policy == "product":
            return run_product(visits, size, seed, site_overrides).share("correct")
        return run_naive(visits, size, seed).share("correct")

    steps = int(max_x / 0.05)
    if correct(steps * 0.05) < target:
        return None
    low, high = 0, steps
    while low < high:
        mid = (low + high) // 2
        if correct(mid * 0.05) >= target:
            high = mid
        else:
            low = mid + 1
    return round(high * 0.05, 2)
