"""Fake Google: OAuth token endpoint, Data Manager API and the legacy
ConversionUploadService (api-contracts.md, "Google Ads").

Data Manager ``events:ingest`` validates each request strictly and fails
fast (one bad event refuses the request with 400, as the real API does),
takes at most 2,000 events, honours ``validateOnly`` and deduplicates by
``transactionId``; ``requestStatus:retrieve`` answers PROCESSING for the
first poll, then the status set with ``set_status``. The legacy
``uploadClickConversions`` insists on ``partialFailure: true`` and answers
per-row errors in ``partialFailureError`` (TOO_RECENT_EVENT for gclids in
``too_recent``, ORDER_ID_ALREADY_IN_USE for a repeated orderId, ...).
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
import threading
import uuid
from urllib.parse import parse_qs

from tests.fakes.ads_common import (
    CURRENCY,
    HEX64,
    Answer,
    FakeServer,
    Request,
    unknown_keys,
)

CLIENT_ID = "fake-client.apps.googleusercontent.com"
CLIENT_SECRET = "fake-oauth-client-secret"
REFRESH_TOKEN = "fake-refresh-token-1//0g"
DEVELOPER_TOKEN = "fake-developer-token"
MAX_EVENTS = 2000
# Customers still allowlisted for the legacy click import (after 2026-06-15).
ALLOWLISTED = {"1112223333"}

_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$"
)
_ADS_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}[+-]\d{2}:\d{2}$")
_DIGITS = re.compile(r"^\d+$")
EVENT_SOURCES = {"WEB", "APP", "IN_STORE", "PHONE", "OTHER"}
DM_CONSENT = {"CONSENT_GRANTED", "CONSENT_DENIED"}
ADS_CONSENT = {"GRANTED", "DENIED"}
EVENT_KEYS = {
    "destinationReferences",
    "transactionId",
    "eventTimestamp",
    "userData",
    "consent",
    "adIdentifiers",
    "currency",
    "conversionValue",
    "eventSource",
    "customVariables",
}


def _error(status: int, message: str, reason: str = "INVALID_ARGUMENT") -> Answer:
    return Answer(
        status, {"error": {"code": status, "message": message, "status": reason}}
    )


class FakeGoogle(FakeServer):
    name = "google"

    def __init__(self) -> None:
        super().__init__()
        self._state = threading.Lock()
        self._tokens = itertools.count(1)
        self.reset()
        self.route("POST", "/token", self._token)
        self.route("POST", "/v1/events:ingest", self._ingest)
        self.route("GET", "/v1/requestStatus:retrieve", self._status)
        self.route("POST", r"/v26/customers/(\d+):uploadClickConversions", self._click)

    def reset(self) -> None:
        self.tokens: set[str] = set()
        self.ingested: dict[tuple, dict] = {}  # (destination, transactionId)
        self.ingest_count = 0  # events taken, duplicates included
        self.validated = 0
        self.requests: dict[str, dict] = {}
        self.next_status = ("SUCCESS", [])
        self.invalid_gclids: set[str] = set()
        self.too_recent: set[str] = set()
        self.orders: dict[str, dict] = {}  # legacy orderId -> conversion
        self.legacy_rows = 0

    def set_status(self, status: str, errors: list | None = None) -> None:
        """Final status of later Data Manager requests: SUCCESS, FAILED,
        PARTIAL_SUCCESS (errors: [(reason, count)])."""
        self.next_status = (status, errors or [])

    # -- OAuth -----------------------------------------------------------------

    def _token(self, req: Request, _m) -> Answer:
        form = {k: v[0] for k, v in parse_qs(req.body.decode()).items()}
        if (
            form.get("grant_type") != "refresh_token"
            or form.get("client_id") != CLIENT_ID
            or form.get("client_secret") != CLIENT_SECRET
            or form.get("refresh_token") != REFRESH_TOKEN
        ):
            return Answer(400, {"error": "invalid_grant"})
        token = f"ya29.fake-{next(self._tokens)}"
        with self._state:
            self.tokens.add(token)
        return Answer(
            200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"}
        )

    def _authorised(self, req: Request) -> bool:
        auth = req.headers.get("authorization", "")
        return auth.startswith("Bearer ") and auth[7:] in self.tokens

    # -- Data Manager ----------------------------------------------------------

    def check_ingest(self, body) -> list[str]:
        out: list[str] = []
        if not isinstance(body, dict):
            return ["body: must be an object"]
        unknown_keys(
            body,
            {"destinations", "events", "consent", "validateOnly", "encoding"},
            "request",
            out,
        )
        refs = set()
        for i, dest in enumerate(body.get("destinations") or []):
            where = f"destinations[{i}]"
            unknown_keys(
                dest,
                {
                    "reference",
                    "loginAccount",
                    "linkedAccount",
                    "operatingAccount",
                    "productDestinationId",
                },
                where,
                out,
            )
            for acc in ("operatingAccount", "loginAccount", "linkedAccount"):
                if acc in dest or acc == "operatingAccount":
                    a = dest.get(acc) or {}
                    if a.get("accountType") != "GOOGLE_ADS" or not _DIGITS.match(
                        str(a.get("accountId", ""))
                    ):
                        out.append(f"{where}.{acc}: GOOGLE_ADS and digits required")
            if not _DIGITS.match(str(dest.get("productDestinationId", ""))):
                out.append(f"{where}.productDestinationId: the conversion action id")
            refs.add(dest.get("reference"))
        if not refs:
            out.append("destinations: at least one required")
        events = body.get("events")
        if not isinstance(events, list) or not events:
            return [*out, "events: at least one required"]
        if len(events) > MAX_EVENTS:
            out.append(f"events: at most {MAX_EVENTS} per request")
        encoding = body.get("encoding")
        if encoding not in (None, "HEX", "BASE64"):
            out.append("encoding: HEX or BASE64")
        for i, event in enumerate(events):
            where = f"events[{i}]"
            unknown_keys(event, EVENT_KEYS, where, out)
            if not set(
                event.get("destinationReferences") or []
            ) <= refs or not event.get("destinationReferences"):
                out.append(f"{where}.destinationReferences: unknown reference")
            if (
                not isinstance(event.get("transactionId"), str)
                or not event["transactionId"]
            ):
                out.append(f"{where}.transactionId: required for deduplication")
            if not _RFC3339.match(str(event.get("eventTimestamp", ""))):
                out.append(f"{where}.eventTimestamp: RFC 3339 required")
            ids = event.get("adIdentifiers") or {}
            unknown_keys(
                ids,
                {
                    "gclid",
                    "gbraid",
                    "wbraid",
                    "sessionAttributes",
                    "landingPageDeviceInfo",
                },
                f"{where}.adIdentifiers",
                out,
            )
            clicks = [k for k in ("gclid", "gbraid", "wbraid") if ids.get(k)]
            if len(clicks) > 1:
                out.append(f"{where}.adIdentifiers: one of gclid, gbraid, wbraid")
            if ids.get("gclid") in self.invalid_gclids:
                out.append(f"{where}.adIdentifiers.gclid: INVALID_GCLID")
            user = event.get("userData")
            if user is not None:
                if encoding is None:
                    out.append("encoding: required with userData")
                idents = user.get("userIdentifiers") or []
                if not idents or len(idents) > 10:
                    out.append(f"{where}.userData.userIdentifiers: 1 to 10")
                for ident in idents:
                    if len(ident) != 1 or not set(ident) <= {
                        "emailAddress",
                        "phoneNumber",
                        "address",
                    }:
                        out.append(f"{where}.userData: one identifier per entry")
                    for key in ("emailAddress", "phoneNumber"):
                        if (
                            key in ident
                            and encoding == "HEX"
                            and not HEX64.match(ident[key])
                        ):
                            out.append(f"{where}.userData.{key}: SHA-256 hex")
            if not clicks and user is None:
                out.append(f"{where}: an ad identifier or user data required")
            for key, value in (event.get("consent") or {}).items():
                if (
                    key not in ("adUserData", "adPersonalization")
                    or value not in DM_CONSENT
                ):
                    out.append(f"{where}.consent.{key}: CONSENT_GRANTED|CONSENT_DENIED")
            if event.get("eventSource") not in EVENT_SOURCES:
                out.append(f"{where}.eventSource: one of {sorted(EVENT_SOURCES)}")
            if "conversionValue" in event:
                if (
                    not isinstance(event["conversionValue"], (int, float))
                    or event["conversionValue"] < 0
                ):
                    out.append(f"{where}.conversionValue: a number >= 0")
                if not CURRENCY.match(str(event.get("currency", ""))):
                    out.append(f"{where}.currency: ISO 4217 with a value")
        return out

    def _ingest(self, req: Request, _m) -> Answer:
        if not self._authorised(req):
            return _error(
                401,
                "Request had invalid authentication credentials.",
                "UNAUTHENTICATED",
            )
        try:
            body = req.json()
        except ValueError:
            return _error(400, "Invalid JSON payload.")
        problems = self.check_ingest(body)
        if problems:
            return _error(400, "; ".join(problems[:5]))
        request_id = str(uuid.uuid4())
        if body.get("validateOnly"):
            with self._state:
                self.validated += len(body["events"])
            return Answer(200, {"requestId": request_id})
        dests = {d["reference"]: d for d in body["destinations"]}
        with self._state:
            for event in body["events"]:
                self.ingest_count += 1
                for ref in event["destinationReferences"]:
                    key = (dests[ref]["productDestinationId"], event["transactionId"])
                    self.ingested.setdefault(key, event)
            self.requests[request_id] = {
                "destinations": body["destinations"],
                "events": body["events"],
                "polls": 0,
                "final": self.next_status,
            }
        return Answer(200, {"requestId": request_id})

    def _status(self, req: Request, _m) -> Answer:
        if not self._authorised(req):
            return _error(401, "Invalid credentials.", "UNAUTHENTICATED")
        with self._state:
            found = self.requests.get(req.query.get("requestId", ""))
            if found is None:
                return _error(404, "Request not found.", "NOT_FOUND")
            found["polls"] += 1
            status, errors = found["final"]
            if found["polls"] == 1:
                status, errors = "PROCESSING", []
        out = []
        for dest in found["destinations"]:
            count = sum(
                dest["reference"] in e["destinationReferences"] for e in found["events"]
            )
            item = {
                "destination": dest,
                "requestStatus": status,
                "eventsIngestionStatus": {"recordCount": str(count)},
            }
            if errors and status in ("FAILED", "PARTIAL_SUCCESS"):
                item["errorInfo"] = {
                    "errorCounts": [
                        {"recordCount": str(n), "reason": r} for r, n in errors
                    ]
                }
            out.append(item)
        return Answer(200, {"requestStatusPerDestination": out})

    # -- legacy ConversionUploadService ---------------------------------------

    def _click(self, req: Request, m) -> Answer:
        cid = m.group(1)
        if not self._authorised(req):
            return _error(401, "Invalid credentials.", "UNAUTHENTICATED")
        if req.headers.get("developer-token") != DEVELOPER_TOKEN:
            return _error(401, "DEVELOPER_TOKEN_INVALID", "UNAUTHENTICATED")
        login = req.headers.get("login-customer-id")
        if login is not None and not _DIGITS.match(login):
            return _error(400, "login-customer-id must be digits without dashes")
        body = req.json()
        problems = []
        unknown_keys(
            body,
            {"conversions", "partialFailure", "validateOnly", "jobId", "debugEnabled"},
            "request",
            problems,
        )
        if body.get("partialFailure") is not True:
            problems.append("partialFailure must be true")
        convs = body.get("conversions") or []
        if len(convs) > MAX_EVENTS:
            return _error(400, "TOO_MANY_CONVERSIONS_IN_REQUEST")
        if problems:
            return _error(400, "; ".join(problems))
        if cid not in ALLOWLISTED:
            return _error(400, "CUSTOMER_NOT_ALLOWLISTED_FOR_THIS_FEATURE")
        errors, results = [], []
        for i, conv in enumerate(convs):
            code = self._click_error(cid, conv)
            if code is None and not body.get("validateOnly"):
                with self._state:
                    if conv["orderId"] in self.orders:
                        code = "ORDER_ID_ALREADY_IN_USE"
                    else:
                        self.orders[conv["orderId"]] = conv
                        self.legacy_rows += 1
            if code:
                errors.append(
                    {
                        "errorCode": {"conversionUploadError": code},
                        "message": code.replace("_", " ").lower(),
                        "location": {
                            "fieldPathElements": [
                                {"fieldName": "conversions", "index": i}
                            ]
                        },
                    }
                )
                results.append({})
            else:
                results.append(
                    {
                        "gclid": conv.get("gclid"),
                        "conversionAction": conv["conversionAction"],
                        "conversionDateTime": conv["conversionDateTime"],
                    }
                )
        answer: dict = {"results": results}
        if errors:
            answer["partialFailureError"] = {
                "code": 3,
                "message": f"{len(errors)} conversions failed",
                "details": [
                    {
                        "@type": "type.googleapis.com/google.ads.googleads."
                        "v26.errors.GoogleAdsFailure",
                        "errors": errors,
                    }
                ],
            }
        return Answer(200, answer)

    def _click_error(self, cid: str, conv: dict) -> str | None:
        allowed = {
            "gclid",
            "gbraid",
            "wbraid",
            "conversionAction",
            "conversionDateTime",
            "conversionValue",
            "currencyCode",
            "orderId",
            "customVariables",
            "userIdentifiers",
            "consent",
            "externalAttributionData",
            "conversionEnvironment",
            "cartData",
            "sessionAttributesEncoded",
        }
        if set(conv) - allowed:
            return "FIELD_NOT_ALLOWED"
        if not re.match(
            rf"^customers/{cid}/conversionActions/\d+$",
            str(conv.get("conversionAction", "")),
        ):
            return "INVALID_CONVERSION_ACTION"
        if not _ADS_DATETIME.match(str(conv.get("conversionDateTime", ""))):
            return "INVALID_CONVERSION_DATE_TIME"
        clicks = [k for k in ("gclid", "gbraid", "wbraid") if conv.get(k)]
        if len(clicks) > 1:
            return "CLICK_ID_AND_BRAID_OR_BOTH_BRAIDS"
        idents = conv.get("userIdentifiers") or []
        if len(idents) > 5 or any(
            not HEX64.match(
                str(i.get("hashedPhoneNumber") or i.get("hashedEmail") or "")
            )
            for i in idents
        ):
            return "INVALID_USER_IDENTIFIER"
        if not clicks and not idents:
            return "MISSING_CLICK_ID_OR_USER_IDENTIFIER"
        for value in (conv.get("consent") or {}).values():
            if value not in ADS_CONSENT:
                return "INVALID_CONSENT"
        if "conversionValue" in conv and not CURRENCY.match(
            str(conv.get("currencyCode", ""))
        ):
            return "INVALID_CURRENCY_CODE"
        if conv.get("gclid") in self.invalid_gclids:
            return "UNPARSEABLE_GCLID"
        if conv.get("gclid") in self.too_recent:
            return "TOO_RECENT_EVENT"
        if not conv.get("orderId") or "+" in conv["orderId"]:
            return "INVALID_ORDER_ID"
        when = dt.datetime.strptime(conv["conversionDateTime"], "%Y-%m-%d %H:%M:%S%z")
        if when > dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5):
            return "CONVERSION_PRECEDES_EVENT"
        return None


SERVER = FakeGoogle().start()

SECRETS = {
    "google_client_id": CLIENT_ID,
    "google_client_secret": CLIENT_SECRET,
    "google_refresh_token": REFRESH_TOKEN,
    "google_developer_token": DEVELOPER_TOKEN,
}


def stack_env() -> dict:
    return {
        "CALLTRACK_DATAMANAGER_ENDPOINT": SERVER.url,
        "CALLTRACK_GOOGLEADS_ENDPOINT": SERVER.url,
        "CALLTRACK_GOOGLE_OAUTH_URL": SERVER.url + "/token",
    }
