"""Figures the suite measures (chaos, fuzzing, load, privacy), kept for its end.

A test hands each figure to ``report``; ``pytest_terminal_summary`` in
conftest prints them all, one JSON line each, under "figures" at the end of
``make test``, where CI's output shows them whatever pytest captured.
"""

from __future__ import annotations

import json

FIGURES: list[dict] = []


def report(figure: dict) -> None:
    FIGURES.append(figure)


def lines() -> list[str]:
    return [json.dumps(figure, sort_keys=False) for figure in FIGURES]
