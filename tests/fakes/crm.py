"""Fake amoCRM, Bitrix24, HubSpot and generic lead receiver on one local port.

Each follows its contract (shared/reference api-contracts.md, docs/crm.md)
strictly: auth, content type, field names and types, ids that must exist,
stage ids that must belong to the pipeline. A request outside the contract
gets the 4xx the real service gives, with its error body shape, and is kept
in ``rejected`` so a test can see why. ``fail_next(crm, status, times)``
answers the next requests of one CRM with an outage or a rate limit;
``delay_next(crm, seconds)`` makes one answer late (a timeout).

Routes (``SERVER.url`` + ...): ``/amo`` (amoCRM account base URL),
``/bitrix/rest/1/{BITRIX_CODE}/`` (incoming webhook URL), ``/hubspot``
(HubSpot API host), ``/hook`` (generic receiver). Test helpers change deals
as a manager would and build the webhooks each CRM would send.

The server starts when this module is imported (``stack_env()`` points the
local stack at it).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit

from shared.crm import hubspot
from shared.phones import mask, phone_hash
from shared.providers import generic

AMO_TOKEN = "test-amo-token-5d1f"
AMO_WEBHOOK_SECRET = "test-amo-hook-8c2e"
AMO_PIPELINE, AMO_STAGE = 7001, 7002
AMO_FIELDS = {512001: "campaign", 512002: "call_id", 512003: "confidence"}
AMO_FIELD_CODES = ("PHONE", "EMAIL")
AMO_STATUSES = {AMO_PIPELINE: (AMO_STAGE, 7003, 142, 143)}
BITRIX_CODE = "test0bitrix0code"
BITRIX_TOKEN = "test-bitrix-app-token-77"
BITRIX_LEAD_FIELDS = (
    "TITLE",
    "NAME",
    "SOURCE_ID",
    "SOURCE_DESCRIPTION",
    "COMMENTS",
    "STATUS_ID",
    "ASSIGNED_BY_ID",
    "UTM_SOURCE",
    "UTM_MEDIUM",
    "UTM_CAMPAIGN",
    "UTM_CONTENT",
    "UTM_TERM",
    "UF_CRM_CALL_ID",
    "UF_CRM_GCLID",
)
BITRIX_STATUSES = {"NEW": "P", "IN_PROCESS": "P", "CONVERTED": "S", "JUNK": "F"}
HUBSPOT_TOKEN = "test-hubspot-token-a91"
HUBSPOT_SECRET = "test-hubspot-client-secret-3e"
HUBSPOT_STAGES = {
    "default": (
        "appointmentscheduled",
        "qualifiedtobuy",
        "contractsent",
        "closedwon",
        "closedlost",
    )
}
HUBSPOT_DEAL_PROPERTIES = (
    "dealname",
    "pipeline",
    "dealstage",
    "amount",
    "description",
    "closedate",
    "deal_currency_code",
    "calltracking_call_id",
    "utm_campaign",
)
HUBSPOT_CONTACT_PROPERTIES = ("phone", "firstname", "lastname", "email")
HOOK_SECRET = "test-crm-hook-secret-0b"
MAX_SKEW_S = 300

CRMS = ("amocrm", "bitrix24", "hubspot", "webhook")


class Refused(Exception):
    def __init__(self, status: int, body: dict) -> None:
        super().__init__(body)
        self.status = status
        self.body = body


@dataclass
class Request:
    crm: str
    method: str
    path: str
    headers: dict
    body: object
    at: float = field(default_factory=time.time)


def _amo_error(status: int, detail: str) -> Refused:
    return Refused(
        status,
        {
            "title": "Bad Request" if status == 400 else "Error",
            "type": "https://httpstatus.es/400",
            "status": status,
            "detail": detail,
        },
    )


def _bitrix_error(code: str, text: str, status: int = 400) -> Refused:
    return Refused(status, {"error": code, "error_description": text})


def _hubspot_error(status: int, category: str, message: str) -> Refused:
    return Refused(
        status,
        {
            "status": "error",
            "message": message,
            "category": category,
            "correlationId": "fake",
        },
    )


def _now_ms() -> int:
    return int(time.time() * 1000)


class FakeCrm:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1001)
        self.requests: list[Request] = []
        self.rejected: list[tuple[str, str, dict]] = []
        self._failures: dict[str, list[tuple]] = {crm: [] for crm in CRMS}
        self._delays: dict[str, list[float]] = {crm: [] for crm in CRMS}
        self.amo_leads: dict[int, dict] = {}
        self.amo_contacts: dict[int, dict] = {}
        self.amo_notes: list[dict] = []
        self.bitrix_leads: dict[int, dict] = {}
        self.bitrix_deals: dict[int, dict] = {}
        self.bitrix_comments: list[dict] = []
        self.hs_contacts: dict[str, dict] = {}
        self.hs_deals: dict[str, dict] = {}
        self.hs_notes: list[dict] = []
        self.hook_leads: dict[str, dict] = {}
        self.hook_events: list[dict] = []
        self._hook_keys: dict[str, dict] = {}
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                fake._handle(self)

            def do_POST(self):  # noqa: N802
                fake._handle(self)

            def do_PATCH(self):  # noqa: N802
                fake._handle(self)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.amo_url = self.url + "/amo"
        self.bitrix_url = f"{self.url}/bitrix/rest/1/{BITRIX_CODE}/"
        self.hubspot_url = self.url + "/hubspot"
        self.hook_url = self.url + "/hook"
        threading.Thread(
            target=self.server.serve_forever, daemon=True, name="fake-crm"
        ).start()

    # -- control ---------------------------------------------------------------

    def _id(self) -> int:
        return next(self._ids)

    def fail_next(self, crm: str, status: int, times: int = 1, path: str = "",
                  body: str = "") -> None:
        """Answer the next ``times`` requests to ``crm`` (whose path holds
        ``path`` and whose body holds ``body``) with ``status``.

        ``body`` keeps a late redelivery of an earlier test's message from
        using up failures meant for this test's call.
        """
        with self._lock:
            self._failures[crm].extend([(status, path, body)] * times)

    def delay_next(self, crm: str, seconds: float) -> None:
        with self._lock:
            self._delays[crm].append(seconds)

    def of(self, crm: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.crm == crm]

    # -- dispatch --------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length)
        routes = (
            ("/amo/", "amocrm", self._amo),
            ("/bitrix/", "bitrix24", self._bitrix),
            ("/hubspot/", "hubspot", self._hubspot),
            ("/hook", "webhook", self._hook),
        )
        found = [(c, r) for prefix, c, r in routes if parts.path.startswith(prefix)]
        if not found:
            self._answer(handler, 404, {"error": "no such route"})
            return
        crm, route = found[0]
        with self._lock:
            queued = self._failures[crm]
            text = raw.decode(errors="replace")
            index = next(
                (i for i, (_, p, b) in enumerate(queued)
                 if p in parts.path and b in text),
                None,
            )
            failure = queued.pop(index)[0] if index is not None else None
            delay = self._delays[crm].pop(0) if self._delays[crm] else 0
        if delay:
            time.sleep(delay)
        if failure is not None:
            self._answer(handler, failure, {"error": "fake outage", "status": failure})
            return
        headers = {k.lower(): v for k, v in handler.headers.items()}
        try:
            with self._lock:
                status, body = route(handler.command, parts, headers, raw)
        except Refused as exc:
            with self._lock:
                self.rejected.append((crm, parts.path, exc.body))
            self._answer(handler, exc.status, exc.body)
            return
        self._answer(handler, status, body)

    @staticmethod
    def _answer(handler, status: int, body) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        try:
            handler.send_response(status)
            if data:
                handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client timed out, as a test meant it to

    # -- amoCRM ----------------------------------------------------------------

    def _amo(self, method: str, parts, headers: dict, raw: bytes):
        if headers.get("authorization") != f"Bearer {AMO_TOKEN}":
            raise Refused(
                401,
                {
                    "title": "Unauthorized",
                    "status": 401,
                    "detail": "Invalid or missing token",
                },
            )
        path = parts.path[len("/amo") :]
        lead = re.fullmatch(r"/api/v4/leads/(\d+)", path)
        if method == "GET" and lead:
            self.requests.append(Request("amocrm", method, path, headers, None))
            found = self.amo_leads.get(int(lead.group(1)))
            return (200, found) if found else (204, None)
        if method != "POST":
            raise _amo_error(405, "Method not allowed")
        if not headers.get("content-type", "").startswith("application/json"):
            raise _amo_error(415, "Expected application/json")
        try:
            body = json.loads(raw)
        except ValueError:
            raise _amo_error(400, "Body is not JSON") from None
        self.requests.append(Request("amocrm", method, path, headers, body))
        if path == "/api/v4/leads/complex":
            return 200, self._amo_complex(body)
        if path == "/api/v4/leads/notes":
            return 200, self._amo_notes(body)
        raise _amo_error(404, f"No route {path}")

    def _amo_custom_fields(self, values, allowed_codes) -> None:
        if not isinstance(values, list):
            raise _amo_error(400, "custom_fields_values must be an array")
        for item in values:
            keys = set(item) - {"values"}
            if len(keys) != 1 or not keys <= {"field_id", "field_code"}:
                raise _amo_error(400, "Each field needs field_id or field_code")
            if "field_id" in item and item["field_id"] not in AMO_FIELDS:
                raise _amo_error(400, f"Unknown field_id {item['field_id']}")
            if "field_code" in item and item["field_code"] not in allowed_codes:
                raise _amo_error(400, f"Unknown field_code {item['field_code']}")
            vals = item.get("values")
            if (
                not isinstance(vals, list)
                or not vals
                or not all(
                    isinstance(v, dict)
                    and "value" in v
                    and set(v) <= {"value", "enum_code", "enum_id"}
                    for v in vals
                )
            ):
                raise _amo_error(400, "values must be [{value}]")

    def _amo_complex(self, body) -> list:
        if not isinstance(body, list) or not 1 <= len(body) <= 50:
            raise _amo_error(400, "Expected an array of 1 to 50 leads")
        allowed = {
            "name",
            "price",
            "status_id",
            "pipeline_id",
            "responsible_user_id",
            "custom_fields_values",
            "_embedded",
            "created_at",
            "tags_to_add",
        }
        out = []
        for lead in body:
            if not isinstance(lead, dict) or set(lead) - allowed:
                raise _amo_error(400, f"Unknown lead fields {set(lead) - allowed}")
            if not isinstance(lead.get("name", ""), str):
                raise _amo_error(400, "name must be a string")
            pipeline = lead.get("pipeline_id", AMO_PIPELINE)
            status = lead.get("status_id", AMO_STAGE)
            if pipeline not in AMO_STATUSES or status not in AMO_STATUSES[pipeline]:
                raise _amo_error(400, "status_id does not belong to pipeline_id")
            self._amo_custom_fields(lead.get("custom_fields_values", []), ())
            embedded = lead.get("_embedded", {})
            if set(embedded) - {"tags", "contacts", "companies"}:
                raise _amo_error(400, "Unknown _embedded keys")
            tags = embedded.get("tags", [])
            if not all(
                isinstance(t, dict) and set(t) in ({"name"}, {"id"}) for t in tags
            ):
                raise _amo_error(400, "tags must be [{name}] or [{id}]")
            contact_id = None
            for contact in embedded.get("contacts", []):
                if "id" in contact:
                    if set(contact) != {"id"} or contact["id"] not in self.amo_contacts:
                        raise _amo_error(400, "Unknown contact id")
                    contact_id = contact["id"]
                    continue
                if set(contact) - {
                    "first_name",
                    "last_name",
                    "name",
                    "custom_fields_values",
                }:
                    raise _amo_error(400, "Unknown contact fields")
                self._amo_custom_fields(
                    contact.get("custom_fields_values", []), AMO_FIELD_CODES
                )
                for item in contact.get("custom_fields_values", []):
                    if item.get("field_code") == "PHONE" and any(
                        v.get("enum_code") not in ("WORK", "MOB", "HOME", "OTHER")
                        for v in item["values"]
                    ):
                        raise _amo_error(400, "PHONE enum_code must be WORK, MOB, ...")
                contact_id = self._id()
                self.amo_contacts[contact_id] = contact
            lead_id = self._id()
            self.amo_leads[lead_id] = {
                "id": lead_id,
                "name": lead.get("name", ""),
                "price": lead.get("price", 0),
                "status_id": status,
                "pipeline_id": pipeline,
                "updated_at": int(time.time()),
                "created_at": int(time.time()),
                "custom_fields_values": lead.get("custom_fields_values"),
                "_embedded": {
                    "tags": tags,
                    "contacts": [{"id": contact_id}] if contact_id else [],
                },
            }
            out.append(
                {
                    "id": lead_id,
                    "contact_id": contact_id,
                    "company_id": None,
                    "request_id": [str(len(out))],
                    "merged": False,
                }
            )
        return out

    def _amo_notes(self, body) -> dict:
        if not isinstance(body, list) or not body:
            raise _amo_error(400, "Expected an array of notes")
        out = []
        for note in body:
            if set(note) - {"entity_id", "note_type", "params"}:
                raise _amo_error(400, "Unknown note fields")
            if note.get("entity_id") not in self.amo_leads:
                raise _amo_error(400, "entity_id is not a lead")
            if note.get("note_type") != "common":
                raise _amo_error(400, "Unsupported note_type")
            text = (note.get("params") or {}).get("text")
            if not isinstance(text, str) or not text:
                raise _amo_error(400, "params.text is required")
            note_id = self._id()
            self.amo_notes.append({"id": note_id, **note})
            out.append(
                {
                    "id": note_id,
                    "entity_id": note["entity_id"],
                    "request_id": str(len(out)),
                }
            )
        return {"_total_items": len(out), "_embedded": {"notes": out}}

    def amo_move(self, lead_id: int, status_id: int, price=None) -> None:
        """A manager moves the lead (and edits its price) in amoCRM."""
        with self._lock:
            lead = self.amo_leads[int(lead_id)]
            lead["status_id"] = status_id
            if price is not None:
                lead["price"] = price
            lead["updated_at"] = max(int(time.time()), lead["updated_at"] + 1)

    def amo_webhook(self, lead_id: int, subdomain: str = "shop") -> bytes:
        """The form amoCRM posts on a status change of the lead."""
        lead = self.amo_leads[int(lead_id)]
        return urlencode(
            [
                ("leads[status][0][id]", str(lead_id)),
                ("leads[status][0][status_id]", str(lead["status_id"])),
                ("leads[status][0][pipeline_id]", str(lead["pipeline_id"])),
                ("leads[status][0][old_status_id]", str(AMO_STAGE)),
                ("account[subdomain]", subdomain),
                ("account[id]", "3001"),
            ]
        ).encode()

    # -- Bitrix24 --------------------------------------------------------------

    def _bitrix(self, method: str, parts, headers: dict, raw: bytes):
        found = re.fullmatch(r"/bitrix/rest/(\d+)/([^/]+)/([a-z.]+)\.json", parts.path)
        if not found:
            raise _bitrix_error("ERROR_METHOD_NOT_FOUND", "Method not found", 404)
        if found.group(2) != BITRIX_CODE:
            raise _bitrix_error(
                "INVALID_CREDENTIALS", "Invalid request credentials", 401
            )
        if method != "POST" or not headers.get("content-type", "").startswith(
            "application/x-www-form-urlencoded"
        ):
            raise _bitrix_error("INVALID_REQUEST", "Expected a form POST")
        form = parse_qsl(raw.decode(), keep_blank_values=True)
        name = found.group(3)
        self.requests.append(Request("bitrix24", method, name, headers, form))
        handlers = {
            "crm.lead.add": self._bitrix_lead_add,
            "crm.lead.get": self._bitrix_lead_get,
            "crm.deal.get": self._bitrix_deal_get,
            "crm.timeline.comment.add": self._bitrix_comment,
        }
        if name not in handlers:
            raise _bitrix_error("ERROR_METHOD_NOT_FOUND", "Method not found", 404)
        result = handlers[name](form)
        return 200, {"result": result, "time": {"start": time.time()}}

    def _bitrix_lead_add(self, form) -> int:
        fields, phones = {}, {}
        for key, value in form:
            if key == "params[REGISTER_SONET_EVENT]":
                continue
            phone = re.fullmatch(r"fields\[PHONE\]\[(\d+)\]\[(VALUE|VALUE_TYPE)\]", key)
            if phone:
                phones.setdefault(phone.group(1), {})[phone.group(2)] = value
                continue
            plain = re.fullmatch(r"fields\[([A-Z_0-9]+)\]", key)
            if not plain or plain.group(1) not in BITRIX_LEAD_FIELDS:
                raise _bitrix_error("ERROR_CORE", f"Unknown field {key}")
            fields[plain.group(1)] = value
        if not fields.get("TITLE"):
            raise _bitrix_error("ERROR_CORE", "TITLE is required")
        for phone in phones.values():
            if not phone.get("VALUE") or phone.get("VALUE_TYPE") not in (
                "WORK",
                "MOBILE",
                "HOME",
                "OTHER",
            ):
                raise _bitrix_error("ERROR_CORE", "PHONE needs VALUE and VALUE_TYPE")
        status = fields.get("STATUS_ID", "NEW")
        if status not in BITRIX_STATUSES:
            raise _bitrix_error("ERROR_CORE", f"Unknown STATUS_ID {status}")
        lead_id = self._id()
        self.bitrix_leads[lead_id] = {
            "ID": str(lead_id),
            **fields,
            "PHONE": list(phones.values()),
            "STATUS_ID": status,
            "STATUS_SEMANTIC_ID": BITRIX_STATUSES[status],
        }
        return lead_id

    def _bitrix_lead_get(self, form) -> dict:
        lead = self.bitrix_leads.get(int(dict(form).get("id", "0") or 0))
        if not lead:
            raise _bitrix_error("", "Not found")
        return lead

    def _bitrix_deal_get(self, form) -> dict:
        deal = self.bitrix_deals.get(int(dict(form).get("id", "0") or 0))
        if not deal:
            raise _bitrix_error("", "Not found")
        return deal

    def _bitrix_comment(self, form) -> int:
        fields = dict(form)
        if set(fields) != {
            "fields[ENTITY_ID]",
            "fields[ENTITY_TYPE]",
            "fields[COMMENT]",
        }:
            raise _bitrix_error("ERROR_CORE", "ENTITY_ID, ENTITY_TYPE, COMMENT needed")
        if (
            fields["fields[ENTITY_TYPE]"] != "lead"
            or int(fields["fields[ENTITY_ID]"]) not in self.bitrix_leads
        ):
            raise _bitrix_error("ERROR_CORE", "No such lead")
        comment_id = self._id()
        self.bitrix_comments.append({"ID": comment_id, **fields})
        return comment_id

    def bitrix_convert(
        self, lead_id: int, stage: str = "NEW", semantic: str = "P", amount: str = "0"
    ) -> int:
        """A manager converts the lead into a deal; returns the deal id."""
        with self._lock:
            lead = self.bitrix_leads[int(lead_id)]
            lead.update(STATUS_ID="CONVERTED", STATUS_SEMANTIC_ID="S")
            deal_id = self._id()
            self.bitrix_deals[deal_id] = {
                "ID": str(deal_id),
                "TITLE": lead["TITLE"],
                "LEAD_ID": str(lead_id),
                "CATEGORY_ID": "0",
                "STAGE_ID": stage,
                "STAGE_SEMANTIC_ID": semantic,
                "OPPORTUNITY": amount,
                "CURRENCY_ID": "RUB",
                "DATE_MODIFY": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            }
            return deal_id

    def bitrix_move(self, deal_id: int, stage: str, semantic: str, amount: str) -> None:
        with self._lock:
            deal = self.bitrix_deals[int(deal_id)]
            before = dt.datetime.fromisoformat(deal["DATE_MODIFY"])
            now = max(
                dt.datetime.now(dt.UTC).replace(microsecond=0),
                before + dt.timedelta(seconds=1),
            )
            deal.update(
                STAGE_ID=stage,
                STAGE_SEMANTIC_ID=semantic,
                OPPORTUNITY=amount,
                DATE_MODIFY=now.isoformat(),
            )

    @staticmethod
    def bitrix_webhook(deal_id: int, token: str = BITRIX_TOKEN) -> bytes:
        """The form of Bitrix24's outgoing ONCRMDEALUPDATE."""
        return urlencode(
            [
                ("event", "ONCRMDEALUPDATE"),
                ("data[FIELDS][ID]", str(deal_id)),
                ("ts", str(int(time.time()))),
                ("auth[domain]", "shop.bitrix24.ru"),
                ("auth[client_endpoint]", "https://shop.bitrix24.ru/rest/"),
                ("auth[member_id]", "a1b2c3"),
                ("auth[application_token]", token),
            ]
        ).encode()

    # -- HubSpot ---------------------------------------------------------------

    def _hubspot(self, method: str, parts, headers: dict, raw: bytes):
        if headers.get("authorization") != f"Bearer {HUBSPOT_TOKEN}":
            raise _hubspot_error(
                401, "INVALID_AUTHENTICATION", "Authentication credentials not found."
            )
        path = parts.path[len("/hubspot") :]
        deal = re.fullmatch(r"/crm/v3/objects/deals/(\d+)", path)
        if method == "GET" and deal:
            self.requests.append(Request("hubspot", method, path, headers, None))
            found = self.hs_deals.get(deal.group(1))
            if not found:
                raise _hubspot_error(404, "OBJECT_NOT_FOUND", "resource not found")
            wanted = parse_qs(parts.query).get("properties", [""])[0].split(",")
            props = {k: found["properties"].get(k) for k in wanted if k}
            props["hs_object_id"] = found["id"]
            return 200, {**found, "properties": props}
        if method != "POST":
            raise _hubspot_error(405, "VALIDATION_ERROR", "Method not allowed")
        if not headers.get("content-type", "").startswith("application/json"):
            raise _hubspot_error(415, "VALIDATION_ERROR", "Expected JSON")
        try:
            body = json.loads(raw)
        except ValueError:
            raise _hubspot_error(400, "VALIDATION_ERROR", "Invalid JSON") from None
        self.requests.append(Request("hubspot", method, path, headers, body))
        kinds = {
            "/crm/v3/objects/contacts": "contact",
            "/crm/v3/objects/deals": "deal",
            "/crm/v3/objects/notes": "note",
        }
        if path not in kinds:
            raise _hubspot_error(404, "OBJECT_NOT_FOUND", f"No route {path}")
        return 201, self._hubspot_create(kinds[path], body)

    def _hubspot_create(self, kind: str, body) -> dict:
        if not isinstance(body, dict) or set(body) - {"properties", "associations"}:
            raise _hubspot_error(400, "VALIDATION_ERROR", "Unknown top-level keys")
        props = body.get("properties")
        if not isinstance(props, dict) or not all(
            isinstance(v, str) for v in props.values()
        ):
            raise _hubspot_error(
                400, "VALIDATION_ERROR", "properties must be an object of strings"
            )
        known = {
            "contact": HUBSPOT_CONTACT_PROPERTIES,
            "deal": HUBSPOT_DEAL_PROPERTIES,
            "note": ("hs_timestamp", "hs_note_body"),
        }[kind]
        unknown = sorted(set(props) - set(known))
        if unknown:
            raise _hubspot_error(
                400, "VALIDATION_ERROR", f"Property values were not valid: {unknown}"
            )
        if kind == "deal":
            stages = HUBSPOT_STAGES.get(props.get("pipeline"))
            if (
                not props.get("dealname")
                or not stages
                or props.get("dealstage") not in stages
            ):
                raise _hubspot_error(
                    400,
                    "VALIDATION_ERROR",
                    "dealname, pipeline and a dealstage of it needed",
                )
        if kind == "note" and not props.get("hs_timestamp"):
            raise _hubspot_error(400, "VALIDATION_ERROR", "hs_timestamp is required")
        targets = {
            "deal": (self.hs_contacts, 3),
            "note": (self.hs_deals, 214),
            "contact": (None, None),
        }[kind]
        for assoc in body.get("associations", []):
            types = assoc.get("types") or []
            to = (assoc.get("to") or {}).get("id")
            if (
                targets[0] is None
                or to not in targets[0]
                or types
                != [
                    {
                        "associationCategory": "HUBSPOT_DEFINED",
                        "associationTypeId": targets[1],
                    }
                ]
            ):
                raise _hubspot_error(400, "VALIDATION_ERROR", "Invalid association")
        now = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
        obj = {
            "id": str(self._id()),
            "properties": dict(props),
            "createdAt": now,
            "updatedAt": now,
            "archived": False,
            "associations": body.get("associations", []),
        }
        if kind == "deal":
            obj["properties"]["hs_lastmodifieddate"] = now
        {"contact": self.hs_contacts, "deal": self.hs_deals}.get(kind, {})[
            obj["id"]
        ] = obj
        if kind == "note":
            self.hs_notes.append(obj)
        return obj

    def hubspot_move(self, deal_id: str, stage: str, amount: str | None) -> None:
        with self._lock:
            deal = self.hs_deals[str(deal_id)]
            before = dt.datetime.fromisoformat(
                deal["properties"]["hs_lastmodifieddate"]
            )
            now = max(dt.datetime.now(dt.UTC), before + dt.timedelta(milliseconds=1))
            deal["properties"].update(
                dealstage=stage,
                hs_lastmodifieddate=now.isoformat(timespec="milliseconds"),
            )
            if amount is not None:
                deal["properties"]["amount"] = amount

    @staticmethod
    def hubspot_webhook(
        url: str,
        deal_ids: list[str],
        secret: str = HUBSPOT_SECRET,
        stamp_ms: int | None = None,
        prop: str = "dealstage",
    ) -> tuple[bytes, dict]:
        """Body and headers of a signed HubSpot webhook POST to ``url``."""
        events = [
            {
                "eventId": n + 1,
                "subscriptionId": 11,
                "portalId": 62515,
                "appId": 4001,
                "occurredAt": _now_ms(),
                "subscriptionType": "deal.propertyChange",
                "attemptNumber": 0,
                "objectId": int(deal_id),
                "changeSource": "CRM_UI",
                "propertyName": prop,
                "propertyValue": "closedwon",
            }
            for n, deal_id in enumerate(deal_ids)
        ]
        body = json.dumps(events).encode()
        stamp = str(stamp_ms if stamp_ms is not None else _now_ms())
        headers = {
            "X-HubSpot-Signature-v3": hubspot.signature(
                secret, "POST", url, body, stamp
            ),
            "X-HubSpot-Request-Timestamp": stamp,
            "Content-Type": "application/json",
        }
        return body, headers

    # -- generic receiver ------------------------------------------------------

    def _hook(self, method: str, parts, headers: dict, raw: bytes):
        if method != "POST" or not headers.get("content-type", "").startswith(
            "application/json"
        ):
            raise Refused(415, {"error": "Expected a JSON POST"})
        stamp = headers.get(generic.TIMESTAMP_HEADER.lower(), "")
        signature = headers.get(generic.SIGNATURE_HEADER.lower(), "")
        if not stamp.isdigit() or signature != generic.sign(HOOK_SECRET, stamp, raw):
            raise Refused(401, {"error": "bad signature"})
        if abs(time.time() - int(stamp)) > MAX_SKEW_S:
            raise Refused(403, {"error": "stale signature"})
        key = headers.get("idempotency-key")
        if not key:
            raise Refused(400, {"error": "Idempotency-Key is required"})
        body = json.loads(raw)
        self.requests.append(Request("webhook", method, parts.path, headers, body))
        if key in self._hook_keys:
            return 200, self._hook_keys[key]
        event = body.get("event")
        needed = {
            "lead": {"lead_id", "site_id", "title", "phone", "summary", "fields"},
            "call": {"crm_lead_id", "lead_id", "summary", "fields"},
            "recording": {"crm_lead_id", "recording_url"},
        }.get(event)
        if needed is None or not needed <= set(body):
            raise Refused(
                400, {"error": f"event {event!r} needs {sorted(needed or [])}"}
            )
        if event != "lead" and body["crm_lead_id"] not in self.hook_leads:
            raise Refused(404, {"error": "unknown crm_lead_id"})
        self.hook_events.append(body)
        answer = {"ok": True}
        if event == "lead":
            lead_id = f"ext-{self._id()}"
            self.hook_leads[lead_id] = body
            answer = {"id": lead_id}
        self._hook_keys[key] = answer
        return 200, answer

    @staticmethod
    def hook_deal(
        deal: dict, secret: str = HOOK_SECRET, stamp: int | None = None
    ) -> tuple[bytes, dict]:
        """Body and headers of a signed generic deal change."""
        body = json.dumps(deal).encode()
        ts = str(stamp if stamp is not None else int(time.time()))
        return body, {
            "X-Calltrack-Timestamp": ts,
            "X-Calltrack-Signature": generic.sign(secret, ts, body),
            "Content-Type": "application/json",
        }


SERVER = FakeCrm()
CALLER = "+79161234567"


def stitched_call(site_id: str, caller: str | None = CALLER, **over) -> dict:
    """A ``call.stitched`` body as stitch publishes it (docs/stitching.md)."""
    first = {
        "source": "google",
        "medium": "cpc",
        "utm_source": "google",
        "utm_medium": "cpc",
        "utm_campaign": "brand",
        "gclid": "g-1",
    }
    last = {
        "source": "yandex",
        "medium": "cpc",
        "utm_source": "yandex",
        "utm_medium": "cpc",
        "utm_campaign": "kitchens",
        "utm_content": "ad7",
        "yclid": "y-9",
    }
    return {
        "call_id": f"call-{uuid.uuid4().hex[:16]}",
        "site_id": site_id,
        "version": 1,
        "schema": 1,
        "started_at": dt.datetime.now(dt.UTC).isoformat(),
        "status": "answered",
        "answered": True,
        "talk_s": 42,
        "reason": "live_hold",
        "confidence": 0.9,
        "recording_ref": "https://pbx.example.test/rec/1.mp3",
        "session_id": f"sess-{uuid.uuid4().hex[:8]}",
        "visitor_id": f"vis-{uuid.uuid4().hex[:8]}",
        "source": "yandex",
        "medium": "cpc",
        "campaign": "kitchens",
        "content": "ad7",
        "term": None,
        "click_ids": {"yclid": "y-9"},
        "landing_page": "https://shop.example.test/k",
        "analytics_ids": {"ga_client_id": "123.456"},
        "consent_analytics": False,
        "first_touch": first,
        "last_touch": last,
        "last_non_direct_touch": last,
        "direct_return": False,
        "caller": caller,
        "caller_hash": phone_hash(caller) if caller else None,
        "caller_mask": mask(caller) if caller else None,
        **over,
    }


def secrets() -> dict:
    """CALLTRACK_CRM_SECRETS for the test sites of each CRM."""
    return {
        "crm-amo": {
            "amocrm_token": AMO_TOKEN,
            "amocrm_webhook_secret": AMO_WEBHOOK_SECRET,
        },
        "crm-bitrix": {
            "bitrix24_webhook_url": SERVER.bitrix_url,
            "bitrix24_application_token": BITRIX_TOKEN,
        },
        "crm-e2e": {
            "bitrix24_webhook_url": SERVER.bitrix_url,
            "bitrix24_application_token": BITRIX_TOKEN,
        },
        # Site "demo" (the one with provider secrets) when a test gives it a CRM.
        "demo": {
            "bitrix24_webhook_url": SERVER.bitrix_url,
            "bitrix24_application_token": BITRIX_TOKEN,
        },
        "crm-hubspot": {
            "hubspot_token": HUBSPOT_TOKEN,
            "hubspot_client_secret": HUBSPOT_SECRET,
        },
        "crm-hook": {"webhook_secret": HOOK_SECRET},
    }


def site_crm(site_id: str) -> dict:
    """The ``extra.crm`` of each test site."""
    sites = {
        "crm-amo": {
            "type": "amocrm",
            "base_url": SERVER.amo_url,
            "account": "shop",
            "pipeline_id": AMO_PIPELINE,
            "stage": AMO_STAGE,
            "tags": ["calltracking", "paid"],
            "fields": {"campaign": 512001, "call_id": 512002, "confidence": 512003},
        },
        "crm-bitrix": {
            "type": "bitrix24",
            "stage": "NEW",
            "fields": {"call_id": "UF_CRM_CALL_ID", "gclid": "UF_CRM_GCLID"},
        },
        "crm-hubspot": {
            "type": "hubspot",
            "pipeline_id": "default",
            "stage": "appointmentscheduled",
            "fields": {"call_id": "calltracking_call_id", "campaign": "utm_campaign"},
        },
        "crm-hook": {"type": "webhook", "base_url": SERVER.hook_url},
    }
    sites["crm-e2e"] = sites["crm-bitrix"]
    return sites[site_id]


def stack_env() -> dict:
    return {
        "CALLTRACK_CRM_SECRETS": json.dumps(secrets()),
        "CALLTRACK_HUBSPOT_ENDPOINT": SERVER.hubspot_url,
    }
