"""What a CRM lead says about a call: pure functions of a ``call.stitched`` body.

``lead_fields`` flattens the stitched call into named values (the keys of
``FIELDS``, which a site maps onto its CRM's own fields); ``summary`` is the
same as readable text for the lead's note or description, so a CRM without
any mapping still shows the whole attribution. The caller's raw number is
the one personal value here: it goes to the CRM and nowhere else.
"""

from __future__ import annotations

import datetime as dt

from shared import touches

# Every value a lead can carry, by the name a site's field mapping uses.
FIELDS = {
    "call_id": "Product call id (calls.call_id)",
    "call_started_at": "Call start, ISO 8601 UTC",
    "call_status": "answered, no_answer, busy, ...",
    "duration_s": "Seconds of conversation",
    "recording_url": "Recording link, when the provider gave one",
    "confidence": "Attribution confidence, 0 to 1",
    "reason": "Why the call is attributed as it is",
    "source": "Source of the credited touch",
    "medium": "Medium of the credited touch",
    "campaign": "utm_campaign of the credited touch",
    "content": "utm_content of the credited touch",
    "term": "utm_term of the credited touch",
    "first_source": "Source of the visitor's first touch",
    "first_medium": "Medium of the first touch",
    "first_campaign": "utm_campaign of the first touch",
    "first_content": "utm_content of the first touch",
    "first_term": "utm_term of the first touch",
    "last_source": "Source of the call's own (last) touch",
    "last_medium": "Medium of the last touch",
    "last_campaign": "utm_campaign of the last touch",
    "last_content": "utm_content of the last touch",
    "last_term": "utm_term of the last touch",
    "gclid": "Google Ads click id",
    "gbraid": "Google Ads gbraid",
    "wbraid": "Google Ads wbraid",
    "yclid": "Yandex Direct click id",
    "fbclid": "Meta click id",
    "landing_page": "Landing page of the matched session",
    "ga_client_id": "GA4 client id (with analytics consent)",
    "ym_client_id": "Yandex Metrica client id (with analytics consent)",
    "visitor_id": "Product visitor id",
    "session_id": "Product session id",
}
UTM_PARTS = touches.CREDIT_PARTS
# Shared with GA4's event, which must credit the same touch.
credited_touch = touches.credited_touch
recording_url = touches.recording_url


def lead_fields(stitched: dict) -> dict:
    """The named values of a lead; empty ones are left out."""
    ids = stitched.get("analytics_ids") or {}
    clicks = stitched.get("click_ids") or {}
    values = {
        "call_id": stitched.get("call_id"),
        "call_started_at": stitched.get("started_at"),
        "call_status": stitched.get("status"),
        "duration_s": stitched.get("talk_s"),
        "recording_url": recording_url(stitched.get("recording_ref")),
        "confidence": stitched.get("confidence"),
        "reason": stitched.get("reason"),
        **credited_touch(stitched),
        "landing_page": stitched.get("landing_page"),
        "ga_client_id": ids.get("ga_client_id"),
        "ym_client_id": ids.get("ym_client_id"),
        "visitor_id": stitched.get("visitor_id"),
        "session_id": stitched.get("session_id"),
    }
    for prefix, key in (("first", "first_touch"), ("last", "last_touch")):
        for part in UTM_PARTS:
            values[f"{prefix}_{part}"] = touches.touch_part(stitched.get(key), part)
    for name in touches.CLICK_IDS:
        values[name] = clicks.get(name)
    return {k: v for k, v in values.items() if v is not None and v != ""}


def title(stitched: dict) -> str:
    """The lead's name: a call and where it came from, no phone number."""
    touch = credited_touch(stitched)
    source = touch.get("source") or "(unattributed)"
    medium = touch.get("medium") or "(none)"
    return f"Call: {source} / {medium}"


def _touch_line(label: str, touch: dict | None) -> str | None:
    parts = [touches.touch_part(touch, part) for part in UTM_PARTS]
    if not any(parts):
        return None
    return f"{label}: " + " / ".join(p or "-" for p in parts)


def summary(stitched: dict, repeat: bool = False) -> str:
    """The whole attribution as text, for a note or a description."""
    fields = lead_fields(stitched)
    started = stitched.get("started_at")
    head = "Repeat call" if repeat else "Call"
    lines = [
        f"{head} {fields.get('call_id')} at {started}: "
        f"{fields.get('call_status', 'unknown')}, "
        f"{fields.get('duration_s', 0)} s talk",
        f"Attribution: {fields.get('reason')}, confidence {fields.get('confidence')}",
        _touch_line(
            "Credited touch",
            {
                "source": fields.get("source"),
                "medium": fields.get("medium"),
                **{f"utm_{p}": fields.get(p) for p in ("campaign", "content", "term")},
            },
        ),
        _touch_line("First touch", stitched.get("first_touch")),
        _touch_line("Last touch", stitched.get("last_touch")),
    ]
    clicks = [f"{k}={fields[k]}" for k in touches.CLICK_IDS if k in fields]
    if clicks:
        lines.append("Click ids: " + ", ".join(clicks))
    for key, label in (
        ("landing_page", "Landing page"),
        ("recording_url", "Recording"),
        ("ga_client_id", "GA4 client id"),
        ("ym_client_id", "Metrica client id"),
        ("visitor_id", "Visitor"),
        ("session_id", "Session"),
    ):
        if key in fields:
            lines.append(f"{label}: {fields[key]}")
    return "\n".join(line for line in lines if line)


def started_at(stitched: dict) -> dt.datetime:
    return dt.datetime.fromisoformat(stitched["started_at"]).astimezone(dt.UTC)
