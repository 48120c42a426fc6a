"""HubSpot: a contact and a deal out, deal stage changes back.

Out: ``POST /crm/v3/objects/contacts`` with the caller's ``phone``, then
``POST /crm/v3/objects/deals`` (dealname, pipeline, dealstage, the whole
attribution in ``description``, mapped values as deal properties) associated
with the contact (HUBSPOT_DEFINED type 3, deal to contact). Auth: a private
app's access token as a Bearer header. The deal is the product's "lead".

Repeat caller rule: the caller's earlier deal is open unless its dealstage is
``closedwon``/``closedlost`` (or a site's won/lost stage); an open deal gets a
note associated with it (type 214, note to deal): "noted". A repeat caller
whose deal closed gets a new deal on the same contact.

Back: webhooks (a JSON array of events) signed with
``X-HubSpot-Signature-v3`` = base64(HMAC-SHA256(client secret, method + URI +
body + timestamp)), timestamp at most 5 minutes old. ``deal.propertyChange``
of ``dealstage`` or ``amount`` names a deal, which is then read for its
stage, amount and currency.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
from urllib.parse import unquote

from shared.crm.base import Adapter, Deal, Lead, NotesOnLead, Save, closed, money
from shared.crm.config import CrmConfig
from shared.crm.http import Http
from shared.errors import BadRequest, Forbidden, Unauthorized
from shared.providers.base import WebhookRequest, load_json_array, same

REPEAT_ACTION = "noted"
WON, LOST = "closedwon", "closedlost"
DEAL_TO_CONTACT = 3
NOTE_TO_DEAL = 214
MAX_AGE_MS = 5 * 60 * 1000
SIGNATURE_HEADER = "X-HubSpot-Signature-v3"
TIMESTAMP_HEADER = "X-HubSpot-Request-Timestamp"
WATCHED = ("dealstage", "amount")
DEAL_PROPERTIES = "dealstage,pipeline,amount,deal_currency_code,hs_lastmodifieddate"
# HubSpot decodes these escapes in the URI before signing.
_DECODED = (
    "%3A",
    "%2F",
    "%3F",
    "%40",
    "%21",
    "%24",
    "%27",
    "%28",
    "%29",
    "%2A",
    "%2C",
    "%3B",
)


def signature(secret: str, method: str, uri: str, body: bytes, stamp: str) -> str:
    for escape in _DECODED:
        uri = uri.replace(escape, unquote(escape)).replace(
            escape.lower(), unquote(escape)
        )
    message = method.upper().encode() + uri.encode() + body + stamp.encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def _association(to_id: str, type_id: int) -> dict:
    return {
        "to": {"id": to_id},
        "types": [
            {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}
        ],
    }


class HubSpot(Adapter, NotesOnLead):
    name = "hubspot"
    repeat_action = REPEAT_ACTION

    def __init__(self, cfg: CrmConfig, endpoint: str, http: Http | None = None) -> None:
        super().__init__(cfg, http)
        self.endpoint = endpoint.rstrip("/")

    def _call(self, method: str, path: str, what: str, body=None, **kw):
        headers = {"Authorization": f"Bearer {self.cfg.secret('hubspot_token')}"}
        return self.http.call(
            method,
            self.endpoint + path,
            headers=headers,
            json_body=body,
            what=what,
            **kw,
        )

    def deal_body(self, lead: Lead, contact_id: str | None) -> dict:
        properties = {
            "dealname": lead.title,
            "pipeline": self.cfg.pipeline_id or "default",
            "dealstage": self.cfg.stage or "appointmentscheduled",
            "description": lead.summary,
            **{k: str(v) for k, v in lead.mapped(self.cfg.fields).items()},
        }
        body: dict = {"properties": properties}
        if contact_id:
            body["associations"] = [_association(contact_id, DEAL_TO_CONTACT)]
        return body

    def create(self, lead: Lead, state: dict, save: Save) -> None:
        if lead.phone and not state.get("contact_id"):
            found = self._call(
                "POST",
                "/crm/v3/objects/contacts",
                "contact",
                {"properties": {"phone": lead.phone}},
            )
            state["contact_id"] = str(_id(found))
            save(state)
        if not state.get("crm_lead_id"):
            found = self._call(
                "POST",
                "/crm/v3/objects/deals",
                "deal",
                self.deal_body(lead, state.get("contact_id")),
            )
            state["crm_lead_id"] = str(_id(found))
            save(state)

    def _note(self, deal_id: str, text: str) -> None:
        now = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
        self._call(
            "POST",
            "/crm/v3/objects/notes",
            "note",
            {
                "properties": {
                    "hs_timestamp": now.replace("+00:00", "Z"),
                    "hs_note_body": text,
                },
                "associations": [_association(deal_id, NOTE_TO_DEAL)],
            },
        )

    def _deal(self, deal_id: str) -> dict | None:
        if not deal_id.isdigit():
            return None
        return self._call(
            "GET",
            f"/crm/v3/objects/deals/{deal_id}?properties={DEAL_PROPERTIES}",
            "deal lookup",
            ok_missing=True,
        )

    def is_open(self, lead_id: str) -> bool:
        found = self._deal(lead_id)
        if not found:
            return False
        stage = (found.get("properties") or {}).get("dealstage")
        return not any(closed(stage, WON, LOST, self.cfg))

    def fetch_deal(self, deal_id: str) -> Deal | None:
        found = self._deal(deal_id)
        if not found:
            return None
        props = found.get("properties") or {}
        won, lost = closed(props.get("dealstage"), WON, LOST, self.cfg)
        try:
            changed = dt.datetime.fromisoformat(
                props.get("hs_lastmodifieddate") or found.get("updatedAt") or ""
            )
            changed = changed.astimezone(dt.UTC)
        except ValueError:
            changed = dt.datetime.now(dt.UTC)
        return Deal(
            deal_id=str(found["id"]),
            lead_id=str(found["id"]),
            stage=props.get("dealstage"),
            won=won,
            lost=lost,
            revenue=money(props.get("amount")),
            currency=props.get("deal_currency_code") or self.cfg.currency,
            changed_at=changed,
            pipeline=props.get("pipeline"),
        )

    def webhook(self, req: WebhookRequest, rest: list[str], now: dt.datetime) -> list:
        """Deal ids of the signed events that change a stage or an amount."""
        if rest or req.method != "POST":
            raise BadRequest("Expected POST /hubspot/{site_id}.", code="route")
        stamp = req.header(TIMESTAMP_HEADER) or ""
        found = req.header(SIGNATURE_HEADER) or ""
        if not stamp.isdigit() or not found:
            raise Unauthorized(
                f"Expected {SIGNATURE_HEADER} and {TIMESTAMP_HEADER}.",
                code="signature_missing",
            )
        expected = signature(
            self.cfg.secret("hubspot_client_secret"),
            req.method,
            req.url,
            req.raw_body,
            stamp,
        )
        if not same(expected, found.strip()):
            raise Unauthorized(
                f"Expected a valid {SIGNATURE_HEADER}.", code="signature"
            )
        age_ms = now.timestamp() * 1000 - int(stamp)
        if abs(age_ms) > MAX_AGE_MS:
            raise Forbidden(
                "Expected a request signed within 5 minutes, found one "
                f"{int(abs(age_ms) / 1000)} s away.",
                code="replay",
            )

        # The shared reader bounds the nesting: a deep body is a 400, not a 500.
        events = load_json_array(req.raw_body, "request body")
        if not all(isinstance(e, dict) for e in events):
            raise BadRequest("Expected a JSON array of events.", code="json")
        ids = [
            str(e.get("objectId"))
            for e in events
            if e.get("subscriptionType") == "deal.propertyChange"
            and e.get("propertyName") in WATCHED
            and e.get("objectId")
        ]
        return list(dict.fromkeys(ids))


def _id(found) -> str:
    if not isinstance(found, dict) or not found.get("id"):
        raise BadRequest("Expected HubSpot to return an object id.", code="crm_answer")
    return str(found["id"])
