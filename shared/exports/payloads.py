"""Pure request builders for each platform, and the gate in front of them.

Nothing here does I/O. ``gate`` says why a conversion must not go to a
platform (no ad consent, outside the platform's window, nothing to match on);
the builders turn conversions into the exact bodies of
api-contracts.md. Each builder is deterministic, so the dry run prints the
very request a tick would send.

Phone matching: the product keeps two hashes of the caller and never the
number. ``caller_hash`` is SHA-256 hex of the E.164 text with its "+", Google's
normalisation (Data Manager ``phoneNumber`` with ``encoding: HEX``; the legacy
``hashedPhoneNumber``). ``caller_hash_digits`` is SHA-256 hex of the digits
without "+", Meta's ``ph``; stitch makes it while the number is at hand.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import re
from dataclasses import dataclass
from urllib.parse import parse_qs, quote, urlsplit
from zoneinfo import ZoneInfo

from shared.exports.model import (
    EXPIRED,
    REJECTED,
    WINDOWS,
    Conversion,
    ExportConfig,
)

# Request size limits of the platforms.
GOOGLE_MAX_EVENTS = 2000
META_MAX_EVENTS = 1000
# Metrica names no row limit; files stay small enough to upload in seconds.
YANDEX_MAX_ROWS = 5000

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_RB_CLICKID = "rb_clickid"


@dataclass(frozen=True)
class Outcome:
    """A ledger state reached without sending (and why)."""

    state: str
    reason: str


def sha256(text: str) -> str:
    return hashlib.sha256(text.strip().lower().encode()).hexdigest()


def value_of(conv: Conversion, conf: ExportConfig) -> float | None:
    if conv.value is not None:
        return round(float(conv.value), 2)
    fixed = conf.values.get(conv.kind)
    return round(float(fixed), 2) if fixed is not None else None


def currency_of(conv: Conversion, conf: ExportConfig) -> str:
    return (conv.currency or conf.currency).upper()


def rb_clickid(conv: Conversion) -> str | None:
    """VK Ads' click id, which VK appends to the landing page URL."""
    if not conv.landing_page:
        return None
    values = parse_qs(urlsplit(conv.landing_page).query).get(_RB_CLICKID)
    return values[0] if values else None


def google_click(conv: Conversion) -> dict:
    """One click id: gclid, else gbraid, else wbraid (never both braids)."""
    for key in ("gclid", "gbraid", "wbraid"):
        if conv.click_ids.get(key):
            return {key: conv.click_ids[key]}
    return {}


def _phone_hash(conv: Conversion) -> str | None:
    value = conv.caller_hash
    return value if isinstance(value, str) and _SHA256.match(value) else None


def yandex_id(conv: Conversion) -> tuple[str, str] | None:
    """(CSV column, value): the Metrica client id, else the Direct click id."""
    if conv.analytics_ids.get("ym_client_id"):
        return "ClientId", str(conv.analytics_ids["ym_client_id"])
    if conv.click_ids.get("yclid"):
        return "Yclid", str(conv.click_ids["yclid"])
    return None


def meta_user_data(conv: Conversion) -> dict:
    user: dict = {}
    fbc = conv.analytics_ids.get("fbc")
    if not fbc and conv.click_ids.get("fbclid"):
        # fb.1.<creation ms>.<fbclid>: created when the visitor landed.
        ms = int(conv.visit_at.timestamp() * 1000)
        fbc = f"fb.1.{ms}.{conv.click_ids['fbclid']}"
    if fbc:
        user["fbc"] = fbc
    if conv.analytics_ids.get("fbp"):
        user["fbp"] = conv.analytics_ids["fbp"]
    if conv.visitor_id:
        user["external_id"] = [sha256(conv.visitor_id)]
    digits = conv.caller_hash_digits
    if isinstance(digits, str) and _SHA256.match(digits):
        user["ph"] = [digits]
    return user


def gate(
    conv: Conversion, platform: str, conf: ExportConfig, now: dt.datetime
) -> Outcome | None:
    """Why ``conv`` must not go to ``platform``, or None when it may."""
    if conv.consent_ads is not True:
        return Outcome(REJECTED, "no_consent: the visitor gave no ad consent")

    # Google and Metrica count from the click / visit; Meta and VK from the event.
    since = conv.visit_at if platform in ("google", "yandex") else conv.occurred_at
    if now - since > WINDOWS[platform]:
        days = WINDOWS[platform].days
        return Outcome(EXPIRED, f"outside {platform}'s {days}-day window")

    if conv.kind == "deal_adjustment" and value_of(conv, conf) in (None, 0):
        return Outcome(REJECTED, "no_value: an adjustment without a value")
    found = {
        "google": lambda: google_click(conv) or _phone_hash(conv),
        "yandex": lambda: yandex_id(conv),
        "meta": lambda: meta_user_data(conv),
        "vk": lambda: rb_clickid(conv),
    }[platform]()
    if not found:
        return Outcome(REJECTED, f"no_identifier: nothing {platform} can match on")
    return None


# -- Google Ads: Data Manager API ---------------------------------------------


def google_timestamp(at: dt.datetime) -> str:
    """RFC 3339 in UTC with a Z, whole seconds."""
    return at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def datamanager_event(conv: Conversion, conf: ExportConfig) -> dict:
    """One Data Manager Event; its transactionId is the ledger's conversion id."""
    event: dict = {
        "destinationReferences": [conv.kind],
        "transactionId": conv.conversion_id,
        "eventTimestamp": google_timestamp(conv.occurred_at),
        # Data Manager's ConsentStatus names differ from the Ads API's.
        "consent": {
            "adUserData": "CONSENT_GRANTED",
            "adPersonalization": "CONSENT_GRANTED",
        },
        "eventSource": "OTHER" if conv.kind.startswith("deal") else "PHONE",
    }
    if click := google_click(conv):
        event["adIdentifiers"] = click
    if phone := _phone_hash(conv):
        event["userData"] = {"userIdentifiers": [{"phoneNumber": phone}]}
    value = value_of(conv, conf)
    if value is not None:
        event["conversionValue"] = value
        event["currency"] = currency_of(conv, conf)
    return event


def datamanager_request(
    events: list[dict], conf: ExportConfig, validate_only: bool = False
) -> dict:
    """IngestEventsRequest: one destination per conversion action used."""
    google = conf.google
    assert google is not None
    refs = sorted({ref for e in events for ref in e["destinationReferences"]})
    destinations = []
    for ref in refs:
        dest = {
            "reference": ref,
            "operatingAccount": {
                "accountType": "GOOGLE_ADS",
                "accountId": google.customer_id,
            },
            "productDestinationId": google.actions[ref],
        }
        if google.login_customer_id:
            dest["loginAccount"] = {
                "accountType": "GOOGLE_ADS",
                "accountId": google.login_customer_id,
            }
        destinations.append(dest)
    body = {
        "destinations": destinations,
        "events": events,
        "validateOnly": validate_only,
    }
    if any("userData" in e for e in events):
        body["encoding"] = "HEX"
    return body


# -- Google Ads: legacy ConversionUploadService -------------------------------


def google_datetime(at: dt.datetime, timezone: str) -> str:
    """ "yyyy-mm-dd hh:mm:ss+hh:mm" in the account's (site's) time zone."""
    local = at.astimezone(ZoneInfo(timezone))
    offset = local.strftime("%z")
    return local.strftime("%Y-%m-%d %H:%M:%S") + offset[:3] + ":" + offset[3:]


def legacy_click_conversion(conv: Conversion, conf: ExportConfig) -> dict:
    """A ClickConversion; orderId (the conversion id, no PII) deduplicates.

    Call conversions (UploadCallConversions) need the raw caller id and a
    Google forwarding number; the product stores neither, so calls go as
    click conversions by click id or hashed phone (docs/exports.md).
    """
    google = conf.google
    assert google is not None
    body: dict = {
        "conversionAction": (
            f"customers/{google.customer_id}/conversionActions/"
            f"{google.actions[conv.kind]}"
        ),
        "conversionDateTime": google_datetime(conv.occurred_at, conf.timezone),
        "orderId": conv.conversion_id,
        "consent": {"adUserData": "GRANTED", "adPersonalization": "GRANTED"},
    }
    click = google_click(conv)
    if click:
        body.update(click)
    elif phone := _phone_hash(conv):
        body["userIdentifiers"] = [{"hashedPhoneNumber": phone}]
    value = value_of(conv, conf)
    if value is not None:
        body["conversionValue"] = value
        body["currencyCode"] = currency_of(conv, conf)
    return body


def legacy_request(conversions: list[dict], validate_only: bool = False) -> dict:
    return {
        "conversions": conversions,
        "partialFailure": True,
        "validateOnly": validate_only,
    }


# -- Yandex Metrica -------------------------------------------------------------

CALL_COLUMNS = (
    "DateTime",
    "Price",
    "Currency",
    "TalkDuration",
    "HoldDuration",
    "CallMissed",
    "FirstTimeCaller",
    "Tag",
    "URL",
)
BASIC_COLUMNS = ("Target", "DateTime", "Price", "Currency")


def _unix_past(at: dt.datetime, now: dt.datetime) -> int:
    # Metrica refuses times in the future; a provider clock ahead of ours
    # would otherwise lose the row.
    return int(min(at, now - dt.timedelta(seconds=1)).timestamp())


def _price(value: float | None) -> str:
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else f"{value:.2f}"


def yandex_call_row(conv: Conversion, conf: ExportConfig, now: dt.datetime) -> dict:
    value = value_of(conv, conf)
    return {
        "DateTime": str(_unix_past(conv.occurred_at, now)),
        "Price": _price(value),
        "Currency": currency_of(conv, conf) if value is not None else "",
        "TalkDuration": str(int(conv.talk_s or 0)),
        "HoldDuration": str(int(conv.ring_s or 0)),
        "CallMissed": "0" if conv.answered else "1",
        "FirstTimeCaller": "1" if conv.first_time_caller else "0",
        "Tag": conv.kind,
        "URL": conv.landing_page or "",
    }


def yandex_basic_row(conv: Conversion, conf: ExportConfig, now: dt.datetime) -> dict:
    yandex = conf.yandex
    assert yandex is not None
    value = value_of(conv, conf)
    return {
        "Target": yandex.goals[conv.kind],
        "DateTime": str(_unix_past(conv.occurred_at, now)),
        "Price": _price(value),
        "Currency": currency_of(conv, conf) if value is not None else "",
    }


def yandex_csv(rows: list[tuple[Conversion, dict]], columns: tuple) -> dict:
    """CSV files by id column: {column: text}. A file carries one id kind."""
    by_column: dict[str, list] = {}
    for conv, row in rows:
        found = yandex_id(conv)
        assert found is not None
        by_column.setdefault(found[0], []).append({found[0]: found[1], **row})
    files = {}
    for column, items in by_column.items():
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=[column, *columns], lineterminator="\n")
        writer.writeheader()
        writer.writerows(items)
        files[column] = out.getvalue()
    return files


# -- Meta Conversions API -------------------------------------------------------


def meta_event(conv: Conversion, conf: ExportConfig) -> dict:
    """A server event; event_id plus event_name deduplicates for 48 h."""
    meta = conf.meta
    assert meta is not None
    event: dict = {
        "event_name": meta.events[conv.kind],
        "event_time": int(conv.occurred_at.timestamp()),
        "event_id": conv.conversion_id,
        "action_source": "phone_call" if conv.from_call else "system_generated",
        "user_data": meta_user_data(conv),
    }
    value = value_of(conv, conf)
    if value is not None:
        event["custom_data"] = {"value": value, "currency": currency_of(conv, conf)}
    return event


# -- VK Ads -----------------------------------------------------------------------


def vk_query(conv: Conversion, conf: ExportConfig) -> str:
    """The tracker's query: ``id=PIXEL;e=RG%3AVALUE/GOAL&rb_clickid=...``."""
    vk = conf.vk
    assert vk is not None
    value = _price(value_of(conv, conf)) or "0"
    goal = quote(vk.goals[conv.kind], safe="")
    click = quote(rb_clickid(conv) or "", safe="")
    return f"id={vk.pixel_id};e=RG%3A{value}/{goal}&rb_clickid={click}"


def chunks(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]
