"""Bitrix24: leads out through an incoming webhook, deal updates back.

Out: ``crm.lead.add`` on the portal's incoming webhook URL
(``https://{portal}/rest/{user}/{code}/``, a secret: the code is the
credential), form-encoded ``fields[...]``: TITLE, PHONE (type WORK), the
credited touch as UTM_SOURCE .. UTM_TERM, SOURCE_ID ``CALL``, the whole
attribution in COMMENTS, STATUS_ID from ``stage`` and mapped values
(``UF_CRM_...`` fields) by name.

Repeat caller rule: the caller's earlier lead is open while its
STATUS_SEMANTIC_ID is ``P`` (in progress), read by ``crm.lead.get``; an open
lead gets a timeline comment (``crm.timeline.comment.add``, "noted").

Back: the outgoing webhook ``ONCRMDEALUPDATE`` (form fields
``data[FIELDS][ID]``, ``auth[application_token]``); the token must equal the
site's ``bitrix24_application_token``. The deal is read with ``crm.deal.get``:
STAGE_ID, STAGE_SEMANTIC_ID (S won, F lost), OPPORTUNITY, CURRENCY_ID and
LEAD_ID, which links it to the lead the product created.
"""

from __future__ import annotations

import datetime as dt

from shared.crm.base import Adapter, Deal, Lead, NotesOnLead, Save, money
from shared.errors import BadRequest, PermanentError, Unauthorized
from shared.providers.base import WebhookRequest, form_pairs, same

REPEAT_ACTION = "noted"
EVENT = "ONCRMDEALUPDATE"
UTM = (
    ("source", "UTM_SOURCE"),
    ("medium", "UTM_MEDIUM"),
    ("campaign", "UTM_CAMPAIGN"),
    ("content", "UTM_CONTENT"),
    ("term", "UTM_TERM"),
)


class Bitrix24(Adapter, NotesOnLead):
    name = "bitrix24"
    repeat_action = REPEAT_ACTION

    def _method(self, method: str, form: list[tuple[str, str]], what: str):
        base = self.cfg.secret("bitrix24_webhook_url").rstrip("/")
        answer = self.http.call("POST", f"{base}/{method}.json", form=form, what=what)
        if not isinstance(answer, dict) or "result" not in answer:
            raise PermanentError(
                f"Expected a result from Bitrix24 {method}.", code="crm_answer"
            )
        return answer["result"]

    def lead_form(self, lead: Lead) -> list[tuple[str, str]]:
        form = [
            ("fields[TITLE]", lead.title),
            ("fields[SOURCE_ID]", "CALL"),
            ("fields[SOURCE_DESCRIPTION]", "calltracking"),
            ("fields[COMMENTS]", lead.summary),
        ]
        if lead.phone:
            form += [
                ("fields[PHONE][0][VALUE]", lead.phone),
                ("fields[PHONE][0][VALUE_TYPE]", "WORK"),
            ]
        for key, name in UTM:
            if key in lead.fields:
                form.append((f"fields[{name}]", str(lead.fields[key])))
        if self.cfg.stage:
            form.append(("fields[STATUS_ID]", self.cfg.stage))
        if self.cfg.responsible_user_id is not None:
            form.append(("fields[ASSIGNED_BY_ID]", str(self.cfg.responsible_user_id)))
        for target, value in lead.mapped(self.cfg.fields).items():
            form.append((f"fields[{target}]", str(value)))
        form.append(("params[REGISTER_SONET_EVENT]", "Y"))
        return form

    def create(self, lead: Lead, state: dict, save: Save) -> None:
        if not state.get("crm_lead_id"):
            result = self._method("crm.lead.add", self.lead_form(lead), "lead")
            state["crm_lead_id"] = str(result)
            save(state)

    def _note(self, lead_id: str, text: str) -> None:
        self._method(
            "crm.timeline.comment.add",
            [
                ("fields[ENTITY_ID]", lead_id),
                ("fields[ENTITY_TYPE]", "lead"),
                ("fields[COMMENT]", text),
            ],
            "comment",
        )

    def _lookup(self, method: str, item_id: str, what: str):
        """The ``result`` of a ``crm.*.get``; None when the item is gone."""
        try:
            return self._method(method, [("id", item_id)], what)
        except PermanentError as exc:
            # Bitrix24 answers a deleted (or never created) item with a 400
            # "Not found". A gone deal is acknowledged as ignored by the
            # webhook; a 500 would have Bitrix24 retry it forever.
            if exc.code == "crm_refused":
                return None
            raise

    def is_open(self, lead_id: str) -> bool:
        found = self._lookup("crm.lead.get", lead_id, "lead lookup")
        return isinstance(found, dict) and found.get("STATUS_SEMANTIC_ID") == "P"

    def fetch_deal(self, deal_id: str) -> Deal | None:
        found = self._lookup("crm.deal.get", deal_id, "deal lookup")
        if not isinstance(found, dict) or not found.get("ID"):
            return None
        semantic = found.get("STAGE_SEMANTIC_ID")
        stage = found.get("STAGE_ID")
        try:
            changed = dt.datetime.fromisoformat(found.get("DATE_MODIFY") or "")
            changed = changed.astimezone(dt.UTC)
        except ValueError:
            changed = dt.datetime.now(dt.UTC)
        return Deal(
            deal_id=str(found["ID"]),
            lead_id=str(found.get("LEAD_ID") or "") or None,
            stage=stage,
            won=semantic == "S" or stage in self.cfg.won_stages,
            lost=semantic == "F" or stage in self.cfg.lost_stages,
            revenue=money(found.get("OPPORTUNITY")),
            currency=found.get("CURRENCY_ID") or self.cfg.currency,
            changed_at=changed,
            pipeline=str(found.get("CATEGORY_ID") or "0"),
        )

    def webhook(self, req: WebhookRequest, rest: list[str], now: dt.datetime) -> list:
        """The deal id of an ONCRMDEALUPDATE carrying the site's token."""
        if rest or req.method != "POST":
            raise BadRequest("Expected POST /bitrix24/{site_id}.", code="route")
        form = dict(form_pairs(req.raw_body))
        token = form.get("auth[application_token]")
        if not token or not same(self.cfg.secret("bitrix24_application_token"), token):
            raise Unauthorized(
                "Expected the site's application token in auth[application_token].",
                code="token",
            )
        if form.get("event", "").upper() != EVENT:
            msg = f"Expected event {EVENT}, found {form.get('event', '')[:40]!r}."
            raise BadRequest(msg, code="bitrix24_event")
        deal_id = form.get("data[FIELDS][ID]", "")
        if not deal_id.isdigit():
            raise BadRequest(
                "Expected a numeric data[FIELDS][ID].", code="bitrix24_form"
            )
        return [deal_id]
