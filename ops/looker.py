"""Operator command ``looker-url``: a Looker Studio Linking API URL.

``python -m ops looker-url --project P --dataset D [--template REPORT_ID]``
prints a ``https://lookerstudio.google.com/reporting/create?...`` URL that
creates a report with one BigQuery data source per view the product's charts
use (docs/looker-studio.md). With ``--template`` the report copies that
template, whose data sources must carry the aliases below; without it Looker
Studio opens a new report with the data sources added.
"""

from __future__ import annotations

import re
import urllib.parse

# Data source alias -> the view (or table) it reads, in chart order.
SOURCES = {
    "funnel": "funnel",
    "calls": "calls_by_model",
    "costs": "ad_costs_latest",
    "quality": "quality_daily",
    "sample": "call_sample",
}
BASE = "https://lookerstudio.google.com/reporting/create"
_PROJECT = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$|^[a-z0-9.:-]{6,100}$")
_DATASET = re.compile(r"^[A-Za-z0-9_]{1,1024}$")


def linking_url(
    project: str, dataset: str, template: str | None = None, name: str = "Call tracking"
) -> str:
    if not _PROJECT.match(project or ""):
        raise ValueError(f"Expected a Google Cloud project id, found {project!r}.")
    if not _DATASET.match(dataset or ""):
        raise ValueError(f"Expected a BigQuery dataset id, found {dataset!r}.")

    params = [("r.reportName", name)]
    if template:
        params.insert(0, ("c.reportId", template))
    for alias, table in SOURCES.items():
        prefix = f"ds.{alias}"
        params += [
            (f"{prefix}.connector", "bigQuery"),
            (f"{prefix}.type", "TABLE"),
            (f"{prefix}.projectId", project),
            (f"{prefix}.datasetId", dataset),
            (f"{prefix}.tableId", table),
            (f"{prefix}.datasourceName", f"{name}: {table}"),
        ]
    return f"{BASE}?{urllib.parse.urlencode(params, quote_via=urllib.parse.quote)}"


def _run(args) -> int:
    try:
        print(linking_url(args.project, args.dataset, args.template, args.name))
    except ValueError as exc:
        print(f"error: {exc}")
        return 2
    return 0


def register(sub) -> None:
    cmd = sub.add_parser(
        "looker-url", help="print the Looker Studio Linking API URL of the report"
    )
    cmd.add_argument("--project", required=True, help="Google Cloud project id")
    cmd.add_argument("--dataset", default="calltrack", help="BigQuery dataset id")
    cmd.add_argument("--template", help="template report id to copy (optional)")
    cmd.add_argument("--name", default="Call tracking", help="report name")
    cmd.set_defaults(func=_run)
