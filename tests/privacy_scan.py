"""A scan of Firestore for caller numbers, taken after every test of the suite.

Each test that uses the stack starts from an empty Firestore, so the one way to
look at everything the suite stored there is to read it before each reset.
``record`` does, and the suite's last test (``tests/test_privacy.py``) checks
what was found then, beside BigQuery and the logs, which keep everything.
"""

from __future__ import annotations

import json
import re

# Every caller of the suite has a Russian mobile number, written here with +7, 7
# or 8 in front. Bounded by anything but a hex digit, so that a SHA-256 hex
# holding such a run of digits is not taken for a number; tracking numbers
# (+7495...) are not personal and do not match.
MOBILE = re.compile(r"(?<![0-9A-Fa-f])(?:\+7|7|8)9\d{9}(?![0-9A-Fa-f])")

documents_read = 0
hits: list[str] = []


def firestore_texts(client) -> list[tuple[str, str]]:
    """Every document as (path, JSON text): one query per top-level collection."""
    out = []
    for collection in client.collections():
        for snap in collection.recursive().stream():
            out.append((snap.reference.path,
                        json.dumps(snap.to_dict(), default=str)))
    return out


def found(texts: list[tuple[str, str]], test: str = "") -> list[str]:
    """Where a caller number is, naming no more of it than its first digits."""
    return [f"{test} {where}: {MOBILE.search(text).group()[:5]}...".strip()
            for where, text in texts if MOBILE.search(text)]


def record(client, test: str) -> None:
    global documents_read
    texts = firestore_texts(client)
    documents_read += len(texts)
    hits.extend(found(texts, test))
