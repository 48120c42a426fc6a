"""Touches: where a visit came from, and how the snippet's touches are cleaned.

A touch is one arrival: its UTM set, click ids, referrer, landing page and time.
A touch is *direct* when it has no UTM, no click id and no referrer from another
site. Visitors keep three: the first, the last, and the last non-direct one.
What a stitched call credits (``credited_touch``) and links (``recording_url``)
lives here too, so the CRM lead and the GA4 event cannot drift apart.
"""

from __future__ import annotations

import datetime as dt
from urllib.parse import urlsplit

from shared.errors import BadRequest

UTM_KEYS = ("utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term")
CLICK_IDS = ("gclid", "gbraid", "wbraid", "yclid", "fbclid")
TOUCH_KEYS = UTM_KEYS + CLICK_IDS + ("referrer", "landing_page", "at")
# What a stitched call is credited to, as its body (and a lead) names it.
CREDIT_PARTS = ("source", "medium", "campaign", "content", "term")

# Longer values than these are not URLs or tags anyone writes; they are abuse.
MAX_URL_CHARS = 2048
MAX_VALUE_CHARS = 500

# Where a click id says which platform paid for the click.
_CLICK_CHANNELS = {
    "gclid": ("google", "cpc"),
    "gbraid": ("google", "cpc"),
    "wbraid": ("google", "cpc"),
    "yclid": ("yandex", "cpc"),
    "fbclid": ("meta", "paid_social"),
}
_SEARCH_ENGINES = {
    "google": "google",
    "yandex": "yandex",
    "bing": "bing",
    "duckduckgo": "duckduckgo",
    "yahoo": "yahoo",
    "mail.ru": "mail.ru",
}


def host_of(url: str | None) -> str:
    if not url:
        return ""
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


def site_domain(host: str) -> str:
    """The registrable part a visitor stays within (``www.shop.example.com`` ->
    ``example.com``); two-label hosts and IP addresses are kept whole.

    Note: without the public-suffix list, ``shop.co.uk`` becomes ``co.uk``; the
    only effect is that such a referrer counts as same-site, never a lost touch.
    """
    labels = host.split(".")
    if len(labels) <= 2 or labels[-1].isdigit():
        return host
    return ".".join(labels[-2:])


def is_external_referrer(referrer: str | None, landing_page: str | None) -> bool:
    ref_host = host_of(referrer)
    if not ref_host:
        return False
    return site_domain(ref_host) != site_domain(host_of(landing_page))


def is_direct(touch: dict | None) -> bool:
    if not touch:
        return True
    if any(touch.get(key) for key in UTM_KEYS + CLICK_IDS):
        return False
    return not is_external_referrer(touch.get("referrer"), touch.get("landing_page"))


def channel(touch: dict | None) -> tuple[str, str]:
    """(source, medium) of a touch, derived when the UTM set is missing."""
    touch = touch or {}
    source, medium = touch.get("utm_source"), touch.get("utm_medium")
    if source or medium:
        return source or "(not set)", medium or "(not set)"

    for key, pair in _CLICK_CHANNELS.items():
        if touch.get(key):
            return pair

    ref_host = host_of(touch.get("referrer"))
    if is_external_referrer(touch.get("referrer"), touch.get("landing_page")):
        for marker, name in _SEARCH_ENGINES.items():
            if marker in ref_host:
                return name, "organic"
        return ref_host, "referral"
    return "(direct)", "(none)"


def touch_part(touch: dict | None, part: str):
    """One of ``CREDIT_PARTS`` of a touch: a touch stores the campaign, content
    and term under their UTM names."""
    touch = touch or {}
    if part in ("source", "medium"):
        return touch.get(part)
    return touch.get(f"utm_{part}")


def credited_touch(stitched: dict) -> dict:
    """``CREDIT_PARTS`` of the touch a stitched call credits: a direct return
    credits the visitor's last non-direct touch, as GA4's last non-direct
    click model does, so the CRM and GA4 name the same source."""
    earlier = stitched.get("last_non_direct_touch") or {}
    if stitched.get("direct_return") and earlier:
        return {part: touch_part(earlier, part) for part in CREDIT_PARTS}
    return {part: stitched.get(part) for part in CREDIT_PARTS}


def recording_url(ref) -> str | None:
    # A provider's recording id is no link anyone can open.
    if isinstance(ref, str) and ref.startswith(("https://", "http://")):
        return ref
    return None


def text_field(value, key: str, limit: int) -> str | None:
    """A string field of a request, None when empty; BadRequest on a wrong
    type or over ``limit`` characters."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        kind = type(value).__name__
        raise BadRequest(f"Expected {key} to be a string, found {kind}.", code="field")
    if len(value) > limit:
        msg = f"Expected {key} of at most {limit} characters, found {len(value)}."
        raise BadRequest(msg, code="field_size")
    return value


def _timestamp(value, key: str) -> str | None:
    text = text_field(value, key, 40)
    if text is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        msg = f"Expected {key} in ISO 8601, found {text!r}."
        raise BadRequest(msg, code="field") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC).isoformat()


def clean_touch(raw, name: str) -> dict | None:
    """Validate one touch from the snippet, keeping only known keys.

    Raises BadRequest for wrong types and absurd sizes; unknown keys are dropped.
    """
    if raw is None:
        return None
    if not isinstance(raw, dict):
        kind = type(raw).__name__
        raise BadRequest(
            f"Expected {name} to be an object, found {kind}.", code="field"
        )

    touch: dict = {}
    for key in UTM_KEYS + CLICK_IDS:
        value = text_field(raw.get(key), f"{name}.{key}", MAX_VALUE_CHARS)
        if value is not None:
            touch[key] = value
    for key in ("referrer", "landing_page"):
        value = text_field(raw.get(key), f"{name}.{key}", MAX_URL_CHARS)
        if value is not None:
            touch[key] = value
    at = _timestamp(raw.get("at"), f"{name}.at")
    if at is not None:
        touch["at"] = at
    _normalise_utm(touch)
    return touch or None


def _normalise_utm(touch: dict) -> None:
    """Store UTM values in the product's standard form, keeping what arrived
    beside them (``utm_raw``) with the finding codes, for the hygiene view."""
    present = {key: touch[key] for key in UTM_KEYS if key in touch}
    if not present:
        return
    from shared import utm

    normal, raw, findings = utm.normalise_touch_utm(present)
    for key in present:
        if normal.get(key):
            touch[key] = normal[key]
        else:
            touch.pop(key)
    if findings or any(normal.get(k) != raw.get(k) for k in present):
        touch["utm_raw"] = {k: v for k, v in raw.items() if v is not None}
        touch["utm_findings"] = sorted({f.code for f in findings})


def merge_visitor_touches(stored: dict | None, sent: dict) -> dict:
    """The visitor's three touches after this visit.

    The server's record wins for the first touch (a cleared cookie must not
    rewrite history); the snippet's view wins for the last touches, and a
    direct last touch never replaces the stored last non-direct one.
    """
    stored = stored or {}
    first = (
        stored.get("first_touch") or sent.get("first_touch") or sent.get("last_touch")
    )
    last = sent.get("last_touch") or stored.get("last_touch")
    last_non_direct = stored.get("last_non_direct_touch")
    for candidate in (sent.get("last_non_direct_touch"), last):
        if candidate and not is_direct(candidate):
            last_non_direct = candidate
            break
    return {
        "first_touch": first,
        "last_touch": last,
        "last_non_direct_touch": last_non_direct,
    }
