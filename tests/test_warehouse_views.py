"""The Looker Studio views over hand-made rows, with exact expected numbers.

One site ``wh``: a visitor with four touches before the call (and one after
it), a direct return, a call with two versions and a review verdict, an
unattributed call, a static-number call judged spam, leads (one only a note),
deals (revenue changed twice, one linked only through its lead, one lost),
ad costs (a reload that replaces a slice, and a campaign with no calls). The
expected figures below were worked out by hand from these rows.
"""

from __future__ import annotations

import datetime as dt

import pytest

from tests import warehouse_fixtures as wf
from tests.warehouse_fixtures import at, call, cost, deal, lead, session, touch

SITE = "wh"
D1, D2 = "2026-11-01", "2026-11-02"
MODELS = ("first_touch", "last_touch", "last_non_direct", "position_based")

GOOGLE_A = ("google", "cpc", "kitchen_a")
YANDEX_B = ("yandex", "cpc", "kitchen_b")
ORGANIC = ("google", "organic", "(not set)")
META_C = ("meta", "paid_social", "kitchen_c")
DIRECT = ("(direct)", "(none)", "(not set)")
UNATTRIBUTED = ("(unattributed)", "(unattributed)", "(not set)")
PAPER = ("newspaper", "offline", "(not set)")


def _rows():
    google_a = touch("google", "cpc", "kitchen_a", at(D1, "10:00"))
    direct = touch("(direct)", "(none)")
    sessions = [
        # v1: four touches before the call, one after it
        session(SITE, "s1", "v1", at(D1, "10:00"), "google", "cpc", "kitchen_a"),
        session(SITE, "s2", "v1", at(D1, "15:00"), "yandex", "cpc", "kitchen_b"),
        session(SITE, "s3", "v1", at(D2, "09:00"), "google", "organic"),
        session(SITE, "s4", "v1", at(D2, "12:00"), "meta", "paid_social", "kitchen_c"),
        session(SITE, "s5", "v1", at(D2, "18:00"), "(direct)", "(none)"),
        # v2: paid first, then a direct return that calls
        session(SITE, "s6", "v2", at(D1, "11:00"), "google", "cpc", "kitchen_a"),
        session(SITE, "s7", "v2", at(D2, "10:00"), "(direct)", "(none)"),
        # v3: one session
        session(SITE, "s8", "v3", at(D2, "13:00"), "yandex", "cpc", "kitchen_b"),
    ]
    meta_c = touch("meta", "paid_social", "kitchen_c")
    yandex_b = touch("yandex", "cpc", "kitchen_b")
    paper = touch("newspaper", "offline")
    calls = [
        call(
            SITE,
            "c1",
            at(D2, "12:05"),
            own=meta_c,
            first=google_a,
            non_direct=meta_c,
            visitor="v1",
            session_id="s4",
            talk_s=40,
            caller="h1",
        ),
        call(
            SITE,
            "c2",
            at(D2, "10:03"),
            own=direct,
            first=google_a,
            non_direct=google_a,
            visitor="v2",
            session_id="s7",
            talk_s=35,
            caller="h2",
        ),
        # two versions: counted once; 20 s is under the rule, the review says
        # target
        call(
            SITE,
            "c3",
            at(D2, "13:10"),
            own=yandex_b,
            non_direct=yandex_b,
            visitor="v3",
            session_id="s8",
            talk_s=20,
            caller="h1",
        ),
        call(
            SITE,
            "c3",
            at(D2, "13:10"),
            own=yandex_b,
            non_direct=yandex_b,
            visitor="v3",
            session_id="s8",
            talk_s=20,
            caller="h1",
            version=2,
            recording="rec-3",
        ),
        call(SITE, "c5", at(D2, "14:00"), kind="default", talk_s=100, caller="h3"),
        call(
            SITE,
            "c6",
            at(D2, "15:00"),
            own=paper,
            non_direct=paper,
            kind="static",
            reason="static_number",
            talk_s=45,
        ),
    ]
    leads = [
        wf.lead(SITE, "c1", "L1"),
        wf.lead(SITE, "c2", "L2"),
        lead(SITE, "c3", "L1", action="noted"),
        lead(SITE, "c5", "L5"),
    ]
    deals = [
        deal(SITE, "D1", at(D2, "16:00"), call_id="c1", lead_id="L1", revenue=1000.0),
        deal(
            SITE,
            "D1",
            at("2026-11-05"),
            call_id="c1",
            lead_id="L1",
            stage="won",
            won=True,
            revenue=1500.0,
        ),
        deal(
            SITE,
            "D1",
            at("2026-11-07"),
            call_id="c1",
            lead_id="L1",
            stage="won",
            won=True,
            revenue=1800.0,
        ),
        deal(
            SITE,
            "D2",
            at("2026-11-04"),
            lead_id="L2",
            stage="won",
            won=True,
            revenue=500.0,
        ),
        deal(
            SITE,
            "D5",
            at("2026-11-04"),
            call_id="c5",
            lead_id="L5",
            stage="lost",
            lost=True,
            revenue=300.0,
        ),
    ]
    costs = [
        cost(SITE, D2, "google_ads", "google", "cpc", "kitchen_a", "1000.00", 100),
        # an older load of the same slice, replaced by the later one
        cost(
            SITE,
            D2,
            "yandex_direct",
            "yandex",
            "cpc",
            "kitchen_b",
            "9999.00",
            999,
            loaded_at="2026-11-03T08:00:00+00:00",
        ),
        cost(SITE, D2, "yandex_direct", "yandex", "cpc", "kitchen_b", "600.00", 50),
        cost(SITE, D2, "meta", "meta", "paid_social", "kitchen_c", "400.00", 40),
        # spend with no session and no call
        cost(SITE, D2, "google_ads", "google", "cpc", "kitchen_z", "250.00", 20),
    ]
    rules = [
        {"site_id": SITE, "min_talk_s": 60, "set_at": at("2026-10-01")},
        {"site_id": SITE, "min_talk_s": 30, "set_at": at("2026-10-15")},
    ]
    reviews = [
        {
            "review_id": "r1",
            "site_id": SITE,
            "call_id": "c3",
            "verdict": "spam",
            "reviewer": "anna",
            "reviewed_at": at("2026-11-03", "09:00"),
        },
        {
            "review_id": "r2",
            "site_id": SITE,
            "call_id": "c3",
            "verdict": "target",
            "reviewer": "anna",
            "reviewed_at": at("2026-11-03", "10:00"),
        },
        {
            "review_id": "r3",
            "site_id": SITE,
            "call_id": "c6",
            "verdict": "spam",
            "reviewer": "boris",
            "reviewed_at": at("2026-11-03", "11:00"),
        },
    ]
    return {
        "sessions": sessions,
        "calls": calls,
        "leads": leads,
        "deals": deals,
        "ad_costs": costs,
        "target_rules": rules,
        "call_reviews": reviews,
    }


@pytest.fixture(scope="module")
def dataset(stack):
    name = wf.make_dataset(stack, "wh_views")
    for table, rows in _rows().items():
        wf.load(stack, name, table, rows)
    return name


def _funnel(stack, dataset, model, day=D2):
    rows = wf.query(
        stack,
        dataset,
        "SELECT * FROM `{dataset}.funnel` WHERE site_id = @site AND model = @model"
        " AND date = @day",
        site=SITE,
        model=model,
        day=dt.date.fromisoformat(day),
    )
    return {(r["source"], r["medium"], r["campaign"]): r for r in rows}


# (calls, target_calls, leads, deals, won_deals, revenue) per campaign key.
EXPECTED = {
    "last_touch": {
        META_C: (1, 1, 1, 1, 1, 1800),
        DIRECT: (1, 1, 1, 1, 1, 500),
        YANDEX_B: (1, 1, 0, 0, 0, 0),
        UNATTRIBUTED: (1, 1, 1, 1, 0, 0),
        PAPER: (1, 0, 0, 0, 0, 0),
    },
    "first_touch": {
        GOOGLE_A: (2, 2, 2, 2, 2, 2300),
        YANDEX_B: (1, 1, 0, 0, 0, 0),
        UNATTRIBUTED: (1, 1, 1, 1, 0, 0),
        PAPER: (1, 0, 0, 0, 0, 0),
    },
    "last_non_direct": {
        META_C: (1, 1, 1, 1, 1, 1800),
        GOOGLE_A: (1, 1, 1, 1, 1, 500),
        YANDEX_B: (1, 1, 0, 0, 0, 0),
        UNATTRIBUTED: (1, 1, 1, 1, 0, 0),
        PAPER: (1, 0, 0, 0, 0, 0),
    },
    # c1: s1 0.4, s2 0.1, s3 0.1, s4 0.4 (s5 is after the call);
    # c2: s6 0.5, s7 0.5; c3: s8 1.0
    "position_based": {
        GOOGLE_A: (0.9, 0.9, 0.9, 0.9, 0.9, 0.4 * 1800 + 0.5 * 500),
        YANDEX_B: (1.1, 1.1, 0.1, 0.1, 0.1, 0.1 * 1800),
        ORGANIC: (0.1, 0.1, 0.1, 0.1, 0.1, 0.1 * 1800),
        META_C: (0.4, 0.4, 0.4, 0.4, 0.4, 0.4 * 1800),
        DIRECT: (0.5, 0.5, 0.5, 0.5, 0.5, 0.5 * 500),
        UNATTRIBUTED: (1, 1, 1, 1, 0, 0),
        PAPER: (1, 0, 0, 0, 0, 0),
    },
}
MEASURES = ("calls", "target_calls", "leads", "deals", "won_deals", "revenue")


@pytest.mark.parametrize("model", MODELS)
def test_each_model_credits_every_measure_exactly(stack, dataset, model):
    funnel = _funnel(stack, dataset, model)

    got = {
        key: tuple(round(row[m], 9) for m in MEASURES)
        for key, row in funnel.items()
        if row["calls"]
    }
    want = {
        key: tuple(round(v, 9) for v in values)
        for key, values in EXPECTED[model].items()
    }
    assert got == want


def test_additive_measures_add_up_to_the_same_totals_in_every_model(stack, dataset):
    totals = {}
    for model in MODELS:
        rows = _funnel(stack, dataset, model).values()
        totals[model] = tuple(
            round(sum(r[m] for r in rows), 9)
            for m in (*MEASURES, "sessions", "cost", "clicks")
        )

    # 5 calls, 4 target, 3 leads, 3 deals, 2 won, 2300 revenue; 5 sessions on
    # D2 (s3, s4, s5, s7, s8); cost 1000 + 600 + 400 + 250; clicks 210
    assert set(totals.values()) == {(5, 4, 3, 3, 2, 2300, 5, 2250, 210)}


def test_sessions_and_costs_are_the_same_in_every_model(stack, dataset):
    for model in MODELS:
        funnel = _funnel(stack, dataset, model)
        sessions = {k: r["sessions"] for k, r in funnel.items() if r["sessions"]}
        costs = {k: r["cost"] for k, r in funnel.items() if r["cost"]}

        assert sessions == {ORGANIC: 1, META_C: 1, DIRECT: 2, YANDEX_B: 1}
        assert costs == {
            GOOGLE_A: 1000,
            YANDEX_B: 600,
            META_C: 400,
            ("google", "cpc", "kitchen_z"): 250,
        }

    day_one = _funnel(stack, dataset, "last_touch", D1)
    assert {k: r["sessions"] for k, r in day_one.items()} == {
        GOOGLE_A: 2,
        YANDEX_B: 1,
    }


def test_cost_per_call_lead_deal_and_roas(stack, dataset):
    lnd = _funnel(stack, dataset, "last_non_direct")
    google = lnd[GOOGLE_A]
    yandex = lnd[YANDEX_B]
    meta = lnd[META_C]
    idle = lnd[("google", "cpc", "kitchen_z")]

    assert (google["cost_per_call"], google["cost_per_lead"]) == (1000, 1000)
    assert (google["call_to_deal"], google["roas"]) == (1, 0.5)
    assert yandex["cost_per_call"] == 600 and yandex["cost_per_target_call"] == 600
    assert yandex["cost_per_lead"] is None and yandex["roas"] == 0
    assert meta["roas"] == pytest.approx(1800 / 400)
    assert idle["calls"] == 0 and idle["cost_per_call"] is None

    position = _funnel(stack, dataset, "position_based")[GOOGLE_A]
    assert position["cost_per_call"] == pytest.approx(1000 / 0.9)
    assert position["roas"] == pytest.approx(970 / 1000)


def test_unique_callers_count_each_caller_once(stack, dataset):
    last = _funnel(stack, dataset, "last_touch")
    first = _funnel(stack, dataset, "first_touch")

    assert {k: r["unique_callers"] for k, r in last.items() if r["calls"]} == {
        META_C: 1,
        DIRECT: 1,
        YANDEX_B: 1,
        UNATTRIBUTED: 1,
        PAPER: 0,
    }
    # c1 and c2 come from two callers, both crediting google first
    assert first[GOOGLE_A]["unique_callers"] == 2


def test_calls_latest_applies_the_target_rule_and_review_verdicts(stack, dataset):
    rows = wf.query(
        stack,
        dataset,
        "SELECT call_id, version, target, spam, review_verdict, min_talk_s,"
        " attributed FROM `{dataset}.calls_latest` ORDER BY call_id",
    )

    assert [(r["call_id"], r["version"]) for r in rows] == [
        ("c1", 1),
        ("c2", 1),
        ("c3", 2),
        ("c5", 1),
        ("c6", 1),
    ]
    by_id = {r["call_id"]: r for r in rows}
    # c2 talked 35 s: a target under the latest rule (30 s), not the old one
    assert by_id["c2"]["target"] is True and by_id["c2"]["min_talk_s"] == 30
    # c3 talked 20 s, but the latest verdict says target
    assert by_id["c3"]["review_verdict"] == "target" and by_id["c3"]["target"]
    assert by_id["c6"]["spam"] is True and by_id["c6"]["target"] is False
    assert by_id["c5"]["attributed"] is False and by_id["c5"]["target"] is True


def test_each_call_weighs_one_in_every_model(stack, dataset):
    rows = wf.query(
        stack,
        dataset,
        "SELECT call_id, model, SUM(weight) AS w, COUNT(*) AS n"
        " FROM `{dataset}.calls_by_model` GROUP BY call_id, model",
    )

    assert len(rows) == 5 * len(MODELS)
    assert all(r["w"] == pytest.approx(1.0) for r in rows)
    pieces = {r["call_id"]: r["n"] for r in rows if r["model"] == "position_based"}
    assert pieces == {"c1": 4, "c2": 2, "c3": 1, "c5": 1, "c6": 1}


def test_deals_latest_takes_the_last_change_and_finds_the_call(stack, dataset):
    rows = wf.query(
        stack,
        dataset,
        "SELECT crm_deal_id, call_id, won, revenue, won_revenue"
        " FROM `{dataset}.deals_latest` ORDER BY crm_deal_id",
    )

    assert [tuple(r.values()) for r in rows] == [
        ("D1", "c1", True, 1800.0, 1800.0),
        ("D2", "c2", True, 500.0, 500.0),
        ("D5", "c5", False, 300.0, 0.0),
    ]


def test_ad_costs_latest_keeps_only_the_last_load_of_a_slice(stack, dataset):
    rows = wf.query(
        stack,
        dataset,
        "SELECT platform, campaign_key, CAST(cost AS FLOAT64) AS cost"
        " FROM `{dataset}.ad_costs_latest` ORDER BY platform, campaign_key",
    )

    assert [tuple(r.values()) for r in rows] == [
        ("google_ads", "kitchen_a", 1000.0),
        ("google_ads", "kitchen_z", 250.0),
        ("meta", "kitchen_c", 400.0),
        ("yandex_direct", "kitchen_b", 600.0),
    ]


def test_ensure_views_replaces_existing_views_in_place(stack, dataset):
    from shared import warehouse

    names = warehouse.ensure_views(stack.bigquery(), dataset)

    assert {"funnel", "calls_by_model", "calls_latest", "call_sample"} <= set(names)
    assert names.index("calls_latest") < names.index("calls_by_model")
    assert names.index("calls_by_model") < names.index("funnel")
    rows = _funnel(stack, dataset, "last_touch")
    assert sum(r["calls"] for r in rows.values()) == 5
