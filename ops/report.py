"""Operator command ``report``: a self-contained HTML report from the warehouse.

``python -m ops report --out out/report.html [--site S]`` reads the BigQuery
views (the emulator's under ``make demo``) and writes one HTML file with no
external resources: the funnel per attribution model side by side, a chart of
calls and revenue by channel, costs per campaign (cost per call, per lead,
ROAS), the quality checks of the latest day, and the pool and attribution
figures. Every value is HTML-escaped: UTM strings come from visitors' links
and may be hostile. ``write_report`` is the same as a function (devstack/demo.py
calls it).
"""

from __future__ import annotations

import datetime as dt
import html
import json
from pathlib import Path

from shared import clients, quality, queries

MODELS = ("first_touch", "last_touch", "last_non_direct", "position_based")
MODEL_NAMES = {
    "first_touch": "First touch",
    "last_touch": "Last touch",
    "last_non_direct": "Last non-direct",
    "position_based": "Position 40/20/40",
}
CHART_MODEL = "last_non_direct"
STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:8px 0}td,th{padding:3px 8px;
border:1px solid #ddd;text-align:right}td.k,th.k{text-align:left}
th{background:#f4f4f4}tr.total td{font-weight:bold}.bad{color:#b00020;
font-weight:bold}.ok{color:#1b7f3b}.note{color:#666;font-size:12px}
"""


def esc(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        # Whole numbers (most counts) without decimals; shares (accuracy to
        # a tenth of a percent) with three; other fractions with two.
        if value.is_integer():
            value = f"{value:,.0f}"
        else:
            value = f"{value:.3f}" if abs(value) < 1 else f"{value:,.2f}"
    elif isinstance(value, int) and not isinstance(value, bool):
        value = f"{value:,}"
    return html.escape(str(value), quote=True)


def _query(sql: str, site_id: str | None, **params) -> list[dict]:
    sql = sql.replace("{site}", "(@site = '' OR site_id = @site)")
    return queries.rows(sql, site=site_id or "", **params)


def _table(
    head: list[str], rows: list[list], *, keys: int = 1, total: list | None = None
) -> str:
    def cells(row, tag):
        return "".join(
            f"<{tag}{' class=k' if i < keys else ''}>{esc(v)}</{tag}>"
            for i, v in enumerate(row)
        )

    body = "".join(f"<tr>{cells(r, 'td')}</tr>" for r in rows)
    if total:
        body += f"<tr class=total>{cells(total, 'td')}</tr>"
    return f"<table><tr>{cells(head, 'th')}</tr>{body}</table>"


def funnel_section(rows: list[dict]) -> str:
    """Funnel rows summed over days (keyed by model and campaign): the totals
    per model, then calls and revenue per campaign with the models side by
    side."""
    measures = ("calls", "target_calls", "leads", "won_deals", "revenue")
    keys = sorted({(r["source"], r["medium"], r["campaign"]) for r in rows})
    by = {(r["model"], r["source"], r["medium"], r["campaign"]): r for r in rows}

    totals = [
        [name.replace("_", " ")]
        + [sum(float(r[name] or 0) for r in rows if r["model"] == m) for m in MODELS]
        for name in measures
    ]
    head = ["measure"] + [MODEL_NAMES[m] for m in MODELS]

    shared = {k: by.get((MODELS[0], *k)) or {} for k in keys}
    side_head = ["source", "medium", "campaign", "sessions", "cost"] + [
        f"{MODEL_NAMES[m]}: {name}" for m in MODELS for name in ("calls", "revenue")
    ]
    side = []
    for key in keys:
        credited = [by.get((m, *key)) or {} for m in MODELS]
        if not any(r.get("calls") for r in credited) and not (
            shared[key].get("sessions") or shared[key].get("cost")
        ):
            continue
        line = [*key, shared[key].get("sessions", 0), shared[key].get("cost", 0.0)]
        for r in credited:
            line += [float(r.get("calls") or 0), float(r.get("revenue") or 0)]
        side.append(line)
    side.sort(key=lambda line: -max(line[5::2]))
    return (
        "<h2>Funnel per attribution model</h2>"
        "<p class=note>Every model credits the same calls, so each adds up to the "
        "same totals. Position-based splits a call 40/20/40 over the visitor's "
        "sessions; last non-direct credits a direct return to the channel that "
        "brought the visitor.</p>"
        + _table(head, totals)
        + _table(side_head, side, keys=3)
    )


def chart_section(rows: list[dict]) -> str:
    """Inline SVG: calls and revenue per channel (source / medium)."""
    channels: dict[str, list[float]] = {}
    for r in rows:
        if r["model"] != CHART_MODEL:
            continue
        pair = channels.setdefault(f"{r['source']} / {r['medium']}", [0.0, 0.0])
        pair[0] += float(r["calls"] or 0)
        pair[1] += float(r["revenue"] or 0)
    items = sorted(channels.items(), key=lambda kv: -kv[1][0])[:15]
    if not items:
        return "<h2>Calls and revenue by channel</h2><p>No calls yet.</p>"

    top_calls = max(v[0] for _, v in items) or 1
    top_revenue = max(v[1] for _, v in items) or 1
    width, label, bar = 760, 220, 250
    parts = []
    for i, (name, (calls, revenue)) in enumerate(items):
        y = 10 + i * 34
        cw = calls / top_calls * bar
        rw = revenue / top_revenue * bar
        parts.append(
            f'<text x="0" y="{y + 17}" font-size="12">{esc(name)}</text>'
            f'<rect x="{label}" y="{y}" width="{cw:.1f}" height="12" fill="#3b6fb6"/>'
            f'<text x="{label + cw + 4:.1f}" y="{y + 10}" font-size="11">'
            f"{esc(calls)} calls</text>"
            f'<rect x="{label}" y="{y + 14}" width="{rw:.1f}" height="12" '
            f'fill="#e39c2d"/><text x="{label + rw + 4:.1f}" y="{y + 24}" '
            f'font-size="11">{esc(revenue)} revenue</text>'
        )
    height = 20 + len(items) * 34
    return (
        f"<h2>Calls and revenue by channel ({esc(MODEL_NAMES[CHART_MODEL])})</h2>"
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" role="img">{"".join(parts)}</svg>'
    )


def costs_section(rows: list[dict]) -> str:
    head = [
        "source",
        "medium",
        "campaign",
        "clicks",
        "cost",
        "calls",
        "target calls",
        "leads",
        "revenue",
        "cost per call",
        "cost per lead",
        "ROAS",
    ]
    table = []
    for r in rows:
        if r["model"] != CHART_MODEL or not (r["cost"] or r["calls"]):
            continue
        cost, calls, leads = (
            float(r["cost"] or 0),
            float(r["calls"] or 0),
            float(r["leads"] or 0),
        )
        revenue = float(r["revenue"] or 0)
        table.append(
            [
                r["source"],
                r["medium"],
                r["campaign"],
                r["clicks"],
                cost,
                calls,
                r["target_calls"],
                leads,
                revenue,
                cost / calls if calls else None,
                cost / leads if leads else None,
                revenue / cost if cost else None,
            ]
        )
    table.sort(key=lambda line: -line[4])
    return (
        f"<h2>Costs ({esc(MODEL_NAMES[CHART_MODEL])})</h2>"
        "<p class=note>Spend from ad_costs (python -m ops costs-load); an empty "
        "ratio means there is nothing to divide by.</p>" + _table(head, table, keys=3)
    )


def quality_section(rows: list[dict], day, stored: bool) -> str:
    head = [
        "site",
        "check",
        "campaign",
        "value",
        "baseline",
        "rule",
        "target",
        "status",
    ]
    table = [
        [
            r["site_id"],
            r["check_name"],
            f"{r['source']} / {r['medium']} / {r['campaign']}"
            if r.get("campaign")
            else "(site)",
            r["value"],
            r["baseline"],
            r["comparison"],
            r["target"],
            "BREACH" if r["breached"] else "ok",
        ]
        for r in sorted(
            rows, key=lambda r: (not r["breached"], r["site_id"], r["check_name"])
        )
    ]
    html_table = (
        _table(head, table, keys=3)
        .replace("<td>BREACH</td>", "<td class=bad>BREACH</td>")
        .replace("<td>ok</td>", "<td class=ok>ok</td>")
    )
    origin = "stored by quality_report" if stored else "computed now, not stored"
    return (
        f"<h2>Quality on {esc(day)}</h2><p class=note>{esc(origin)}; "
        "targets in docs/warehouse.md.</p>" + html_table
    )


def pool_section(
    pool: list[dict], reasons: list[dict], accuracy: list[dict] | None
) -> str:
    out = ["<h2>Pool and attribution</h2>"]
    out.append(
        _table(
            [
                "site",
                "sessions",
                "dynamic-number sessions",
                "overflow sessions",
                "numbers used",
                "holds",
            ],
            [
                [
                    r["site_id"],
                    r["sessions"],
                    r["dynamic"],
                    r["exhausted"],
                    r["numbers"],
                    r["holds"],
                ]
                for r in pool
            ],
        )
    )
    out.append(
        _table(
            ["reason", "calls", "share", "mean confidence"],
            [[r["reason"], r["calls"], r["share"], r["confidence"]] for r in reasons],
        )
    )
    if accuracy:
        head = list(accuracy[0])
        out.append("<h3>Simulated accuracy</h3>")
        out.append(_table(head, [[r.get(k) for k in head] for r in accuracy]))
    return "".join(out)


FUNNEL_SQL = """
SELECT model, source, medium, campaign, SUM(sessions) AS sessions,
  SUM(clicks) AS clicks, SUM(cost) AS cost, SUM(calls) AS calls,
  SUM(target_calls) AS target_calls, SUM(leads) AS leads,
  SUM(won_deals) AS won_deals, SUM(revenue) AS revenue
FROM `{dataset}.funnel` WHERE {site}
GROUP BY 1, 2, 3, 4
"""
POOL_SQL = """
WITH s AS (
  SELECT site_id, COUNT(*) AS sessions, COUNTIF(number_kind = 'dynamic') AS dynamic,
    COUNTIF(IFNULL(pool_exhausted, FALSE)) AS exhausted
  FROM `{dataset}.sessions` WHERE {site} GROUP BY site_id
), h AS (
  SELECT site_id, COUNT(DISTINCT number) AS numbers, COUNT(DISTINCT hold_id) AS holds
  FROM `{dataset}.number_holds` WHERE {site} GROUP BY site_id
)
SELECT s.*, IFNULL(h.numbers, 0) AS numbers, IFNULL(h.holds, 0) AS holds
FROM s LEFT JOIN h ON h.site_id = s.site_id ORDER BY s.site_id
"""
REASONS_SQL = """
SELECT reason, COUNT(*) AS calls,
  COUNT(*) / SUM(COUNT(*)) OVER () AS share, AVG(confidence) AS confidence
FROM `{dataset}.calls_latest` WHERE {site}
GROUP BY reason ORDER BY calls DESC
"""
LATEST_SQL = """
SELECT MAX(date) AS day, 'stored' AS kind FROM `{dataset}.quality_daily`
WHERE {site}
UNION ALL
SELECT MAX(call_date), 'calls' FROM `{dataset}.calls_latest` WHERE {site}
"""


def _quality(site_id: str | None) -> tuple[list[dict], object, bool]:
    latest = {r["kind"]: r["day"] for r in _query(LATEST_SQL, site_id)}
    day = latest.get("stored") or latest.get("calls")
    if day is None:
        return [], None, False
    stored = latest.get("stored") is not None
    rows = quality.stored(day, site_id=site_id) if stored else quality.evaluate(day)
    return [r for r in rows if not site_id or r["site_id"] == site_id], day, stored


def render(
    funnel: list[dict],
    pool: list[dict],
    reasons: list[dict],
    quality_rows: list[dict],
    quality_day,
    quality_stored: bool,
    site_id: str | None,
    accuracy: list[dict] | None = None,
    now: dt.datetime | None = None,
) -> str:
    """The whole page; pure, so tests can feed it hostile values."""
    now = now or dt.datetime.now(dt.UTC)
    scope = f"site {site_id}" if site_id else "all sites"
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>Call tracking report: {esc(scope)}</title>"
        f"<style>{STYLE}</style></head><body>"
        f"<h1>Call tracking report: {esc(scope)}</h1>"
        f"<p class=note>Generated {esc(now.strftime('%Y-%m-%d %H:%M UTC'))} from "
        f"BigQuery {esc(clients.table_id('x').rsplit('.', 1)[0])}.</p>"
        + funnel_section(funnel)
        + chart_section(funnel)
        + costs_section(funnel)
        + (
            quality_section(quality_rows, quality_day, quality_stored)
            if quality_day
            else "<h2>Quality</h2><p>No calls yet.</p>"
        )
        + pool_section(pool, reasons, accuracy)
        + "</body></html>\n"
    )


def write_report(
    out_path, site_id: str | None = None, accuracy: list[dict] | None = None
) -> Path:
    """Query the warehouse and write the HTML report; returns its path.

    ``accuracy``: rows (dicts with the same keys) of the simulator's accuracy
    figures, shown in the pool section; by default the ``rows`` of an
    ``accuracy.json`` beside the report (``python -m ops accuracy-report``).
    """
    out = Path(out_path)
    if accuracy is None:
        accuracy = _accuracy_beside(out)
    print(
        f"[report] reading the funnel from BigQuery {clients.table_id('funnel')}",
        flush=True,
    )
    funnel = _query(FUNNEL_SQL, site_id)
    print("[report] reading pool, attribution and quality figures", flush=True)
    pool = _query(POOL_SQL, site_id)
    reasons = _query(REASONS_SQL, site_id)
    quality_rows, day, stored = _quality(site_id)

    page = render(funnel, pool, reasons, quality_rows, day, stored, site_id, accuracy)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    print(f"[report] wrote {out.resolve()}", flush=True)
    return out


def _accuracy_beside(out: Path) -> list[dict] | None:
    path = out.parent / "accuracy.json"
    try:
        rows = json.loads(path.read_text()).get("rows")
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        return None
    print(f"[report] adding the simulated accuracy from {path}", flush=True)
    return rows or None


def _run(args) -> int:
    write_report(args.out, args.site)
    return 0


def register(sub) -> None:
    cmd = sub.add_parser("report", help="write the HTML report from the warehouse")
    cmd.add_argument("--out", default="out/report.html", help="the HTML file")
    cmd.add_argument("--site", help="only this site (default: every site)")
    cmd.set_defaults(func=_run)
