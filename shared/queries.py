"""Parameterised BigQuery queries, as the warehouse's readers run them.

``{dataset}`` in the SQL becomes the configured dataset (or the one given), and
each named parameter takes its BigQuery type from its Python value; a list
becomes an array of its items' type. Callers map errors to their own terms.

A module of its own, apart from ``warehouse``: the writers import that one, and
the access check in ``tests/test_infra.py`` grants query jobs to whichever
function's code reaches a query call.
"""

from __future__ import annotations

import datetime as dt

from shared import clients

_TYPES = {
    str: "STRING",
    int: "INT64",
    float: "FLOAT64",
    bool: "BOOL",
    dt.date: "DATE",
    dt.datetime: "TIMESTAMP",
}


def _parameter(name: str, value):
    from google.cloud import bigquery as bq

    if isinstance(value, list):
        kind = _TYPES[type(value[0])] if value else "STRING"
        return bq.ArrayQueryParameter(name, kind, value)
    return bq.ScalarQueryParameter(name, _TYPES[type(value)], value)


def job(sql: str, /, *, client=None, dataset: str | None = None, **params):
    """Start the query; the job, for callers that need more than its rows."""
    from google.cloud import bigquery as bq

    config = bq.QueryJobConfig(
        query_parameters=[_parameter(k, v) for k, v in params.items()]
    )
    sql = sql.replace("{dataset}", dataset or clients.dataset_id())
    return (client or clients.bigquery()).query(sql, job_config=config)


def rows(sql: str, /, *, client=None, dataset: str | None = None, **params):
    """The query's rows as dicts."""
    found = job(sql, client=client, dataset=dataset, **params).result()
    return [dict(row) for row in found]
