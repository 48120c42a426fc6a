"""Seeded synthetic traffic for one site, with the truth about every call.

A day is a list of visits. Each visit has its arrival, its channel, how long
the page stays open, when the tab was hidden, whether the page said goodbye
(``pagehide`` released the number) and the calls it produced, each call
carrying the visit that truly produced it. The same parameters and seed give
the same traffic.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from dataclasses import dataclass, field

START = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)  # a Monday, midnight UTC


@dataclass(frozen=True)
class Channel:
    name: str
    share: float
    touch: dict
    call_rate: float  # share of this channel's visits that call
    paid: bool


# Arrivals per hour of day (relative): quiet nights, a late-morning and an
# evening peak, as call-heavy local-service sites see.
HOURLY = (
    0.2,
    0.1,
    0.1,
    0.1,
    0.1,
    0.2,
    0.5,
    1.0,
    1.6,
    2.0,
    2.3,
    2.5,
    2.4,
    2.2,
    2.1,
    2.0,
    1.9,
    1.9,
    2.1,
    2.4,
    2.3,
    1.7,
    1.0,
    0.5,
)

CHANNELS = (
    Channel(
        "google_cpc",
        0.30,
        {"utm_source": "google", "utm_medium": "cpc", "gclid": ""},
        0.08,
        True,
    ),
    Channel(
        "yandex_cpc",
        0.25,
        {"utm_source": "yandex", "utm_medium": "cpc", "yclid": ""},
        0.08,
        True,
    ),
    Channel(
        "meta_paid",
        0.08,
        {"utm_source": "meta", "utm_medium": "paid_social", "fbclid": ""},
        0.05,
        True,
    ),
    Channel("organic", 0.15, {"referrer": "https://www.google.com/"}, 0.05, False),
    Channel("direct", 0.10, {}, 0.06, False),
    Channel(
        "email", 0.05, {"utm_source": "newsletter", "utm_medium": "email"}, 0.04, False
    ),
    Channel("referral", 0.04, {"referrer": "https://blog.partner.test/"}, 0.04, False),
    Channel(
        "offline",
        0.03,
        {"utm_source": "billboard", "utm_medium": "offline"},
        0.10,
        False,
    ),
)


@dataclass(frozen=True)
class Params:
    """Every knob of the traffic, with the defaults docs/accuracy.md explains."""

    seed: int = 1
    days: int = 1
    visits_per_day: int = 3000
    # Relative arrivals per hour of day (UTC); HOURLY unless a site's own.
    hourly: tuple[float, ...] = HOURLY
    # Page-open time: log-normal, median 150 s, long tail, capped at 2 h.
    visit_median_s: float = 150.0
    visit_sigma: float = 1.0
    visit_max_s: float = 7200.0
    # A third of visits hide the tab for a while (another tab, a phone call).
    hidden_share: float = 0.3
    hidden_mean_s: float = 600.0
    # Pages that close without pagehide (crash, killed tab) never release.
    release_share: float = 0.85
    # Visits by someone who came before; half of those come back direct.
    returning_share: float = 0.2
    returning_direct_share: float = 0.5
    # When a caller calls: during the visit, minutes after leaving (mean 4
    # min), hours or days later from a saved number; some call twice.
    during_share: float = 0.55
    after_share: float = 0.37
    after_mean_s: float = 240.0
    later_share: float = 0.08
    second_call_share: float = 0.05


@dataclass
class Call:
    at: dt.datetime
    visit_id: int  # the truth: which visit produced the call
    caller: str
    window: str  # during | after | later


@dataclass
class Visit:
    visit_id: int
    visitor: str
    start: dt.datetime
    length_s: float
    channel: Channel
    touch: dict
    hidden: tuple[float, float] | None  # (offset_s, duration_s) of a hidden tab
    releases: bool
    calls: list[Call] = field(default_factory=list)

    @property
    def end(self) -> dt.datetime:
        return self.start + dt.timedelta(seconds=self.length_s)

    @property
    def paid(self) -> bool:
        return self.channel.paid


def _arrival(rng: random.Random, day: int, hourly) -> dt.datetime:
    hour = rng.choices(range(24), hourly)[0]
    offset = (day * 24 + hour) * 3600 + rng.random() * 3600
    return START + dt.timedelta(seconds=offset)


def generate(params: Params = Params()) -> list[Visit]:
    """The visits of ``params.days`` days, sorted by start, calls attached."""
    rng = random.Random(params.seed)
    shares = [c.share for c in CHANNELS]
    visits: list[Visit] = []
    visitors: list[tuple[str, Channel, dict]] = []
    callers = 0

    for n in range(params.visits_per_day * params.days):
        start = _arrival(rng, n % params.days, params.hourly)
        if visitors and rng.random() < params.returning_share:
            visitor, channel, touch = rng.choice(visitors)
            if rng.random() < params.returning_direct_share:
                channel, touch = CHANNELS[4], {}
        else:
            channel = rng.choices(CHANNELS, shares)[0]
            touch = {k: v or f"{k}-{n}" for k, v in channel.touch.items()}
            visitor = f"sim-visitor-{n:06d}"
            visitors.append((visitor, channel, touch))

        length = min(
            params.visit_max_s,
            rng.lognormvariate(math.log(params.visit_median_s), params.visit_sigma),
        )
        hidden = None
        if rng.random() < params.hidden_share and length > 30:
            hidden = (
                rng.uniform(10, length - 10),
                rng.expovariate(1 / params.hidden_mean_s),
            )
        visits.append(
            Visit(
                n,
                visitor,
                start,
                length,
                channel,
                touch,
                hidden,
                rng.random() < params.release_share,
            )
        )

    visits.sort(key=lambda v: v.start)
    for visit in visits:
        if rng.random() >= visit.channel.call_rate:
            continue
        callers += 1
        caller = f"+7999{callers:07d}"
        visit.calls.append(_call(rng, params, visit, caller))
        if rng.random() < params.second_call_share:
            first = visit.calls[0].at
            later = first + dt.timedelta(seconds=rng.uniform(60, 3600))
            visit.calls.append(Call(later, visit.visit_id, caller, "second"))
    return visits


def _call(rng: random.Random, params: Params, visit: Visit, caller: str) -> Call:
    pick = rng.random()
    if pick < params.during_share:
        return Call(
            visit.start + dt.timedelta(seconds=rng.uniform(5, visit.length_s)),
            visit.visit_id,
            caller,
            "during",
        )
    if pick < params.during_share + params.after_share:
        after = rng.expovariate(1 / params.after_mean_s)
        return Call(
            visit.end + dt.timedelta(seconds=after), visit.visit_id, caller, "after"
        )
    later = rng.uniform(3600, 3 * 86_400)
    return Call(
        visit.end + dt.timedelta(seconds=later), visit.visit_id, caller, "later"
    )


def peak_concurrent(visits: list[Visit], paid_only: bool = True) -> int:
    """Most visits open at once (paid ones: those that need a dynamic number)."""
    edges = []
    for visit in visits:
        if paid_only and not visit.paid:
            continue
        edges.append((visit.start, 1))
        edges.append((visit.end, -1))
    edges.sort(key=lambda e: (e[0], e[1]))
    peak = level = 0
    for _, step in edges:
        level += step
        peak = max(peak, level)
    return peak
