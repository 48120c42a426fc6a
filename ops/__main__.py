"""Operator command line.

Each subcommand lives in its own module under ``ops`` exposing
``register(subparsers)``, which adds its parser and sets ``func`` to a callable
taking the parsed arguments and returning the process exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from shared.errors import CallTrackError

# Modules that add subcommands, in the order their help is shown.
COMMAND_MODULES = ("ops.pool", "ops.accuracy", "ops.replay", "ops.utm",
                   "ops.exports", "ops.costs", "ops.review", "ops.quality",
                   "ops.report", "ops.looker", "ops.erase")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ops", description="Operate the call-tracking product."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CallTrackError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
