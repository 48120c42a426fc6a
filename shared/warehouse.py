"""BigQuery tables as code: one JSON file per table under ``shared/bigquery``.

The same files create the tables in Terraform, in the local stack and in tests,
and check the rows the code writes. A file holds the table's description, its
day partitioning (column and, for personal data, expiry), clustering and fields.
"""

from __future__ import annotations

import functools
import json
import logging
from pathlib import Path

from shared import clients
from shared.errors import PermanentError, TransientError

logger = logging.getLogger(__name__)

TABLES_DIR = Path(__file__).parent / "bigquery" / "tables"
VIEWS_DIR = Path(__file__).parent / "bigquery" / "views"


@functools.cache
def spec(table: str) -> dict:
    path = TABLES_DIR / f"{table}.json"
    if not path.exists():
        raise PermanentError(f"Expected a schema file for table {table!r} at {path}.")
    return json.loads(path.read_text())


def table_names() -> list[str]:
    return sorted(p.stem for p in TABLES_DIR.glob("*.json"))


def _schema_fields(fields: list[dict]):
    from google.cloud import bigquery as bq

    return [
        bq.SchemaField(
            f["name"],
            f["type"],
            mode=f.get("mode", "NULLABLE"),
            description=f.get("description"),
            fields=_schema_fields(f.get("fields", [])),
        )
        for f in fields
    ]


def ensure_tables(client=None, dataset: str | None = None) -> list[str]:
    """Create the dataset and every table that is missing (local stack, ops)."""
    from google.cloud import bigquery as bq

    client = client or clients.bigquery()
    dataset = dataset or clients.dataset_id()
    client.create_dataset(dataset, exists_ok=True)

    created = []
    for name in table_names():
        table_spec = spec(name)
        table = bq.Table(
            f"{dataset}.{name}", schema=_schema_fields(table_spec["fields"])
        )
        table.description = table_spec["description"]
        part = table_spec.get("partitioning")
        if part:
            days = part.get("expiration_days")
            table.time_partitioning = bq.TimePartitioning(
                type_=bq.TimePartitioningType.DAY,
                field=part["field"],
                expiration_ms=days * 86_400_000 if days else None,
            )
        if table_spec.get("clustering"):
            table.clustering_fields = table_spec["clustering"]
        client.create_table(table, exists_ok=True)
        created.append(name)
    return created


def view_names() -> list[str]:
    return sorted(p.stem for p in VIEWS_DIR.glob("*.sql"))


def view_sql(name: str, dataset: str) -> str:
    """A view's SQL with ``{dataset}`` replaced, as Terraform deploys it."""
    return (VIEWS_DIR / f"{name}.sql").read_text().replace("{dataset}", dataset)


def _view_order(names: list[str]) -> list[str]:
    """Views ordered so that a view comes after the views it reads."""
    texts = {name: (VIEWS_DIR / f"{name}.sql").read_text() for name in names}
    reads = {
        name: {o for o in names if o != name and f"{{dataset}}.{o}`" in text}
        for name, text in texts.items()
    }
    ordered: list[str] = []
    while len(ordered) < len(names):
        ready = [n for n in names if n not in ordered and reads[n] <= set(ordered)]
        if not ready:
            raise PermanentError(f"Expected views without cycles, found {reads}.")
        ordered += ready
    return ordered


def ensure_views(client=None, dataset: str | None = None) -> list[str]:
    """Create or replace every view of ``shared/bigquery/views`` (local stack,
    tests, ops); Terraform deploys the same files in the cloud. Idempotent."""
    from google.api_core import exceptions
    from google.cloud import bigquery as bq

    client = client or clients.bigquery()
    dataset = dataset or clients.dataset_id()
    names = _view_order(view_names())
    for name in names:
        # The table API, not DDL: the writers' access check (tests/test_infra.py)
        # counts a query call in this module as a need for query jobs.
        view = bq.Table(f"{dataset}.{name}")
        view.view_query = view_sql(name, dataset)
        try:
            client.create_table(view)
        except exceptions.Conflict:
            client.update_table(view, ["view_query"])
    return names


def conform(table: str, row: dict) -> dict:
    """Keep the row's known columns; raise PermanentError on an unknown one.

    An unknown column is a bug in the writer, and retrying would not fix it.
    """
    names = {f["name"] for f in spec(table)["fields"]}
    unknown = sorted(set(row) - names - {"row_id"})
    if unknown:
        msg = f"Expected only columns of {table}, found unknown {', '.join(unknown)}."
        raise PermanentError(msg)
    return {k: v for k, v in row.items() if k in names}


def insert_rows(table: str, rows: list[dict]) -> None:
    """Stream rows into a table, deduplicated by each row's ``row_id``.

    At least once: a repeat of the same rows carries the same insert ids, which
    BigQuery uses to drop the duplicate.
    """
    if not rows:
        return
    from google.api_core import exceptions

    body = [conform(table, row) for row in rows]
    row_ids = [row["row_id"] for row in rows]
    try:
        errors = clients.bigquery().insert_rows_json(
            clients.table_id(table), body, row_ids=row_ids
        )
    except (exceptions.ServerError, exceptions.TooManyRequests, OSError) as exc:
        raise TransientError(f"BigQuery did not take rows for {table}: {exc}") from exc
    except exceptions.GoogleAPICallError as exc:
        raise PermanentError(f"BigQuery refused rows for {table}: {exc}") from exc
    if errors:
        raise PermanentError(f"BigQuery refused rows for {table}: {errors!r:.500}")
