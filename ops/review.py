"""Operator commands for call review and the target-call rule.

- ``call-sample --site S [--week YYYY-MM-DD]``: the calls the ``call_sample``
  view drew for review (5 per campaign per ISO week, stable).
- ``call-review --site S --call ID --verdict target|not_target|spam``: records
  a verdict in ``call_reviews``; the latest verdict of a call overrides the
  target rule in ``calls_latest`` and so the funnel.
- ``target-rule --site S --min-talk-s N``: a site's target-call threshold in
  ``target_rules`` (answered, at least N seconds of talk, not spam).

Each writes one row with an insert id, so repeating a command within the same
second writes nothing twice; a later verdict simply wins.
"""

from __future__ import annotations

import datetime as dt

from shared import queries, warehouse
from shared.errors import BadRequest, NotFound
from shared.sites import SITE_ID

VERDICTS = ("target", "not_target", "spam")


def _site(value: str) -> str:
    if not SITE_ID.match(value or ""):
        raise BadRequest(f"Expected a site id, found {value[:70]!r}.", code="field")
    return value


def record_verdict(
    site_id: str, call_id: str, verdict: str, reviewer: str | None, now: dt.datetime
) -> dict:
    if verdict not in VERDICTS:
        raise BadRequest(
            f"Expected a verdict in {VERDICTS}, found {verdict!r}.", code="field"
        )
    found = queries.rows(
        "SELECT call_id FROM `{dataset}.calls` WHERE site_id = @site"
        " AND call_id = @call LIMIT 1",
        site=site_id,
        call=call_id,
    )
    if not found:
        raise NotFound(f"Expected call {call_id!r} of site {site_id}, found none.")

    when = now.astimezone(dt.UTC).isoformat()
    row = {
        "row_id": f"{site_id}:{call_id}:{when}",
        "review_id": f"{site_id}:{call_id}:{when}",
        "site_id": site_id,
        "call_id": call_id,
        "verdict": verdict,
        "reviewer": (reviewer or "")[:200] or None,
        "reviewed_at": when,
    }
    warehouse.insert_rows("call_reviews", [row])
    return row


def _sample(args) -> int:
    site = _site(args.site)
    where = "site_id = @site"
    params = {"site": site}
    if args.week:
        where += " AND week = DATE_TRUNC(@week, ISOWEEK)"
        params["week"] = dt.date.fromisoformat(args.week)
    rows = queries.rows(
        f"SELECT * FROM `{{dataset}}.call_sample` WHERE {where}"
        " ORDER BY week DESC, source, medium, campaign, started_at",
        **params,
    )
    for r in rows:
        print(
            f"{r['week']}  {r['source']}/{r['medium']}/{r['campaign']}  "
            f"{r['call_id']}  {r['started_at']:%Y-%m-%d %H:%M}  "
            f"talk {r['talk_s'] or 0}s  {r['recording_ref'] or '-'}  "
            f"verdict {r['review_verdict'] or '-'}"
        )
    print(f"{len(rows)} calls to review")
    return 0


def _review(args) -> int:
    row = record_verdict(
        _site(args.site),
        args.call,
        args.verdict,
        args.reviewer,
        dt.datetime.now(dt.UTC),
    )
    print(f"call {row['call_id']}: {row['verdict']} ({row['reviewed_at']})")
    return 0


def _target_rule(args) -> int:
    site = _site(args.site)
    if not 0 <= args.min_talk_s <= 3600:
        raise BadRequest("Expected --min-talk-s between 0 and 3600.", code="field")
    when = dt.datetime.now(dt.UTC).isoformat()
    warehouse.insert_rows(
        "target_rules",
        [
            {
                "row_id": f"{site}:{when}",
                "site_id": site,
                "min_talk_s": args.min_talk_s,
                "set_at": when,
            }
        ],
    )
    print(
        f"site {site}: a target call is answered, talks at least "
        f"{args.min_talk_s} s and is not spam"
    )
    return 0


def register(sub) -> None:
    cmd = sub.add_parser("call-sample", help="calls drawn for manual review")
    cmd.add_argument("--site", required=True)
    cmd.add_argument("--week", help="any day of the ISO week (default: all weeks)")
    cmd.set_defaults(func=_sample)

    cmd = sub.add_parser("call-review", help="record a call's review verdict")
    cmd.add_argument("--site", required=True)
    cmd.add_argument("--call", required=True, help="the product call id")
    cmd.add_argument("--verdict", required=True, choices=VERDICTS)
    cmd.add_argument("--reviewer", help="who listened")
    cmd.set_defaults(func=_review)

    cmd = sub.add_parser("target-rule", help="set a site's target-call threshold")
    cmd.add_argument("--site", required=True)
    cmd.add_argument(
        "--min-talk-s",
        type=int,
        required=True,
        help="least talk time of a target call, in seconds",
    )
    cmd.set_defaults(func=_target_rule)
