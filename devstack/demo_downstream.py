"""The demo's money side: leads, won deals, ad costs, quality and a dry run.

After the live replay every stitched call has reached the CRM fake (Bitrix24)
through the real ``crm_lead``. This step then plays the people around the
product, each through the product's own entry points:

1. the sales team converts every other lead into a deal and wins it; the
   fake Bitrix24 tells ``crm_webhook`` (``ONCRMDEALUPDATE``), which appends
   the stage and revenue to ``deals``;
2. the analyst loads the day's ad spend, made from the paid sessions in
   BigQuery at a fixed cost per click, with ``ops costs-load``;
3. the daily quality checks run for today (``ops quality``);
4. the export operator prints what ``export_conversions`` would send to
   Google Ads, Yandex Metrica, Meta and VK Ads (``ops exports dry-run``).
"""

from __future__ import annotations

import collections
import contextlib
import csv
import datetime as dt
import io
import json
import time
from pathlib import Path

from devstack.stack import Stack

SITE = "demo"
# Cost per click by platform, RUB: round figures of the right order.
CPC = {"google": ("google_ads", 42.0), "yandex": ("yandex_direct", 35.0),
       "meta": ("meta", 18.0)}
DEAL_BASE_RUB = 30_000
DEAL_STEP_RUB = 7_500
WAIT_S = 90


def site_extra() -> dict:
    """What the demo site adds to its document: its CRM and its exports."""
    from tests.fakes import crm as fake_crm

    return {
        "crm": fake_crm.site_crm("crm-bitrix"),
        "exports": {
            "values": {"qualified_call": 1500, "lead": 3000},
            "google": {"api": "data_manager", "customer_id": "1234567890",
                       "actions": {"qualified_call": "901", "lead": "903",
                                   "deal": "902"}},
            "yandex": {"counter_id": "4455", "calls": ["call"],
                       "goals": {"deal": "deal_won"}},
            "meta": {"pixel_id": "778899",
                     "events": {"qualified_call": "Contact", "deal": "Purchase"}},
            "vk": {"pixel_id": "3344", "goals": {"deal": "purchase"}},
        },
    }


def _ops(*argv: str) -> tuple[int, str]:
    from ops.__main__ import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(argv))
    return code, out.getvalue()


def _wait(fetch, done=bool):
    """``fetch()`` each second until ``done`` of it holds or WAIT_S pass.

    Returns the last value either way: a demo that times out still reports
    what did arrive.
    """
    deadline = time.monotonic() + WAIT_S
    while True:
        value = fetch()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(1)


def _leads(stack: Stack, calls: int, say) -> list[dict]:
    """The leads the calls created; a repeat caller's call notes its lead."""
    query = (
        "select call_id, crm_lead_id, action from `{dataset}.leads` "
        f"where site_id = '{SITE}' order by call_id"
    )
    rows = _wait(lambda: stack.query(query), lambda rows: len(rows) >= calls)
    created = [r for r in rows if r["action"] == "created"]
    say(f"  CRM (fake Bitrix24): {len(rows)} of {calls} stitched calls sent, "
        f"{len(created)} new leads, {len(rows) - len(created)} noted on a "
        "repeat caller's open lead")
    return created


def _win_deals(stack: Stack, leads: list[dict], say) -> dict:
    from tests.conftest import Client
    from tests.fakes import crm as fake_crm

    crm = fake_crm.SERVER
    client = Client(stack.urls["crm_webhook"], origin=None)
    won, revenue = 0, 0
    for i, lead in enumerate(leads[::2]):
        amount = DEAL_BASE_RUB + DEAL_STEP_RUB * i
        deal_id = crm.bitrix_convert(int(lead["crm_lead_id"]), "EXECUTING", "P",
                                     str(amount))
        crm.bitrix_move(deal_id, "WON", "S", str(amount))
        resp = client.call("POST", f"/bitrix24/{SITE}",
                           raw=crm.bitrix_webhook(deal_id),
                           content_type="application/x-www-form-urlencoded")
        if resp.status == 200:
            won, revenue = won + 1, revenue + amount
    query = (f"select count(distinct crm_deal_id) as n from `{{dataset}}.deals` "
             f"where site_id = '{SITE}' and won")
    _wait(lambda: stack.query(query)[0]["n"] >= won)
    say(f"  sales won {won} deals worth {revenue:,} RUB; crm_webhook wrote them "
        "to deals")
    return {"deals_won": won, "revenue": revenue}


def _costs(stack: Stack, out: Path, day: dt.date, say) -> dict:
    rows = stack.query(
        "select source, medium, campaign, count(*) as sessions "
        f"from `{{dataset}}.sessions` where site_id = '{SITE}' "
        "and medium in ('cpc', 'paid_social') group by 1, 2, 3 order by 1, 2, 3"
    )
    path = out / "ad-costs.csv"
    spend = collections.Counter()
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["date", "platform", "campaign", "campaign_id", "utm_source",
                         "utm_medium", "utm_campaign", "impressions", "clicks",
                         "cost", "currency"])
        for row in rows:
            if row["source"] not in CPC:
                continue
            platform, cpc = CPC[row["source"]]
            # Some clicks never load the page: 10% more clicks than sessions.
            clicks = round(row["sessions"] * 1.1)
            cost = round(clicks * cpc, 2)
            spend[platform] += cost
            name = row["campaign"] or f"{row['source']} {row['medium']}"
            writer.writerow([day.isoformat(), platform, name, "",
                             row["source"], row["medium"], row["campaign"] or "",
                             clicks * 20, clicks, f"{cost:.2f}", "RUB"])
    code, text = _ops("costs-load", "--site", SITE, str(path))
    say(f"  ad costs loaded with ops costs-load (exit {code}): "
        + ", ".join(f"{p} {c:,.0f} RUB" for p, c in sorted(spend.items())))
    return {"costs": dict(spend), "costs_load": text.strip()}


def _quality(day: dt.date, say) -> dict:
    code, text = _ops("quality", "--day", day.isoformat(), "--site", SITE)
    lines = text.strip().splitlines()
    breaches = [line for line in lines if line.startswith("BREACH")]
    say(f"  quality checks for {day}: {lines[-1] if lines else 'none'}")
    for line in breaches[:5]:
        say(f"    {line}")
    return {"quality": lines[-1] if lines else "", "breaches": breaches}


def _dry_run(out: Path, say) -> dict:
    path = out / "exports-dry-run.jsonl"
    code, text = _ops("exports", "dry-run", "--site", SITE, "--out", str(path))
    requests = [json.loads(line) for line in path.read_text().splitlines()]
    per_platform = collections.Counter(r.get("platform") for r in requests)
    say(f"  export dry run (ops exports dry-run): {text.strip()}; "
        + ", ".join(f"{p} {n}" for p, n in sorted(per_platform.items())))
    if requests:
        first = json.dumps(requests[0], ensure_ascii=False, default=str)
        say(f"    first request: {first[:300]}{'...' if len(first) > 300 else ''}")
    return {"export_requests": dict(per_platform), "export_file": str(path)}


def run(stack: Stack, stitched_calls: int, out: Path, say) -> dict:
    """Leads, deals, costs, quality and the dry run; a summary for the report."""
    say("After the calls: the CRM, the ad costs, the quality checks, the exports")
    day = dt.datetime.now(dt.UTC).date()
    leads = _leads(stack, stitched_calls, say)
    summary = {"leads": len(leads)}
    summary |= _win_deals(stack, leads, say)
    summary |= _costs(stack, out, day, say)
    summary |= _quality(day, say)
    summary |= _dry_run(out, say)
    return summary
