"""Erasure of one caller's data, by the SHA-256 of the number in E.164.

The product keeps no raw caller number (the CRM has it, and erasure there is
the CRM's own job); what it keeps of a caller is the hash, a masked form and
the calls tied to them. ``erase_caller`` finds the caller's calls in BigQuery
``calls`` and ``leads`` and removes, for those calls:

- BigQuery: every row of ``calls`` and ``leads`` with the hash, and the rows of
  ``deals``, ``conversion_exports`` and ``call_reviews`` of those calls;
- Firestore: the stitching ledger ``stitched_calls/{call}``, the provider
  call record ``calls/{call}`` with its ``raw`` events, the caller records
  ``callers/{site}:{hash}`` and ``crm_callers/{site}:{hash}``, the CRM ledger
  ``crm_leads/{site}:{call}`` and the export ledger entries of those calls.

Idempotent: a second run finds nothing and removes nothing.

Note: production BigQuery refuses DML on rows still in the streaming buffer
(up to about 90 minutes after they were streamed); such a table is reported
as ``deferred`` and a later run finishes it. Sessions and holds are left: they
carry the visitor id but nothing of the caller.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from shared import clients, phones, queries
from shared.crm import store as crm_store
from shared.errors import BadRequest
from shared.stitch_store import CALLERS, LEDGER, caller_key
from shared.webhook_store import CALLS, RAW

logger = logging.getLogger(__name__)

HASH_TABLES = ("calls", "leads")
CALL_TABLES = ("deals", "conversion_exports", "call_reviews")
# Firestore takes at most 500 writes in one batch.
BATCH = 400


@dataclass
class Erasure:
    """What one run found and removed; ``deferred`` names tables to run again."""

    caller_hash: str
    calls: list[str] = field(default_factory=list)
    sites: list[str] = field(default_factory=list)
    bigquery_rows: dict[str, int] = field(default_factory=dict)
    firestore_docs: dict[str, int] = field(default_factory=dict)
    deferred: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        return {
            "caller_hash": self.caller_hash,
            "calls": len(self.calls),
            "sites": self.sites,
            "bigquery_rows": self.bigquery_rows,
            "firestore_docs": self.firestore_docs,
            "deferred": self.deferred,
        }


def caller_hash(phone: str | None, region: str, given_hash: str | None) -> str:
    """The hash to erase: of ``phone`` (E.164 in ``region``) or given as is."""
    if given_hash:
        value = given_hash.strip().lower()
        if len(value) != 64 or any(ch not in "0123456789abcdef" for ch in value):
            msg = f"Expected a SHA-256 hex digest, found {value[:70]!r}."
            raise BadRequest(msg, code="field")
        return value
    if not phone:
        raise BadRequest("Expected a phone number or its hash.", code="field")
    return phones.phone_hash(phones.to_e164(phone, region))


def erase_caller(hashed: str, fs=None, bq=None) -> Erasure:
    """Remove everything the product holds of the caller with hash ``hashed``."""
    fs = fs or clients.firestore()
    bq = bq or clients.bigquery()
    result = Erasure(hashed)

    calls, sites = _calls_of(bq, hashed)
    result.calls, result.sites = sorted(calls), sorted(sites)

    for table in HASH_TABLES:
        _delete(bq, result, table, "caller_hash = @hash", hash=hashed)
    if calls:
        for table in CALL_TABLES:
            _delete(bq, result, table, "call_id IN UNNEST(@calls)", calls=calls)

    refs = [fs.collection(LEDGER).document(c) for c in calls]
    refs += [fs.collection(CALLS).document(c) for c in calls]
    for call in calls:
        refs += list(fs.collection(CALLS).document(call).collection(RAW)
                     .list_documents())
    for site in sites:
        refs.append(fs.collection(CALLERS).document(caller_key(site, hashed)))
        refs.append(crm_store.ref(fs, crm_store.CALLERS, site, hashed))
    refs += _crm_refs(fs, sites, calls)
    _delete_docs(fs, result, refs)

    logger.info(
        "Erased caller %s…: %d call(s), %d BigQuery row(s), %d Firestore doc(s)",
        hashed[:12], len(calls), sum(result.bigquery_rows.values()),
        sum(result.firestore_docs.values()),
        extra={"fields": {"event": "caller_erased", **result.summary()}},
    )
    return result


def _calls_of(bq, hashed: str) -> tuple[list[str], set[str]]:
    rows = queries.rows(
        "SELECT DISTINCT call_id, site_id FROM `{dataset}.calls` "
        "WHERE caller_hash = @hash UNION DISTINCT "
        "SELECT DISTINCT call_id, site_id FROM `{dataset}.leads` "
        "WHERE caller_hash = @hash",
        client=bq,
        hash=hashed,
    )
    pairs = [(row["call_id"], row["site_id"]) for row in rows]
    return sorted({c for c, _ in pairs if c}), {s for _, s in pairs if s}


def _delete(bq, result: Erasure, table: str, where: str, **params) -> None:
    from google.api_core import exceptions

    try:
        job = queries.job(
            f"DELETE FROM `{{dataset}}.{table}` WHERE {where}", client=bq, **params
        )
        job.result()
    except exceptions.BadRequest as exc:
        if "streaming buffer" not in str(exc):
            raise
        logger.warning("Rows of %s are still in the streaming buffer; run the "
                       "erasure again later", table)
        result.deferred.append(table)
        return
    result.bigquery_rows[table] = int(job.num_dml_affected_rows or 0)


def _crm_refs(fs, sites: Iterable[str], calls: list[str]) -> list:
    """The CRM ledger of each call and the link of the lead it created."""
    ledgers = [crm_store.ref(fs, crm_store.LEDGER, s, c) for s in sites for c in calls]
    refs = list(ledgers)
    for snap in fs.get_all(ledgers):
        state = snap.to_dict() if snap.exists else {}
        if state.get("crm") and state.get("crm_lead_id"):
            refs.append(crm_store.ref(fs, crm_store.LINKS, state["site_id"],
                                      state["crm"], state["crm_lead_id"]))
    return refs


def _delete_docs(fs, result: Erasure, refs: Iterable) -> None:
    existing = [snap.reference for snap in fs.get_all(list(refs)) if snap.exists]
    for start in range(0, len(existing), BATCH):
        batch = fs.batch()
        for ref in existing[start:start + BATCH]:
            batch.delete(ref)
        batch.commit()
    for ref in existing:
        # A provider's raw events sit under calls/{call}/raw.
        name = RAW if ref.parent.id == RAW else ref.parent.id
        result.firestore_docs[name] = result.firestore_docs.get(name, 0) + 1
