"""Operator actions on sites and numbers: configure, import, report status."""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass

from shared import phones, touches
from shared.errors import BadRequest
from shared.sites import site_from_doc
from shared.store import NUMBERS, SITES

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
KINDS = ("dynamic", "static")


def put_site(client, doc: dict) -> dict:
    """Validate and store a site document; returns what was stored."""
    site = site_from_doc(doc)
    stored = site.to_doc()
    client.collection(SITES).document(site.site_id).set(stored)
    return stored


def number_doc(
    site,
    raw_number: str,
    kind: str = "dynamic",
    overflow: bool = False,
    channel: dict | None = None,
) -> dict:
    if kind not in KINDS:
        raise BadRequest(f"Expected kind in {KINDS}, found {kind!r}.", code="kind")
    if kind == "static" and not channel:
        msg = "Expected a static number to name its channel (source and medium)."
        raise BadRequest(msg, code="channel")
    number = phones.to_e164(raw_number, site.region)
    return {
        "number": number,
        "site_id": site.site_id,
        "kind": kind,
        "overflow": bool(overflow) and kind == "dynamic",
        "channel": channel,
        "display": phones.display(number, site.display_format),
        "lease": None,
        "available_at": EPOCH,
        "last_used_at": EPOCH,
        "last_released_at": None,
        "last_visitor_id": None,
    }


def parse_numbers_csv(text: str) -> list[dict]:
    """Rows of ``number,kind,overflow,source,medium,campaign`` (header required).

    ``kind`` defaults to dynamic; a static row names the channel it stands for.
    """
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or "number" not in reader.fieldnames:
        raise BadRequest("Expected a CSV header with a 'number' column.", code="csv")

    rows = []
    for line, row in enumerate(reader, start=2):
        number = (row.get("number") or "").strip()
        if not number:
            raise BadRequest(
                f"Expected a number on line {line}, found none.", code="csv"
            )
        kind = (row.get("kind") or "dynamic").strip().lower()
        overflow = (row.get("overflow") or "").strip().lower() in ("1", "true", "yes")
        channel = None
        if kind == "static":
            channel = {
                "utm_source": (row.get("source") or "").strip() or None,
                "utm_medium": (row.get("medium") or "").strip() or None,
                "utm_campaign": (row.get("campaign") or "").strip() or None,
            }
            if not channel["utm_source"]:
                msg = f"Expected a source for the static number on line {line}."
                raise BadRequest(msg, code="csv")
        rows.append(
            {
                "number": number,
                "kind": kind,
                "overflow": overflow,
                "channel": channel,
                "line": line,
            }
        )
    return rows


def import_numbers(client, site_id: str, rows: list[dict]) -> dict:
    """Add numbers to a site's pool; numbers already present keep their state.

    Idempotent: importing the same file twice changes nothing the second time.
    """
    snap = client.collection(SITES).document(site_id).get()
    if not snap.exists:
        raise BadRequest(
            f"Expected a configured site, found none for {site_id!r}.",
            code="unknown_site",
        )
    site = site_from_doc(snap.to_dict())

    docs = []
    for row in rows:
        try:
            docs.append(
                number_doc(
                    site,
                    row["number"],
                    row.get("kind", "dynamic"),
                    row.get("overflow", False),
                    row.get("channel"),
                )
            )
        except BadRequest as exc:
            where = f"Line {row['line']}: " if row.get("line") else ""
            raise BadRequest(where + exc.message, code=exc.code) from None
    added = skipped = 0
    batch = client.batch()
    for doc in docs:
        ref = client.collection(NUMBERS).document(doc["number"])
        existing = ref.get()
        if existing.exists:
            if existing.to_dict().get("site_id") != site.site_id:
                msg = (
                    f"Expected {phones.mask(doc['number'])} to be free to import, "
                    "found it in another site's pool."
                )
                raise BadRequest(msg, code="number_taken")
            skipped += 1
            continue
        batch.set(ref, doc)
        added += 1
    batch.commit()
    return {"site_id": site.site_id, "added": added, "already_present": skipped}


# Held share of the dynamic pool above which it is due to grow: past it, the
# simulator sees early reuse and exhaustion climb (docs/accuracy.md).
PRESSURE = 0.75


@dataclass(frozen=True)
class PoolStatus:
    site_id: str
    held: int
    cooling: int
    free: int
    overflow: int
    overflow_in_use: int
    static: int

    @property
    def dynamic(self) -> int:
        return self.held + self.cooling + self.free

    @property
    def utilisation(self) -> float:
        return self.held / self.dynamic if self.dynamic else 0.0

    def to_dict(self) -> dict:
        return {
            "site_id": self.site_id,
            "held": self.held,
            "cooling": self.cooling,
            "free": self.free,
            "overflow": self.overflow,
            "overflow_in_use": self.overflow_in_use,
            "static": self.static,
            "utilisation": round(self.utilisation, 3),
        }


def pool_status(client, site_id: str, now: dt.datetime | None = None) -> PoolStatus:
    from google.cloud.firestore_v1.base_query import FieldFilter

    now = now or dt.datetime.now(dt.UTC)
    counts = dict(held=0, cooling=0, free=0, overflow=0, overflow_in_use=0, static=0)
    query = client.collection(NUMBERS).where(
        filter=FieldFilter("site_id", "==", site_id)
    )
    for snap in query.stream():
        doc = snap.to_dict()
        if doc.get("kind") == "static":
            counts["static"] += 1
        elif doc.get("overflow"):
            counts["overflow"] += 1
            counts["overflow_in_use"] += int(doc["available_at"] > now)
        else:
            lease = doc.get("lease")
            if lease and lease["expires_at"] > now:
                counts["held"] += 1
            elif doc["available_at"] > now:
                counts["cooling"] += 1
            else:
                counts["free"] += 1
    return PoolStatus(site_id=site_id, **counts)


def static_channel_touch(number_doc_: dict) -> dict | None:
    """The touch a static number stands for (used by stitching)."""
    channel = number_doc_.get("channel")
    if not channel:
        return None
    touch = {k: v for k, v in channel.items() if v}
    touch["source"], touch["medium"] = touches.channel(touch)
    return touch
