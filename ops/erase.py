"""``erase-caller``: remove one caller's data by phone number or its hash.

``python -m ops erase-caller --phone "+7 916 123-45-67"`` (or ``--hash HEX``)
removes what the product holds of that caller (``shared.erasure``) and prints
what it removed as one JSON object; the number itself is never printed. Exit 0
when done, 3 when a table is deferred (rows still in BigQuery's streaming
buffer: run it again later), 2 on bad input.
"""

from __future__ import annotations

import argparse
import json

from shared import erasure


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = subparsers.add_parser(
        "erase-caller",
        help="remove a caller's data by phone number (hash) from BigQuery "
             "and Firestore",
        description=(
            "Remove a caller's calls, leads, deals, export rows, reviews and "
            "Firestore records, found by the SHA-256 of the number in E.164. "
            "Prints what was removed. Running it again removes nothing more."
        ),
    )
    who = cmd.add_mutually_exclusive_group(required=True)
    who.add_argument("--phone", help="the caller's number, in any common format")
    who.add_argument("--hash", help="the SHA-256 hex of the number in E.164")
    cmd.add_argument(
        "--region", default="RU",
        help="region for a national-format --phone (default: RU)",
    )
    cmd.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    hashed = erasure.caller_hash(args.phone, args.region, args.hash)
    result = erasure.erase_caller(hashed)
    print(json.dumps(result.summary(), indent=2))
    return 3 if result.deferred else 0
