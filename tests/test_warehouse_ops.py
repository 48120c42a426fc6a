"""Operator side of the warehouse: the costs CSV, call sampling and review,
the target rule, the Looker Studio URL and the HTML report."""

from __future__ import annotations

import datetime as dt
import html
import json
from decimal import Decimal
import urllib.parse

import pytest

from ops import __main__ as ops_main
from ops import looker, report
from shared import costs
from shared.errors import BadRequest
from tests import warehouse_fixtures as wf
from tests.warehouse_fixtures import at, call, deal, lead, session, touch

NOW = dt.datetime(2026, 11, 10, 8, 0, tzinfo=dt.UTC)
CSV = """date,platform,campaign,campaign_id,utm_source,utm_medium,utm_campaign,\
impressions,clicks,cost,currency
2026-11-02,google_ads,Kitchens Moscow,123,Google,CPC,Kitchen Moscow Leads 202611,\
1000,100,1000.50,rub
2026-11-02,yandex_direct,Kitchens,,yandex,cpc,,500,50,600,RUB
"""


# -- the costs CSV --------------------------------------------------------------


def test_costs_csv_rows_are_normalised_like_sessions():
    rows = costs.parse(CSV, "demo", NOW, load_id="L")

    assert [(r["utm_source"], r["utm_medium"], r["utm_campaign"]) for r in rows] == [
        ("google", "cpc", "kitchen_moscow_leads_202611"),
        ("yandex", "cpc", None),
    ]
    assert rows[0]["cost"] == "1000.50" and rows[0]["currency"] == "RUB"
    assert rows[0]["clicks"] == 100 and rows[1]["campaign_id"] is None
    assert {r["loaded_at"] for r in rows} == {"2026-11-10T08:00:00+00:00"}


@pytest.mark.parametrize(
    "line, reason",
    [
        ("2026-13-02,google_ads,C,,g,cpc,,1,1,1,RUB", "date"),
        ("2026-11-02,Google Ads,C,,g,cpc,,1,1,1,RUB", "platform"),
        ("2026-11-02,google_ads,C,,g,cpc,,1,1,-5,RUB", "cost"),
        ("2026-11-02,google_ads,C,,g,cpc,,1,1,1e999,RUB", "cost"),
        ("2026-11-02,google_ads,C,,g,cpc,,1,1,abc,RUB", "cost"),
        ("2026-11-02,google_ads,C,,g,cpc,,1,-1,1,RUB", "clicks"),
        ("2026-11-02,google_ads,C,,g,cpc,,1,1,1,RUBLES", "currency"),
        ("2026-11-02,google_ads,C,,,cpc,,1,1,1,RUB", "missing utm_source"),
        ("2026-11-02,google_ads,C,,g,cpc,,1,1,1,RUB,extra", "more values"),
    ],
)
def test_a_bad_line_refuses_the_whole_file(line, reason):
    text = CSV + line + "\n"

    with pytest.raises(BadRequest) as err:
        costs.parse(text, "demo", NOW)
    assert "line 4" in err.value.message and reason in err.value.message


def test_unknown_or_missing_columns_are_refused():
    with pytest.raises(BadRequest, match="unknown \\['spend'\\]"):
        costs.parse(
            "date,platform,campaign,utm_source,utm_medium,spend,currency\n", "demo", NOW
        )


def test_loading_a_corrected_file_again_replaces_the_slice(stack):
    client = stack.bigquery()
    dataset = wf.make_dataset(stack, "wh_costs")
    costs.load(costs.parse(CSV, "demo", NOW), client, dataset)
    fixed = CSV.replace("1000.50", "900.25")
    costs.load(costs.parse(fixed, "demo", NOW + dt.timedelta(hours=1)), client, dataset)

    rows = wf.query(
        stack,
        dataset,
        "SELECT platform, cost FROM `{dataset}.ad_costs_latest` ORDER BY platform",
    )
    assert rows == [
        {"platform": "google_ads", "cost": Decimal("900.25")},
        {"platform": "yandex_direct", "cost": Decimal("600")},
    ]
    raw = wf.query(stack, dataset, "SELECT COUNT(*) AS n FROM `{dataset}.ad_costs`")
    assert raw == [{"n": 4}]


# -- sampling and review --------------------------------------------------------


def test_the_call_sample_is_five_per_campaign_week_and_stable(stack):
    dataset = wf.make_dataset(stack, "wh_sample")
    own = touch("google", "cpc", "many")
    week = [
        call("smp", f"k{i:02d}", at(f"2026-11-{2 + i % 5:02d}"), own=own)
        for i in range(12)
    ]
    wf.load(stack, dataset, "calls", week)
    sample_sql = (
        "SELECT call_id FROM `{dataset}.call_sample`"
        " WHERE week = DATE '2026-11-02' ORDER BY call_id"
    )
    expected = wf.query(
        stack,
        dataset,
        "SELECT call_id FROM `{dataset}.calls` ORDER BY FARM_FINGERPRINT(call_id)"
        " LIMIT 5",
    )
    first = wf.query(stack, dataset, sample_sql)

    # more calls the next week leave this week's sample as it was
    wf.load(
        stack,
        dataset,
        "calls",
        [call("smp", f"n{i:02d}", at("2026-11-10"), own=own) for i in range(8)],
    )
    later = wf.query(stack, dataset, sample_sql)

    assert len(first) == 5
    assert {r["call_id"] for r in first} == {r["call_id"] for r in expected}
    assert later == first
    next_week = wf.query(
        stack,
        dataset,
        "SELECT COUNT(*) AS n FROM"
        " `{dataset}.call_sample` WHERE week = DATE '2026-11-09'",
    )
    assert next_week == [{"n": 5}]


def _main_rows(stack, site, rows):
    main = f"{wf.PROJECT}.calltrack"
    for table, items in rows.items():
        wf.load(stack, main, table, items)
    return main


def test_a_review_verdict_and_the_target_rule_feed_the_funnel(stack, capsys):
    site = "rev-site"
    own = touch("google", "cpc", "reviewed")
    main = _main_rows(
        stack,
        site,
        {
            "calls": [
                call(site, "rev-1", at("2026-10-05"), own=own, talk_s=50),
                call(site, "rev-2", at("2026-10-05"), own=own, talk_s=25),
            ]
        },
    )

    def targets():
        rows = wf.query(
            stack,
            main,
            "SELECT model, target_calls FROM `{dataset}.funnel` WHERE site_id = @site",
            site=site,
        )
        return {r["model"]: r["target_calls"] for r in rows}

    assert set(targets().values()) == {1.0}  # 50 s counts, 25 s does not

    assert (
        ops_main.main(
            [
                "call-review",
                "--site",
                site,
                "--call",
                "rev-1",
                "--verdict",
                "spam",
                "--reviewer",
                "anna",
            ]
        )
        == 0
    )
    assert set(targets().values()) == {0.0}

    assert ops_main.main(["target-rule", "--site", site, "--min-talk-s", "20"]) == 0
    assert set(targets().values()) == {1.0}  # rev-2 now counts; rev-1 is spam

    assert ops_main.main(["call-sample", "--site", site]) == 0
    out = capsys.readouterr().out
    assert "rev-1" in out and "verdict spam" in out and "2 calls to review" in out

    assert (
        ops_main.main(
            ["call-review", "--site", site, "--call", "nope", "--verdict", "spam"]
        )
        == 2
    )


# -- Looker Studio ----------------------------------------------------------------


def test_the_linking_url_names_every_data_source():
    url = looker.linking_url("my-project-1", "calltrack", template="abc-123")
    parsed = urllib.parse.urlsplit(url)
    params = dict(urllib.parse.parse_qsl(parsed.query))

    assert f"{parsed.scheme}://{parsed.netloc}{parsed.path}" == looker.BASE
    assert params["c.reportId"] == "abc-123"
    for alias, table in looker.SOURCES.items():
        assert params[f"ds.{alias}.connector"] == "bigQuery"
        assert params[f"ds.{alias}.projectId"] == "my-project-1"
        assert params[f"ds.{alias}.datasetId"] == "calltrack"
        assert params[f"ds.{alias}.tableId"] == table
    with pytest.raises(ValueError):
        looker.linking_url("p", "bad dataset&x=1")


def test_every_linked_source_is_a_view_or_table():
    from shared import warehouse

    known = set(warehouse.view_names()) | set(warehouse.table_names())
    assert set(looker.SOURCES.values()) <= known


# -- the HTML report ----------------------------------------------------------------

HOSTILE = '<script>alert("x")</script>'


def test_the_report_escapes_hostile_campaigns_and_adds_up(stack, tmp_path):
    site = "rep-site"
    day = "2026-10-12"
    own = touch("evil", "cpc", HOSTILE)
    _main_rows(
        stack,
        site,
        {
            "sessions": [
                session(
                    site,
                    "rep-s1",
                    "rep-v1",
                    at(day, "10:00"),
                    "evil",
                    "cpc",
                    HOSTILE,
                    exhausted=True,
                )
            ],
            "calls": [
                call(
                    site,
                    "rep-c1",
                    at(day, "10:05"),
                    own=own,
                    visitor="rep-v1",
                    session_id="rep-s1",
                    caller="rh1",
                ),
                call(site, "rep-c2", at(day, "11:00"), kind="default", caller="rh2"),
            ],
            "leads": [lead(site, "rep-c1", "RL1")],
            "deals": [
                deal(
                    site,
                    "RD1",
                    at(day, "15:00"),
                    call_id="rep-c1",
                    won=True,
                    stage="won",
                    revenue=4321.0,
                )
            ],
            "ad_costs": [
                wf.cost(site, day, "google_ads", "evil", "cpc", HOSTILE, "1234.00", 10)
            ],
        },
    )

    path = report.write_report(tmp_path / "r.html", site_id=site)
    text = path.read_text()

    assert HOSTILE not in text and "<script" not in text
    assert html.escape(HOSTILE, quote=True) in text
    for heading in (
        "Funnel per attribution model",
        "Calls and revenue by channel",
        "Costs",
        "Quality on 2026-10-12",
        "Pool and attribution",
    ):
        assert heading in text
    assert "4,321" in text and "1,234" in text
    assert "attributed_share" in text and "BREACH" in text  # 1 of 2 attributed
    assert "default_number" in text and "rep-site" in text


def test_render_escapes_every_value_it_is_given():
    evil = '"><img src=x onerror=alert(1)>'
    funnel = [
        {
            "model": m,
            "source": evil,
            "medium": evil,
            "campaign": evil,
            "sessions": 1,
            "clicks": 1,
            "cost": 1.0,
            "calls": 1.0,
            "target_calls": 1.0,
            "leads": 1.0,
            "won_deals": 1.0,
            "revenue": 1.0,
        }
        for m in report.MODELS
    ]
    quality_rows = [
        {
            "site_id": evil,
            "check_name": evil,
            "source": evil,
            "medium": evil,
            "campaign": evil,
            "value": 1.0,
            "baseline": None,
            "comparison": evil,
            "target": 0.1,
            "breached": True,
        }
    ]
    page = report.render(
        funnel,
        [
            {
                "site_id": evil,
                "sessions": 1,
                "dynamic": 1,
                "exhausted": 0,
                "numbers": 1,
                "holds": 1,
            }
        ],
        [{"reason": evil, "calls": 1, "share": 1.0, "confidence": 1.0}],
        quality_rows,
        evil,
        False,
        evil,
        accuracy=[{evil: evil}],
    )

    assert "<img" not in page and "onerror=alert(1)>" not in page
    assert page.count("&lt;img") >= 10


def test_the_report_shows_the_simulated_accuracy_beside_it(stack, tmp_path):
    rows = [
        {"policy": "product", "pool_x_peak": 1.0, "correct": 0.991},
        {"policy": "naive", "pool_x_peak": 1.0, "correct": "<b>0.8</b>"},
    ]
    (tmp_path / "accuracy.json").write_text(json.dumps({"rows": rows}))

    text = report.write_report(tmp_path / "report.html", site_id="nobody").read_text()

    assert "Simulated accuracy" in text and "0.991" in text
    assert "&lt;b&gt;0.8&lt;/b&gt;" in text and "<b>" not in text
