"""Operator command ``exports``: offline conversions to the ad platforms.

- ``exports dry-run [--site S] [--out FILE] [--validate]`` prints (or writes,
  one JSON line each) exactly the requests a tick would send now, without
  credentials, and writes nothing to the ledger. ``--validate`` also sends
  the Google requests with ``validateOnly`` (nothing is imported) and prints
  Google's verdict; the other platforms have no validation endpoint.
- ``exports tick [--site S]`` runs one export tick now (what Cloud Scheduler
  triggers through ``exports-tick``).
- ``exports status [--site S]`` counts the ledger's conversions by site,
  platform and state, with the latest rejection reasons.
- ``exports resend --site S --platform P --conversion ID`` makes a rejected
  or expired conversion due again (after fixing its cause); the next tick
  sends it, with the same dedup key.
"""

from __future__ import annotations

from google.cloud.firestore_v1.base_query import FieldFilter

import argparse
import collections
import json
import sys

from shared import clients, settings
from shared.exports import factory
from shared.exports.exporter import EXPORT_LEDGER
from shared.exports.model import PLATFORMS, REJECTED, RETRY_AFTER


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "exports",
        help="offline conversion exports: dry run, tick, status, resend",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    dry = sub.add_parser("dry-run", help="print the requests a tick would send")
    dry.add_argument("--site", help="only this site")
    dry.add_argument("--out", help="write JSON lines to this file instead")
    dry.add_argument(
        "--validate",
        action="store_true",
        help="also send Google's requests with validateOnly",
    )
    dry.set_defaults(func=dry_run)

    tick = sub.add_parser("tick", help="run one export tick now")
    tick.add_argument("--site", help="only this site")
    tick.set_defaults(func=run_tick)

    status = sub.add_parser("status", help="ledger counts by state")
    status.add_argument("--site", help="only this site")
    status.set_defaults(func=show_status)

    resend = sub.add_parser("resend", help="make a rejected conversion due again")
    resend.add_argument("--site", required=True)
    resend.add_argument("--platform", required=True, choices=PLATFORMS)
    resend.add_argument("--conversion", required=True, help="e.g. qcall:<call id>")
    resend.set_defaults(func=resend_one)


def _sites(args) -> set[str] | None:
    return {args.site} if args.site else None


def dry_run(args) -> int:
    conf = settings.get()
    exp = factory.build(conf)
    lines = []
    for site, request in exp.plan(_sites(args), validate_only=args.validate):
        line = {"site_id": site.site_id, **request.to_json()}
        if args.validate and request.platform == "google":
            line["validation"] = exp.sender("google", site).validate(
                site, conf.export_secrets.get(site.site_id) or {}, request
            )
        lines.append(json.dumps(line, ensure_ascii=False, default=str))
    if args.out:
        with open(args.out, "w") as f:
            f.writelines(line + "\n" for line in lines)
        print(f"{len(lines)} requests written to {args.out}")
        return 0
    for line in lines:
        print(line)
    if not lines:
        print("nothing is due", file=sys.stderr)
    return 0


def run_tick(args) -> int:
    summary = factory.build(settings.get()).tick(_sites(args))
    print(json.dumps(summary, sort_keys=True))
    return 0


def show_status(args) -> int:
    if args.site:
        snaps = (
            clients.firestore()
            .collection(EXPORT_LEDGER)
            .where(filter=FieldFilter("site_id", "==", args.site))
            .stream()
        )
    else:
        snaps = clients.firestore().collection(EXPORT_LEDGER).stream()
    counts: collections.Counter = collections.Counter()
    reasons: dict = {}
    for snap in snaps:
        doc = snap.to_dict()
        key = (doc.get("site_id"), doc.get("platform"), doc.get("state"))
        counts[key] += 1
        if doc.get("state") in (REJECTED, RETRY_AFTER) and doc.get("reason"):
            reasons[key] = doc["reason"]
    for (site, platform, state), n in sorted(counts.items()):
        reason = reasons.get((site, platform, state))
        print(f"{site}\t{platform}\t{state}\t{n}" + (f"\t{reason}" if reason else ""))
    return 0


def resend_one(args) -> int:
    exp = factory.build(settings.get())
    exp.resend(args.site, args.platform, args.conversion)
    print(f"{args.platform}:{args.conversion} will be sent by the next tick")
    return 0
