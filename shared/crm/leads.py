"""Stitched calls -> CRM leads, once each, with the repeat caller rule.

``LeadSender.handle`` takes a ``calls-stitched`` message. For ``call.stitched``
it decides once per call (stored in the ledger before any CRM write) whether
the call makes a new lead or goes to the caller's open lead, runs the
adapter's steps (each id saved as it arrives), records the links the deal
webhooks need, writes the ``leads`` row (insert id ``lead_id``) and marks the
ledger done. For ``call.updated`` it sends a later recording's link to the
lead once.

Idempotent: a redelivery or replay finds the ledger and repeats only the
steps not yet done; a finished call is a no-op. The one gap is a crash after
the CRM took a write and before its id was saved, which a redelivery repeats;
the generic hook gets an ``Idempotency-Key`` to drop that repeat.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from shared import warehouse
from shared.crm import config, content, store
from shared.crm.base import Lead
from shared.errors import PermanentError, TransientError

logger = logging.getLogger(__name__)

STITCHED = "call.stitched"
UPDATED = "call.updated"
TABLE = "leads"
# A delivery's hold on a call: three CRM requests of at most 10 s each, plus
# Firestore and BigQuery, fit well within it.
CLAIM = dt.timedelta(seconds=60)


class LeadSender:
    def __init__(
        self,
        client,
        sites,
        secrets: dict,
        adapters: Callable,
        insert: Callable[[str, list[dict]], None] = warehouse.insert_rows,
        now: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.client = client
        self.sites = sites
        self.secrets = secrets
        self.adapters = adapters
        self.insert = insert
        self.now = now or (lambda: dt.datetime.now(dt.UTC))

    def handle(self, kind: str, body: dict) -> str:
        """Send one stitched call; returns what was done, or why nothing."""
        call_id, site_id = body.get("call_id"), body.get("site_id")
        if not isinstance(call_id, str) or not isinstance(site_id, str):
            raise PermanentError(
                "Expected call_id and site_id in the message.", code="message"
            )
        if kind not in (STITCHED, UPDATED):
            return "ignored"
        cfg = config.from_site(self.sites.get(site_id), self.secrets)
        if cfg is None:
            logger.debug("Site %s has no CRM; call %s not sent", site_id, call_id)
            return "not_configured"

        crm = self.adapters(cfg)
        ref = store.ref(self.client, store.LEDGER, site_id, call_id)
        snap = ref.get()
        state = snap.to_dict() if snap.exists else None
        if kind == STITCHED and state and state.get("done"):
            logger.debug("Call %s went to the CRM before", call_id)
            return "already_sent"
        if kind == UPDATED and (not state or not state.get("done")):
            if content.recording_url(body.get("recording_ref")) is None:
                return "no_recording_link"
            # Pub/Sub keeps no order: the lead may still be on its way.
            msg = f"Expected call {call_id}'s lead before its recording, found none."
            raise TransientError(msg, code="lead_not_yet_sent")

        if state is None:
            state = self._decide(cfg, crm, body)
        state = self._claim(ref, snap, state)
        try:
            if kind == UPDATED:
                result = self._recording(crm, state, body)
            else:
                result = self._send(cfg, crm, state, body, ref)
        finally:
            state["claimed_until"] = None
            ref.set(state)
        return result

    def _claim(self, ref, snap, state: dict) -> dict:
        """Take the call's ledger for this delivery, or raise TransientError.

        Pub/Sub may deliver one message twice at once; only the delivery that
        holds the claim talks to the CRM, the other comes back later and finds
        the work done. A crashed delivery's claim lapses after ``CLAIM``.
        """
        from google.api_core import exceptions

        now = self.now()
        held = state.get("claimed_until")
        if held and held > now:
            msg = (
                f"Expected call {state['call_id']} free, found another delivery on it."
            )
            raise TransientError(msg, code="in_progress")
        state = {**state, "claimed_until": now + CLAIM}
        try:
            if snap.exists:
                option = self.client.write_option(last_update_time=snap.update_time)
                ref.update({"claimed_until": state["claimed_until"]}, option=option)
            else:
                ref.create(state)
        except (
            exceptions.Conflict,
            exceptions.FailedPrecondition,
            exceptions.NotFound,
        ):
            msg = (
                f"Expected call {state['call_id']} free, found another delivery on it."
            )
            raise TransientError(msg, code="in_progress") from None
        return state

    def _send(self, cfg, crm, state: dict, body: dict, ref) -> str:
        lead = Lead.of(body, repeat=state["action"] != "created")
        if state["action"] == "created":
            crm.create(lead, state, ref.set)
        else:
            crm.add_call(state["crm_lead_id"], lead, state, ref.set)

        self._index(cfg, body, state)
        self.insert(TABLE, [self._row(cfg, body, state)])
        state["done"] = True
        logger.info(
            "Call %s: CRM lead %s %s in %s",
            body["call_id"],
            state["crm_lead_id"],
            state["action"],
            cfg.crm,
            extra={
                "fields": {
                    "event": "crm_lead",
                    "call_id": body["call_id"],
                    "site_id": cfg.site_id,
                    "crm": cfg.crm,
                    "action": state["action"],
                }
            },
        )
        return state["action"]

    def _decide(self, cfg, crm, body: dict) -> dict:
        """New lead, or the caller's open one (the per-CRM rule in the adapter)."""
        now = self.now()
        state = {
            "site_id": cfg.site_id,
            "call_id": body["call_id"],
            "crm": cfg.crm,
            "decided_at": now,
            "expires_at": now + store.RETENTION,
            "recordings": [],
            "done": False,
            "action": "created",
        }
        caller_hash = body.get("caller_hash")
        if not caller_hash:
            return state
        prev = store.read(self.client, store.CALLERS, cfg.site_id, caller_hash)
        if not prev or prev.get("crm") != cfg.crm:
            return state
        state["contact_id"] = prev.get("contact_id")
        recent = prev["at"] > now - dt.timedelta(days=cfg.dedup_days)
        if not recent or prev.get("call_id") == body["call_id"]:
            return state

        link = (
            store.read(
                self.client, store.LINKS, cfg.site_id, cfg.crm, prev["crm_lead_id"]
            )
            or {}
        )
        if link.get("won") or link.get("lost"):
            return state
        if crm.is_open(prev["crm_lead_id"]) is False:
            return state
        return {
            **state,
            "action": crm.repeat_action,
            "crm_lead_id": prev["crm_lead_id"],
            "repeat_of": prev.get("call_id"),
        }

    def _index(self, cfg, body: dict, state: dict) -> None:
        now = self.now()
        expires = now + store.RETENTION
        touch = content.credited_touch(body)
        if state["action"] == "created":
            store.ref(
                self.client, store.LINKS, cfg.site_id, cfg.crm, state["crm_lead_id"]
            ).set(
                {
                    "site_id": cfg.site_id,
                    "crm": cfg.crm,
                    "crm_lead_id": state["crm_lead_id"],
                    "call_id": body["call_id"],
                    "lead_id": f"{cfg.site_id}:{body['call_id']}",
                    "visitor_id": body.get("visitor_id"),
                    "session_id": body.get("session_id"),
                    "source": touch["source"],
                    "medium": touch["medium"],
                    "campaign": touch["campaign"],
                    "won": False,
                    "lost": False,
                    "expires_at": expires,
                },
                merge=True,
            )
        if body.get("caller_hash"):
            caller = {
                "crm": cfg.crm,
                "crm_lead_id": state["crm_lead_id"],
                "contact_id": state.get("contact_id"),
                "at": now,
                "expires_at": expires,
            }
            if state["action"] == "created":
                caller["call_id"] = body["call_id"]
            store.ref(self.client, store.CALLERS, cfg.site_id, body["caller_hash"]).set(
                caller, merge=True
            )

    def _row(self, cfg, body: dict, state: dict) -> dict:
        touch = content.credited_touch(body)
        lead_id = f"{cfg.site_id}:{body['call_id']}"
        ids = body.get("analytics_ids") or {}
        return {
            "row_id": lead_id,
            "lead_id": lead_id,
            "site_id": cfg.site_id,
            "crm": cfg.crm,
            "crm_lead_id": state["crm_lead_id"],
            "crm_contact_id": state.get("contact_id"),
            "call_id": body["call_id"],
            "action": state["action"],
            "visitor_id": body.get("visitor_id"),
            "session_id": body.get("session_id"),
            "caller_hash": body.get("caller_hash"),
            "source": touch["source"],
            "medium": touch["medium"],
            "campaign": touch["campaign"],
            "confidence": body.get("confidence"),
            "ga_client_id": ids.get("ga_client_id"),
            "call_started_at": body.get("started_at"),
            "created_at": state["decided_at"].isoformat(),
            "recorded_at": self.now().isoformat(),
        }

    def _recording(self, crm, state: dict, body: dict) -> str:
        url = content.recording_url(body.get("recording_ref"))
        if url is None:
            return "no_recording_link"
        if url in (state.get("recordings") or []):
            return "already_sent"
        crm.add_recording(state["crm_lead_id"], url)
        state["recordings"] = [*(state.get("recordings") or []), url]
        return "recording"
