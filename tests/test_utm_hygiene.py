"""The UTM hygiene views over the sessions table, in the BigQuery emulator.

Visits go through assign (normalisation on the real path), record_sessions
streams their rows, and the views are created from the same SQL files that
Terraform deploys (``{dataset}`` replaced by the dataset).
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
from pathlib import Path

import pytest

from devstack.stack import DATASET, PROJECT
from shared import utm, warehouse
from tests.conftest import numbers, wait_for

ROOT = Path(__file__).resolve().parent.parent
VIEWS = ("utm_hygiene", "utm_offenders", "utm_campaign_findings")
SITE = "utmhygiene"
# Codes only a whole link can have; the stored touch never carries them.
LINK_CODES = {
    "url_invalid",
    "missing",
    "parameter_case",
    "duplicate",
    "unknown_parameter",
    "macro_encoded",
    "replaced",
}
_ids = itertools.count(1)


def view_sql(name: str) -> str:
    return (warehouse.VIEWS_DIR / f"{name}.sql").read_text()


@pytest.fixture(scope="module")
def views(stack):
    """The views as Terraform makes them: the file's SQL over the dataset."""
    client = stack.bigquery()
    for name in VIEWS:
        sql = view_sql(name).replace("{dataset}", f"{PROJECT}.{DATASET}")
        client.query(
            f"CREATE OR REPLACE VIEW `{PROJECT}.{DATASET}.{name}` AS\n{sql}"
        ).result()
    return VIEWS


def visit(touch: dict) -> dict:
    n = next(_ids)
    return {
        "visitor_id": f"hygiene-visitor-{n:04d}",
        "session_id": f"hygiene-session-{n:04d}",
        "page_url": "https://shop.example.test/",
        "first_touch": touch,
        "last_touch": touch,
    }


CLEAN = {
    "utm_source": "google",
    "utm_medium": "cpc",
    "utm_campaign": "kitchen_msk_leads_202511",
}
VISITS = [
    CLEAN,
    CLEAN,
    # Fixed by normalising: rewritten.
    dict(CLEAN, utm_source="Google", utm_medium="CPC"),
    # Rewritten, and still no campaign of the standard's shape: unresolved.
    dict(CLEAN, utm_source="Google", utm_campaign="Кухни Москва"),
    # Stored as it came, but not the standard's shape: unresolved only.
    dict(CLEAN, utm_campaign="summer"),
    # An alias: rewritten to the standard value.
    {
        "utm_source": "yandex",
        "utm_medium": "ppc",
        "utm_campaign": "kitchen_spb_calls_202511",
    },
    # Organic: no UTM, not tagged.
    {
        "referrer": "https://www.google.com/",
        "landing_page": "https://shop.example.test/",
    },
]


@pytest.fixture(scope="module")
def sessions(stack, views):
    """Seven visits through assign, waited for in BigQuery."""
    from shared import pool_admin
    from tests.conftest import DEFAULT_NUMBER, ORIGIN, Client

    stack.reset_firestore()
    pool_admin.put_site(
        stack.firestore(),
        {
            "site_id": SITE,
            "allowed_origins": [ORIGIN],
            "default_number": DEFAULT_NUMBER,
        },
    )
    pool_admin.import_numbers(
        stack.firestore(), SITE, [{"number": n} for n in numbers(8, start=7000)]
    )
    client = Client(stack.urls["assign"])
    for touch in VISITS:
        resp = client.call("POST", f"/?site={SITE}", visit(touch))
        assert resp.status == 200, resp.body

    wait_for(
        lambda: (
            stack.query(
                f"select count(*) as n from `{{dataset}}.sessions` "
                f"where site_id = '{SITE}'"
            )[0]["n"]
            == len(VISITS)
        )
    )
    return dt.datetime.now(dt.UTC).date()


def test_hygiene_counts_non_conforming_sessions_per_source(stack, sessions):
    rows = stack.query(
        "select * except (site_id) from `{dataset}.utm_hygiene` "
        f"where site_id = '{SITE}' order by source"
    )

    assert rows == [
        {
            "day": sessions,
            "source": "google",
            "sessions": 6,
            "tagged_sessions": 5,
            "nonconforming_sessions": 3,
            "rewritten_sessions": 2,
            "unresolved_sessions": 2,
            "nonconforming_share": 0.6,
        },
        {
            "day": sessions,
            "source": "yandex",
            "sessions": 1,
            "tagged_sessions": 1,
            "nonconforming_sessions": 1,
            "rewritten_sessions": 1,
            "unresolved_sessions": 0,
            "nonconforming_share": 1.0,
        },
    ]


def test_offenders_rank_the_raw_values_that_were_rewritten(stack, sessions):
    rows = stack.query(
        "select field, raw_value, stored_value, sessions, offender_rank, month "
        f"from `{{dataset}}.utm_offenders` where site_id = '{SITE}' "
        "order by field, offender_rank"
    )

    month = sessions.replace(day=1)
    assert [{**r, "month": r["month"] == month} for r in rows] == [
        {
            "field": field,
            "raw_value": raw,
            "stored_value": stored,
            "sessions": count,
            "offender_rank": rank,
            "month": True,
        }
        for field, raw, stored, count, rank in [
            ("utm_campaign", "Кухни Москва", "kukhni_moskva", 1, 1),
            ("utm_medium", "CPC", "cpc", 1, 1),
            ("utm_medium", "ppc", "cpc", 1, 2),
            ("utm_source", "Google", "google", 2, 1),
        ]
    ]


def test_findings_are_counted_per_campaign_and_code(stack, sessions):
    rows = stack.query(
        "select source, medium, campaign, code, sessions "
        f"from `{{dataset}}.utm_campaign_findings` where site_id = '{SITE}' "
        "order by source, campaign, code"
    )

    assert [tuple(r.values()) for r in rows] == [
        ("google", "cpc", "kitchen_msk_leads_202511", "not_lowercase", 1),
        ("google", "cpc", "kukhni_moskva", "campaign_format", 1),
        ("google", "cpc", "kukhni_moskva", "non_latin", 1),
        ("google", "cpc", "kukhni_moskva", "not_lowercase", 1),
        ("google", "cpc", "kukhni_moskva", "whitespace", 1),
        ("google", "cpc", "summer", "campaign_format", 1),
        ("yandex", "cpc", "kitchen_spb_calls_202511", "alias", 1),
    ]


def test_unresolved_means_every_value_finding_normalising_cannot_fix():
    """The view's list of codes follows the library: a new finding code must
    be sorted into fixed or unresolved, here and in docs/utm.md."""
    docs = (ROOT / "docs" / "utm.md").read_text(encoding="utf-8")
    table = docs.split("## Findings")[1].split("## The dictionary")[0]
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", table, re.MULTILINE))
    in_sql = view_sql("utm_hygiene").split("WHERE code IN (")[1].split(")")[0]

    listed = set(re.findall(r"'([a-z_]+)'", in_sql))

    assert utm.FIXED_BY_NORMALISING <= documented
    assert listed == documented - LINK_CODES - utm.FIXED_BY_NORMALISING


def test_every_view_reads_only_the_dataset_placeholder():
    """Terraform and the tests replace {dataset}; a hard-coded project or
    dataset would point production at the wrong place."""
    for name in VIEWS:
        tables = re.findall(r"`([^`]+)`", view_sql(name))

        assert tables and all(t.startswith("{dataset}.") for t in tables), name
        assert all(t.split(".", 1)[1] in warehouse.table_names() for t in tables)
