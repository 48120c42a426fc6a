"""The generic signed JSON webhook, for a CRM without an adapter.

Out: ``POST {base_url}`` with a JSON body signed as the generic telephony
hook is (``X-Calltrack-Timestamp``, ``X-Calltrack-Signature: sha256=<hex
HMAC-SHA256(webhook_secret, timestamp + "." + body)>``) and an
``Idempotency-Key`` header that is the same on every retry of one message:

    {"event": "lead" | "call" | "recording", "lead_id": "<site>:<call>",
     "crm_lead_id": "<the receiver's id, for call and recording>",
     "site_id", "title", "phone", "summary", "fields": {...FIELDS...}}

The receiver answers 2xx, optionally with ``{"id": "<its lead id>"}``.

Repeat caller rule: the caller's earlier lead is open unless a deal webhook
reported it won or lost; a repeat call is sent as ``event: call`` with that
lead's id ("updated").

Back: ``POST /webhook/{site_id}``, signed the same way (5 minutes either way),
JSON ``{"deal_id", "lead_id" or "call_id", "stage", "won", "lost",
"revenue", "currency", "changed_at", "pipeline"}``.
"""

from __future__ import annotations

import datetime as dt
import json
import time

from shared.crm.base import Adapter, Deal, Lead, Save, money
from shared.errors import BadRequest
from shared.providers import generic
from shared.providers.base import ProviderSecrets, WebhookRequest

REPEAT_ACTION = "updated"


def _text(data: dict, name: str, required: bool = False) -> str | None:
    value = data.get(name)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
        raise BadRequest(
            f"Expected {name} as text, found {value!r:.40}.", code="deal_field"
        )
    return str(value)[:200]


def _flag(data: dict, name: str) -> bool:
    value = data.get(name, False)
    if not isinstance(value, bool):
        raise BadRequest(f"Expected {name} as true or false.", code="deal_field")
    return value


class GenericWebhook(Adapter):
    name = "webhook"
    repeat_action = REPEAT_ACTION

    def _post(self, body: dict, key: str, what: str):
        raw = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        stamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            generic.TIMESTAMP_HEADER: stamp,
            generic.SIGNATURE_HEADER: generic.sign(
                self.cfg.secret("webhook_secret"), stamp, raw
            ),
            "Idempotency-Key": key,
        }
        return self.http.call(
            "POST", self.cfg.base_url, form=raw, headers=headers, what=what
        )

    def body(self, event: str, lead: Lead, crm_lead_id: str | None = None) -> dict:
        return {
            "event": event,
            "lead_id": lead.lead_id,
            "crm_lead_id": crm_lead_id,
            "site_id": self.cfg.site_id,
            "title": lead.title,
            "phone": lead.phone,
            "summary": lead.summary,
            "fields": lead.fields,
        }

    def create(self, lead: Lead, state: dict, save: Save) -> None:
        if not state.get("crm_lead_id"):
            answer = self._post(self.body("lead", lead), f"{lead.lead_id}:lead", "lead")
            given = answer.get("id") if isinstance(answer, dict) else None
            state["crm_lead_id"] = str(given) if given else lead.lead_id
            save(state)

    def add_call(self, lead_id: str, lead: Lead, state: dict, save: Save) -> None:
        if not state.get("noted"):
            self._post(
                self.body("call", lead, lead_id), f"{lead.lead_id}:call", "repeat call"
            )
            state["noted"] = True
            save(state)

    def add_recording(self, lead_id: str, url: str) -> None:
        body = {
            "event": "recording",
            "crm_lead_id": lead_id,
            "site_id": self.cfg.site_id,
            "recording_url": url,
        }
        self._post(body, f"{lead_id}:recording:{url}"[:200], "recording")

    def is_open(self, lead_id: str) -> bool | None:
        # The receiver has no lookup; the deal webhooks' state decides.
        return None

    def fetch_deal(self, deal_id: str) -> Deal | None:
        raise BadRequest("The generic hook sends deals whole.", code="route")

    def webhook(self, req: WebhookRequest, rest: list[str], now: dt.datetime) -> list:
        """The signed deal change in the body, as a Deal."""
        if rest or req.method != "POST":
            raise BadRequest("Expected POST /webhook/{site_id}.", code="route")
        secrets = ProviderSecrets(generic_secret=self.cfg.secret("webhook_secret"))
        generic.verify(req, secrets, now)
        data = req.json_object()
        changed = _text(data, "changed_at")
        try:
            at = dt.datetime.fromisoformat(changed) if changed else now
        except ValueError:
            raise BadRequest(
                "Expected changed_at as ISO 8601.", code="deal_field"
            ) from None
        if at.tzinfo is None:
            raise BadRequest(
                "Expected changed_at with a UTC offset.", code="deal_field"
            )
        revenue = data.get("revenue")
        if revenue is not None and (
            isinstance(revenue, bool) or money(revenue) is None
        ):
            raise BadRequest("Expected revenue as a number.", code="deal_field")
        lead_id, call_id = _text(data, "lead_id"), _text(data, "call_id")
        if not lead_id and not call_id:
            raise BadRequest("Expected lead_id or call_id.", code="deal_field")
        return [
            Deal(
                deal_id=_text(data, "deal_id", required=True),
                lead_id=lead_id,
                stage=_text(data, "stage"),
                won=_flag(data, "won"),
                lost=_flag(data, "lost"),
                revenue=money(revenue),
                currency=_text(data, "currency") or self.cfg.currency,
                changed_at=at.astimezone(dt.UTC),
                pipeline=_text(data, "pipeline"),
                call_id=call_id,
            )
        ]
