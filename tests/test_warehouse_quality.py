"""The daily quality checks fire on fixtures built to breach each target and
stay quiet otherwise; the function writes quality_daily and logs breaches.

Day Q is checked against the 7 days before it. Site ``q-ok`` keeps every
ratio within 20% of its trailing average and meets every target; ``q-bad``
breaches each target once; ``q-few`` has too few reviews to judge spam and
``q-nocrm`` has no CRM leads at all, so neither is judged on those.
"""

from __future__ import annotations

import datetime as dt
import json
import logging

import pytest

from shared import events, quality
from tests import warehouse_fixtures as wf
from tests.conftest import wait_for
from tests.warehouse_fixtures import at, call, cost, lead, session, touch

Q = dt.date(2026, 11, 20)
TRAILING = [Q - dt.timedelta(days=d) for d in range(1, 8)]


class Rows:
    def __init__(self):
        self.tables = {
            "sessions": [],
            "calls": [],
            "leads": [],
            "ad_costs": [],
            "call_reviews": [],
        }
        self.n = 0

    def day(
        self,
        site,
        day,
        source,
        medium,
        campaign,
        *,
        clicks=0,
        sessions=0,
        calls=0,
        leads=True,
        unattributed=0,
        exhausted=0,
        reviews=(),
    ):
        """Clicks, sessions and calls of one campaign on one day."""
        iso = day.isoformat()
        if clicks:
            self.tables["ad_costs"].append(
                cost(site, iso, "google_ads", source, medium, campaign, "10.00", clicks)
            )
        for i in range(sessions):
            self.n += 1
            self.tables["sessions"].append(
                session(
                    site,
                    f"{site}-s{self.n}",
                    f"{site}-v{self.n}",
                    at(iso, f"{8 + i % 12:02d}:00"),
                    source,
                    medium,
                    campaign,
                    exhausted=i < exhausted,
                )
            )
        own = touch(source, medium, campaign)
        made = []
        for i in range(calls + unattributed):
            self.n += 1
            cid = f"{site}-c{self.n}"
            attributed = i < calls
            self.tables["calls"].append(
                call(
                    site,
                    cid,
                    at(iso, f"{8 + i % 12:02d}:30"),
                    own=own if attributed else None,
                    visitor=f"{site}-v{self.n}",
                    kind="dynamic" if attributed else "default",
                )
            )
            if leads is True or (leads and i < leads):
                self.tables["leads"].append(
                    lead(site, cid, f"L{cid}", when=at(iso, "22:00"))
                )
            made.append(cid)
        for cid, verdict in zip(made, reviews, strict=False):
            self.tables["call_reviews"].append(
                {
                    "review_id": f"r-{cid}",
                    "site_id": site,
                    "call_id": cid,
                    "verdict": verdict,
                    "reviewed_at": at(iso, "23:00"),
                }
            )
        return made


def _rows() -> Rows:
    r = Rows()
    for day in TRAILING:
        r.day("q-ok", day, "google", "cpc", "ok_a", clicks=20, sessions=10, calls=5)
        r.day("q-bad", day, "google", "cpc", "bad_b", clicks=20, sessions=10, calls=5)
        r.day("q-bad", day, "yandex", "cpc", "bad_c", sessions=10, calls=2)
    # q-ok today: sessions/click 0.55 vs 0.5 (+10%), calls/session 5/11 vs 0.5
    # (-9%), every call attributed and led, 5 reviews without spam.
    r.day(
        "q-ok",
        Q,
        "google",
        "cpc",
        "ok_a",
        clicks=20,
        sessions=11,
        calls=5,
        reviews=["target"] * 4 + ["not_target"],
    )
    # q-bad today: sessions/click 0.25 vs 0.5; calls/session 0.5 vs 0.2; one
    # unattributed call of 6; 5 of 6 calls led; an exhausted pool; 2 spam of 5.
    r.day("q-bad", Q, "google", "cpc", "bad_b", clicks=20, sessions=5, exhausted=1)
    r.day(
        "q-bad",
        Q,
        "yandex",
        "cpc",
        "bad_c",
        sessions=10,
        calls=5,
        unattributed=1,
        leads=5,
        reviews=["spam", "spam", "target", "target", "target"],
    )
    # q-few: two reviews, both spam: too few to judge. q-nocrm: no leads ever.
    r.day(
        "q-few",
        Q,
        "google",
        "cpc",
        "few",
        sessions=3,
        calls=2,
        reviews=["spam", "spam"],
    )
    r.day("q-nocrm", Q, "google", "cpc", "nocrm", sessions=3, calls=2, leads=False)
    return r


@pytest.fixture(scope="module")
def dataset(stack):
    name = wf.make_dataset(stack, "wh_quality")
    for table, rows in _rows().tables.items():
        wf.load(stack, name, table, rows)
    return name


def _by_check(rows, site):
    return {(r["check_name"], r["campaign"]): r for r in rows if r["site_id"] == site}


def test_a_healthy_site_meets_every_target(stack, dataset):
    checks = _by_check(quality.evaluate(Q, dataset, stack.bigquery()), "q-ok")

    assert {k: r["breached"] for k, r in checks.items()} == {
        ("sessions_per_click", "ok_a"): False,
        ("calls_per_session", "ok_a"): False,
        ("attributed_share", None): False,
        ("crm_convergence", None): False,
        ("unswapped_share", None): False,
        ("overflow_sessions", None): False,
        ("spam_share", None): False,
    }
    spc = checks[("sessions_per_click", "ok_a")]
    assert (spc["numerator"], spc["denominator"]) == (11, 20)
    assert spc["value"] == pytest.approx(0.55) and spc["baseline"] == 0.5
    cps = checks[("calls_per_session", "ok_a")]
    assert cps["value"] == pytest.approx(5 / 11) and cps["baseline"] == 0.5
    assert checks[("attributed_share", None)]["value"] == 1
    assert checks[("crm_convergence", None)]["value"] == 1
    assert checks[("spam_share", None)]["value"] == 0


def test_each_target_breached_is_flagged(stack, dataset):
    checks = _by_check(quality.evaluate(Q, dataset, stack.bigquery()), "q-bad")

    breached = {k for k, r in checks.items() if r["breached"]}
    assert breached == {
        ("sessions_per_click", "bad_b"),
        ("calls_per_session", "bad_c"),
        ("attributed_share", None),
        ("crm_convergence", None),
        ("overflow_sessions", None),
        ("spam_share", None),
    }
    assert checks[("sessions_per_click", "bad_b")]["value"] == 0.25
    assert checks[("calls_per_session", "bad_c")]["value"] == 0.5
    assert checks[("calls_per_session", "bad_c")]["baseline"] == pytest.approx(0.2)
    assert checks[("attributed_share", None)]["value"] == pytest.approx(5 / 6)
    assert checks[("crm_convergence", None)]["value"] == pytest.approx(5 / 6)
    assert checks[("unswapped_share", None)]["value"] == pytest.approx(1 / 6)
    assert checks[("unswapped_share", None)]["breached"] is False
    assert checks[("overflow_sessions", None)]["value"] == 1
    assert checks[("spam_share", None)]["value"] == pytest.approx(2 / 5)
    # bad_b had 5 sessions today: too few to judge its calls per session
    assert checks[("calls_per_session", "bad_b")]["breached"] is False


def test_few_reviews_and_sites_without_a_crm_are_not_judged(stack, dataset):
    rows = quality.evaluate(Q, dataset, stack.bigquery())
    few = _by_check(rows, "q-few")
    nocrm = _by_check(rows, "q-nocrm")

    assert few[("spam_share", None)]["value"] == 1
    assert few[("spam_share", None)]["breached"] is False
    assert ("crm_convergence", None) not in nocrm
    assert not any(r["breached"] for r in nocrm.values())


def test_run_merges_the_day_once_and_logs_each_breach(stack, dataset, caplog):
    client = stack.bigquery()
    with caplog.at_level(logging.WARNING, logger="shared.quality"):
        first = quality.run(Q, dataset, client)
    again = quality.run(Q, dataset, client)

    stored = wf.query(
        stack, dataset, "SELECT COUNT(*) AS n FROM `{dataset}.quality_daily`"
    )
    assert stored == [{"n": len(first)}] and len(again) == len(first)
    logged = {
        (r.fields["site_id"], r.fields["check"], r.fields["campaign"])
        for r in caplog.records
        if getattr(r, "fields", {}).get("event") == "quality_breach"
    }
    assert logged == {
        (r["site_id"], r["check_name"], r["campaign"]) for r in first if r["breached"]
    }
    assert len(logged) == 6


def test_day_of_tick_is_the_day_before_publishing_or_the_day_asked():
    published = "2026-12-03T05:00:00.123Z"

    assert quality.day_of_tick({"tick": "quality-tick"}, published) == dt.date(
        2026, 12, 2
    )
    assert quality.day_of_tick({"day": "2026-11-20"}, published) == Q
    with pytest.raises(ValueError):
        quality.day_of_tick({"day": "yesterday"}, published)


def test_the_scheduled_tick_reaches_the_function_end_to_end(stack):
    """quality-tick -> quality_report -> quality_daily + quality_breach line."""
    day = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=40)
    site = f"q-e2e-{day:%Y%m%d}"
    main = f"{wf.PROJECT}.calltrack"
    rows = Rows()
    rows.day(
        site,
        day,
        "google",
        "cpc",
        "e2e",
        sessions=2,
        calls=1,
        unattributed=1,
        leads=False,
    )
    for table, items in rows.tables.items():
        if items:
            wf.load(stack, main, table, items)

    events.publish(
        "quality-tick", [("tick", {"tick": "quality-tick", "day": day.isoformat()})]
    )

    def stored():
        return wf.query(
            stack,
            main,
            "SELECT check_name, value, breached FROM"
            " `{dataset}.quality_daily` WHERE date = @day AND site_id = @site",
            day=day,
            site=site,
        )

    rows = {r["check_name"]: r for r in wait_for(stored)}
    assert rows["attributed_share"]["value"] == 0.5
    assert rows["attributed_share"]["breached"] is True

    def logged():
        for line in stack.log_text("quality_report").splitlines():
            if line.startswith("{") and site in line:
                entry = json.loads(line)
                if entry.get("event") == "quality_breach":
                    return entry
        return None

    entry = wait_for(logged, timeout=30)
    assert entry["check"] == "attributed_share" and entry["severity"] == "WARNING"
