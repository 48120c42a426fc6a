"""The Firestore documents of the CRM hand-off.

- ``crm_leads/{site}:{call}``: the ledger of one call's lead: the decision
  (created, noted, updated), the CRM ids each step produced, ``done``, and the
  recording links already sent. A redelivery reads it and repeats nothing.
- ``crm_callers/{site}:{caller_hash}``: the caller's latest lead in the site's
  CRM, for the repeat caller rule (by hash: no raw number in Firestore).
- ``crm_links/{site}:{crm}:{crm_lead_id}``: the call, visitor, session and
  touch behind a CRM lead, and its latest deal state, for the deal webhooks.

Every document has ``expires_at`` for Firestore's TTL.
"""

from __future__ import annotations

import datetime as dt
from urllib.parse import quote

LEDGER = "crm_leads"
CALLERS = "crm_callers"
LINKS = "crm_links"
# Deals close months after the call; the link must outlive that.
RETENTION = dt.timedelta(days=400)


def key(*parts: str) -> str:
    # A receiver's lead id is free text; "/" would name a sub-collection.
    return ":".join(quote(str(part), safe="@+-_.") for part in parts)


def ref(client, collection: str, *parts: str):
    return client.collection(collection).document(key(*parts))


def read(client, collection: str, *parts: str) -> dict | None:
    snap = ref(client, collection, *parts).get()
    return snap.to_dict() if snap.exists else None
