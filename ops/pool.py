"""Subcommands for sites and the number pool: site-configure, numbers-import,
pool-status."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from shared import clients, pool_admin


def _site_configure(args) -> int:
    doc = json.loads(Path(args.file).read_text())
    stored = pool_admin.put_site(clients.firestore(), doc)
    print(json.dumps(stored, indent=2, default=str))
    return 0


def _numbers_import(args) -> int:
    text = Path(args.csv).read_text() if args.csv != "-" else sys.stdin.read()
    rows = pool_admin.parse_numbers_csv(text)
    result = pool_admin.import_numbers(clients.firestore(), args.site, rows)
    print(json.dumps(result))
    return 0


def _pool_status(args) -> int:
    status = pool_admin.pool_status(clients.firestore(), args.site)
    if args.json:
        print(json.dumps(status.to_dict()))
        return 0
    print(f"site {status.site_id}: {status.dynamic} dynamic numbers")
    print(f"  held     {status.held:6d}")
    print(f"  cooling  {status.cooling:6d}")
    print(f"  free     {status.free:6d}")
    print(f"  overflow {status.overflow:6d} ({status.overflow_in_use} in use)")
    print(f"  static   {status.static:6d}")
    print(f"  utilisation {status.utilisation:.0%}")
    return 0


def register(sub) -> None:
    cmd = sub.add_parser("site-configure", help="create or replace a site from JSON")
    cmd.add_argument("file", help="site document (see docs/operations.md)")
    cmd.set_defaults(func=_site_configure)

    cmd = sub.add_parser("numbers-import", help="add numbers to a site's pool from CSV")
    cmd.add_argument("--site", required=True)
    cmd.add_argument(
        "csv", help="number,kind,overflow,source,medium,campaign; - reads stdin"
    )
    cmd.set_defaults(func=_numbers_import)

    cmd = sub.add_parser("pool-status", help="held / cooling / free counts of a pool")
    cmd.add_argument("--site", required=True)
    cmd.add_argument("--json", action="store_true", help="one JSON object")
    cmd.set_defaults(func=_pool_status)
