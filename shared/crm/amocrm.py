"""amoCRM / Kommo: leads out through ``/api/v4/leads/complex``, statuses back.

Out: one lead with its contact (the caller's phone as the ``PHONE`` field,
enum ``WORK``) and tags in one ``leads/complex`` request, then a common note
with the whole attribution (``content.summary``). Mapped values go into the
lead's ``custom_fields_values`` by ``field_id`` (a number) or ``field_code``
(text). Auth: the account's long-lived token as a Bearer header.

Repeat caller rule: the caller's earlier lead is open unless its status is
142 (won) or 143 (lost) or it is gone; an open lead gets a note ("noted").

Back: the account's status webhook (form-encoded ``leads[status][0][id]``
...) carries no signature, so its URL holds a per-site secret
(``/amocrm/{site_id}/{amocrm_webhook_secret}``); the lead is then read with
``GET /api/v4/leads/{id}`` for its price, status and time.
"""

from __future__ import annotations

import datetime as dt
import re

from shared.crm.base import Adapter, Deal, Lead, NotesOnLead, Save, closed, money
from shared.errors import BadRequest, Forbidden, Unauthorized
from shared.providers.base import WebhookRequest, form_pairs, same

WON, LOST = "142", "143"
REPEAT_ACTION = "noted"
_WEBHOOK_KEY = re.compile(r"^leads\[(status|update)\]\[\d+\]\[id\]$")


def _number(value):
    # amoCRM ids are integers; a site document may hold them as text.
    text = str(value)
    return int(text) if text.isdigit() else value


class AmoCrm(Adapter, NotesOnLead):
    name = "amocrm"
    repeat_action = REPEAT_ACTION

    def _url(self, path: str) -> str:
        return f"{self.cfg.base_url}{path}"

    def _headers(self) -> dict:
        return {"Authorization": f"Bearer {self.cfg.secret('amocrm_token')}"}

    def _custom_fields(self, lead: Lead) -> list[dict]:
        out = []
        for target, value in lead.mapped(self.cfg.fields).items():
            key = "field_id" if isinstance(target, int) else "field_code"
            out.append({key: target, "values": [{"value": value}]})
        return out

    def lead_body(self, lead: Lead, contact_id: str | None = None) -> dict:
        body: dict = {"name": lead.title[:255]}
        if self.cfg.pipeline_id:
            body["pipeline_id"] = _number(self.cfg.pipeline_id)
        if self.cfg.stage:
            body["status_id"] = _number(self.cfg.stage)
        if self.cfg.responsible_user_id is not None:
            body["responsible_user_id"] = self.cfg.responsible_user_id
        custom = self._custom_fields(lead)
        if custom:
            body["custom_fields_values"] = custom
        embedded: dict = {}
        if self.cfg.tags:
            embedded["tags"] = [{"name": tag} for tag in self.cfg.tags]
        if contact_id:
            embedded["contacts"] = [{"id": _number(contact_id)}]
        elif lead.phone:
            embedded["contacts"] = [
                {
                    "first_name": lead.title[:255],
                    "custom_fields_values": [
                        {
                            "field_code": "PHONE",
                            "values": [{"value": lead.phone, "enum_code": "WORK"}],
                        }
                    ],
                }
            ]
        if embedded:
            body["_embedded"] = embedded
        return body

    def create(self, lead: Lead, state: dict, save: Save) -> None:
        if not state.get("crm_lead_id"):
            answer = self.http.call(
                "POST",
                self._url("/api/v4/leads/complex"),
                headers=self._headers(),
                json_body=[self.lead_body(lead, state.get("contact_id"))],
                what="lead",
            )
            first = answer[0] if isinstance(answer, list) and answer else {}
            if not first.get("id"):
                raise BadRequest(
                    "Expected amoCRM to return the lead id.", code="crm_answer"
                )
            state["crm_lead_id"] = str(first["id"])
            if first.get("contact_id"):
                state["contact_id"] = str(first["contact_id"])
            save(state)
        # The summary note is a repeat call's note: one "noted" mark covers both.
        self.add_call(state["crm_lead_id"], lead, state, save)

    def _note(self, lead_id: str, text: str) -> None:
        self.http.call(
            "POST",
            self._url("/api/v4/leads/notes"),
            headers=self._headers(),
            json_body=[
                {
                    "entity_id": int(lead_id),
                    "note_type": "common",
                    "params": {"text": text},
                }
            ],
            what="note",
        )

    def _get_lead(self, lead_id: str) -> dict | None:
        if not lead_id.isdigit():
            return None
        return self.http.call(
            "GET",
            self._url(f"/api/v4/leads/{lead_id}"),
            headers=self._headers(),
            ok_missing=True,
            what="lead lookup",
        )

    def is_open(self, lead_id: str) -> bool:
        found = self._get_lead(lead_id)
        if not found:
            return False
        return not any(closed(str(found.get("status_id")), WON, LOST, self.cfg))

    def fetch_deal(self, deal_id: str) -> Deal | None:
        found = self._get_lead(deal_id)
        if not found:
            return None
        status = str(found.get("status_id"))
        won, lost = closed(status, WON, LOST, self.cfg)
        updated = found.get("updated_at")
        changed = (
            dt.datetime.fromtimestamp(updated, dt.UTC)
            if isinstance(updated, int)
            else dt.datetime.now(dt.UTC)
        )
        return Deal(
            deal_id=str(found["id"]),
            lead_id=str(found["id"]),
            stage=status,
            won=won,
            lost=lost,
            revenue=money(found.get("price")),
            currency=self.cfg.currency,
            changed_at=changed,
            pipeline=str(found.get("pipeline_id") or "") or None,
        )

    def webhook(self, req: WebhookRequest, rest: list[str], now: dt.datetime) -> list:
        """Lead ids from a status webhook whose URL carries the site's secret."""
        expected = self.cfg.secret("amocrm_webhook_secret")
        if len(rest) != 1 or not same(expected, rest[0]):
            raise Unauthorized(
                "Expected the site's webhook secret in the URL.", code="secret"
            )
        if req.method != "POST":
            raise BadRequest(f"Expected POST, found {req.method}.", code="method")
        pairs = form_pairs(req.raw_body)
        account = dict(pairs).get("account[subdomain]") or ""
        if self.cfg.account and account != self.cfg.account:
            raise Forbidden(
                "Expected the webhook of the site's amoCRM account, "
                f"found account {account[:40]!r}.",
                code="account",
            )
        ids = [value for key, value in pairs if _WEBHOOK_KEY.match(key)]
        if not ids:
            raise BadRequest(
                "Expected leads[status][N][id] fields, found none.", code="amocrm_form"
            )
        bad = [value for value in ids if not value.isdigit()]
        if bad:
            raise BadRequest(
                f"Expected numeric lead ids, found {bad[0][:20]!r}.", code="amocrm_form"
            )
        return list(dict.fromkeys(ids))
