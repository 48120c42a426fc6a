"""Daily quality checks: the query, the merge into ``quality_daily``, the alerts.

The checks are one SQL file (``shared/bigquery/queries/quality_daily.sql``,
parameter ``@day``); docs/warehouse.md lists them and their targets. ``run``
merges a day's rows into ``quality_daily`` keyed by (date, site, check,
campaign) and logs one ``quality_breach`` event per breached row, which
Terraform's log-based metric turns into an alert (infra/monitoring.tf).

Idempotent: a rerun for the same day replaces that day's rows (rows of checks
that no longer apply are deleted), so a redelivered tick leaves one row per
check; it only logs its breaches again.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

from shared import clients, queries
from shared.errors import BadRequest, PermanentError, TransientError

logger = logging.getLogger(__name__)

QUERY_PATH = Path(__file__).parent / "bigquery" / "queries" / "quality_daily.sql"
COLUMNS = (
    "date",
    "site_id",
    "check_name",
    "source",
    "medium",
    "campaign",
    "numerator",
    "denominator",
    "value",
    "baseline",
    "comparison",
    "target",
    "breached",
)
_KEY = ("date", "site_id", "check_name")
_SCOPE = ("source", "medium", "campaign")


def _dataset(dataset: str | None) -> str:
    return dataset or clients.dataset_id()


def checks_sql(dataset: str) -> str:
    return QUERY_PATH.read_text().replace("{dataset}", dataset)


def merge_sql(dataset: str) -> str:
    """One MERGE: upsert the day's checks, delete the day's stale ones."""
    on = " AND ".join(
        [f"T.{c} = S.{c}" for c in _KEY]
        + [f"IFNULL(T.{c}, '') = IFNULL(S.{c}, '')" for c in _SCOPE]
    )
    values = [c for c in COLUMNS if c not in _KEY + _SCOPE]
    update = ", ".join(f"{c} = S.{c}" for c in values)
    columns = ", ".join(COLUMNS)
    inserted = ", ".join(f"S.{c}" for c in COLUMNS)
    return (
        f"MERGE `{dataset}.quality_daily` AS T\n"
        f"USING (\n{checks_sql(dataset)}\n) AS S\nON {on}\n"
        f"WHEN MATCHED THEN UPDATE SET {update}, computed_at = CURRENT_TIMESTAMP()\n"
        f"WHEN NOT MATCHED BY TARGET THEN INSERT ({columns}, computed_at)\n"
        f"  VALUES ({inserted}, CURRENT_TIMESTAMP())\n"
        "WHEN NOT MATCHED BY SOURCE AND T.date = @day THEN DELETE"
    )


def _query(client, sql: str, day: dt.date, site_id: str | None = None) -> list[dict]:
    from google.api_core import exceptions

    params = {"day": day} if site_id is None else {"day": day, "site_id": site_id}
    try:
        return queries.rows(sql, client=client, **params)
    except (exceptions.ServerError, exceptions.TooManyRequests, OSError) as exc:
        raise TransientError(f"BigQuery did not run the quality query: {exc}") from exc
    except exceptions.GoogleAPICallError as exc:
        raise PermanentError(f"BigQuery refused the quality query: {exc}") from exc


def evaluate(day: dt.date, dataset: str | None = None, client=None) -> list[dict]:
    """The day's checks as rows, computed now and written nowhere."""
    client = client or clients.bigquery()
    return _query(client, checks_sql(_dataset(dataset)), day)


def stored(
    day: dt.date, dataset: str | None = None, client=None, site_id: str | None = None
) -> list[dict]:
    """The day's rows of ``quality_daily``, breaches first."""
    client = client or clients.bigquery()
    where = "date = @day" + (" AND site_id = @site_id" if site_id else "")
    sql = (
        f"SELECT * FROM `{_dataset(dataset)}.quality_daily` WHERE {where} "
        "ORDER BY breached DESC, site_id, check_name, source, medium, campaign"
    )
    return _query(client, sql, day, site_id)


def run(day: dt.date, dataset: str | None = None, client=None) -> list[dict]:
    """Merge the day's checks into ``quality_daily`` and log each breach.

    Idempotent (see the module docstring). Returns the day's stored rows.
    """
    client = client or clients.bigquery()
    dataset = _dataset(dataset)
    _query(client, merge_sql(dataset), day)

    rows = stored(day, dataset, client)
    for row in rows:
        if row["breached"]:
            log_breach(row)
    logger.info(
        "Quality of %s: %d checks, %d breached",
        day,
        len(rows),
        sum(1 for r in rows if r["breached"]),
        extra={
            "fields": {
                "event": "quality_report",
                "date": day.isoformat(),
                "checks": len(rows),
            }
        },
    )
    return rows


def log_breach(row: dict) -> None:
    """One alert-worthy line per breached check (metric calltrack/quality_breach)."""
    scope = "/".join(str(row[c]) for c in _SCOPE) if row.get("campaign") else "site"
    logger.warning(
        "Quality check %s missed its target on %s for %s (%s): value %s, %s %s",
        row["check_name"],
        row["date"],
        row["site_id"],
        scope,
        row["value"],
        row["comparison"],
        row["target"],
        extra={
            "fields": {
                "event": "quality_breach",
                "site_id": row["site_id"],
                "check": row["check_name"],
                "date": str(row["date"]),
                "source": row.get("source"),
                "medium": row.get("medium"),
                "campaign": row.get("campaign"),
                "value": row["value"],
                "baseline": row.get("baseline"),
                "comparison": row["comparison"],
                "target": row["target"],
            }
        },
    )


def day_of_tick(body: dict, published_at: str | dt.datetime | None) -> dt.date:
    """The day a tick asks for: ``body["day"]`` when given (a backfill),
    else the day before the message was published, so a redelivery of the
    same tick checks the same day."""
    if body.get("day") is not None:
        try:
            return dt.date.fromisoformat(str(body["day"]))
        except ValueError:
            msg = f"Expected day as YYYY-MM-DD, found {str(body['day'])[:40]!r}."
            raise BadRequest(msg, code="field") from None

    if isinstance(published_at, str) and published_at:
        published_at = dt.datetime.fromisoformat(published_at.replace("Z", "+00:00"))
    if not isinstance(published_at, dt.datetime):
        published_at = dt.datetime.now(dt.UTC)
    if published_at.tzinfo is None:
        published_at = published_at.replace(tzinfo=dt.UTC)
    return published_at.astimezone(dt.UTC).date() - dt.timedelta(days=1)
