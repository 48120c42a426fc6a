"""Ad spend from a CSV into ``ad_costs`` (docs/warehouse.md, "Ad costs").

The CSV has a header row; columns (any order, extra columns refused):

    date          YYYY-MM-DD (required)
    platform      google_ads, yandex_direct, meta, vk or another slug (required)
    campaign      the platform's campaign name (required)
    campaign_id   the platform's campaign id
    utm_source    required; utm_medium required; utm_campaign
    impressions   whole number >= 0
    clicks        whole number >= 0
    cost          decimal >= 0, "." as the decimal point (required)
    currency      ISO 4217, three letters (required)

UTM values are stored in the UTM standard's normal form, the form sessions are
stored in, so spend joins the sessions and calls of the same campaign. The
whole file is checked before anything is written: one bad line refuses the
file, with every problem listed. A load replaces earlier loads of the same
(site, platform, date) in the ``ad_costs_latest`` view, so loading a corrected
file again is safe.
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import io
import re
import uuid

from shared import clients, utm, warehouse
from shared.errors import BadRequest, PermanentError, TransientError

REQUIRED = (
    "date",
    "platform",
    "campaign",
    "utm_source",
    "utm_medium",
    "cost",
    "currency",
)
OPTIONAL = ("campaign_id", "utm_campaign", "impressions", "clicks")
_PLATFORM = re.compile(r"^[a-z][a-z0-9_]{1,39}$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_AMOUNT = re.compile(r"^[0-9]{1,29}(\.[0-9]{1,9})?$")
MAX_TEXT = 500
MAX_ROWS = 100_000


def _count(value: str, name: str) -> int | None:
    if value == "":
        return None
    if not value.isdigit():
        raise ValueError(f"{name} must be a whole number >= 0, found {value[:40]!r}")
    return int(value)


def _row(raw: dict, site_id: str, load_id: str, loaded_at: str) -> dict:
    text = {k: (v or "").strip() for k, v in raw.items()}
    for name, value in text.items():
        if len(value) > MAX_TEXT:
            raise ValueError(f"{name} is over {MAX_TEXT} characters")
    missing = [name for name in REQUIRED if not text.get(name)]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")

    try:
        day = dt.date.fromisoformat(text["date"])
    except ValueError:
        msg = f"date must be YYYY-MM-DD, found {text['date'][:40]!r}"
        raise ValueError(msg) from None
    if not _PLATFORM.match(text["platform"]):
        raise ValueError(
            f"platform must be a lower-case slug, found {text['platform'][:40]!r}"
        )
    # BigQuery NUMERIC: 29 digits before the point, 9 after.
    if not _AMOUNT.match(text["cost"]):
        raise ValueError(
            f"cost must be a decimal >= 0 like 1234.56, found {text['cost'][:40]!r}"
        )
    amount = decimal.Decimal(text["cost"])
    currency = text["currency"].upper()
    if not _CURRENCY.match(currency):
        raise ValueError(f"currency must be ISO 4217, found {text['currency'][:40]!r}")

    normal = {
        k: utm.normal_form(text.get(k, "")) or None
        for k in ("utm_source", "utm_medium", "utm_campaign")
    }
    if not normal["utm_source"] or not normal["utm_medium"]:
        raise ValueError("utm_source and utm_medium must keep letters or digits")
    return {
        "load_id": load_id,
        "loaded_at": loaded_at,
        "site_id": site_id,
        "date": day.isoformat(),
        "platform": text["platform"],
        "campaign_id": text.get("campaign_id") or None,
        "campaign": text["campaign"],
        **normal,
        "impressions": _count(text.get("impressions", ""), "impressions"),
        "clicks": _count(text.get("clicks", ""), "clicks"),
        "cost": str(amount),
        "currency": currency,
    }


def parse(
    text: str, site_id: str, now: dt.datetime, load_id: str | None = None
) -> list[dict]:
    """``ad_costs`` rows of a CSV; BadRequest listing every bad line."""
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in reader.fieldnames or []]
    unknown = sorted(set(header) - set(REQUIRED) - set(OPTIONAL))
    absent = [name for name in REQUIRED if name not in header]
    if unknown or absent:
        msg = (
            f"Expected CSV columns {', '.join(REQUIRED)} (and optionally "
            f"{', '.join(OPTIONAL)}); missing {absent or 'none'}, "
            f"unknown {unknown or 'none'}."
        )
        raise BadRequest(msg, code="csv")
    reader.fieldnames = header

    load_id = load_id or uuid.uuid4().hex
    loaded_at = now.astimezone(dt.UTC).isoformat()
    rows, problems = [], []
    for line, raw in enumerate(reader, start=2):
        if None in raw:
            problems.append(f"line {line}: more values than columns")
            continue
        try:
            rows.append(_row(raw, site_id, load_id, loaded_at))
        except ValueError as exc:
            problems.append(f"line {line}: {exc}")
        if len(rows) > MAX_ROWS:
            raise BadRequest(f"Expected at most {MAX_ROWS} rows per file.", code="csv")
    if problems:
        shown = "; ".join(problems[:20])
        more = f" (and {len(problems) - 20} more)" if len(problems) > 20 else ""
        raise BadRequest(
            f"The CSV has bad lines, nothing loaded: {shown}{more}", code="csv"
        )
    if not rows:
        raise BadRequest("The CSV has no rows.", code="csv")
    return rows


def load(rows: list[dict], client=None, dataset: str | None = None) -> int:
    """Write rows with a load job (free, no streaming buffer); returns the count."""
    from google.api_core import exceptions

    client = client or clients.bigquery()
    dataset = dataset or clients.dataset_id()
    body = [warehouse.conform("ad_costs", row) for row in rows]
    try:
        client.load_table_from_json(body, f"{dataset}.ad_costs").result()
    except (exceptions.ServerError, exceptions.TooManyRequests, OSError) as exc:
        raise TransientError(f"BigQuery did not take the costs: {exc}") from exc
    except exceptions.GoogleAPICallError as exc:
        raise PermanentError(f"BigQuery refused the costs: {exc}") from exc
    return len(body)
