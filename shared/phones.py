"""Phone numbers: parse to E.164, hash and mask for storage, format for display.

The raw caller number is personal data. Outside the CRM hand-off the product
keeps only ``phone_hash`` (SHA-256 hex of the E.164 string, the normalisation the
ad platforms also expect) and ``mask`` (country code and last two digits).
"""

from __future__ import annotations

import functools
import hashlib

import phonenumbers
from phonenumbers import PhoneNumberFormat

from shared.errors import BadRequest

_STYLES = {
    "e164": PhoneNumberFormat.E164,
    "international": PhoneNumberFormat.INTERNATIONAL,
    "national": PhoneNumberFormat.NATIONAL,
}


def to_e164(raw: str, region: str | None = "RU") -> str:
    """Return ``raw`` in E.164; national forms are read in ``region``.

    Raises BadRequest when the text is not a possible phone number.
    """
    text = (raw or "").strip()
    if not text:
        raise BadRequest("Expected a phone number, found an empty value.", code="phone")

    # Providers often drop the "+" from international numbers ("74951234567").
    if text.isdigit() and len(text) > 10 and not (region == "RU" and text[0] == "8"):
        text = "+" + text
    try:
        parsed = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        msg = f"Expected a phone number, found {mask_text(text)!r}."
        raise BadRequest(msg, code="phone") from None
    if not phonenumbers.is_possible_number(parsed):
        msg = f"Expected a possible phone number, found {mask_text(text)!r}."
        raise BadRequest(msg, code="phone")
    return phonenumbers.format_number(parsed, PhoneNumberFormat.E164)


def phone_hash(e164: str) -> str:
    """SHA-256 hex of the E.164 string (the form Google Ads and Meta match on)."""
    return hashlib.sha256(e164.strip().encode()).hexdigest()


def digits_hash(e164: str) -> str:
    """SHA-256 hex of the number's digits without "+" (Meta's ``ph`` form).

    Neither hash can be derived from the other, so the stitcher makes both
    while it still has the number.
    """
    return hashlib.sha256("".join(ch for ch in e164 if ch.isdigit()).encode()
                          ).hexdigest()


def mask(e164: str) -> str:
    """A form safe for logs and reports: ``+7*******67``."""
    if len(e164) <= 4:
        return "*" * len(e164)
    head = e164[:2] if e164.startswith("+") else e164[:1]
    return head + "*" * (len(e164) - len(head) - 2) + e164[-2:]


def mask_text(text: str) -> str:
    """Mask every digit but the last two of free text (for error messages)."""
    digits = sum(ch.isdigit() for ch in text)
    seen = 0
    out = []
    for ch in text:
        if ch.isdigit():
            seen += 1
            out.append(ch if seen > digits - 2 else "*")
        else:
            out.append(ch)
    return "".join(out)


@functools.lru_cache(maxsize=4096)
def display(e164: str, style: str = "international") -> str:
    """Format a number for a page.

    ``style`` is ``e164``, ``international``, ``national`` or a template in
    which each ``#`` takes the next national digit, e.g. ``+7 (###) ###-##-##``.
    """
    parsed = phonenumbers.parse(e164, None)
    if style in _STYLES:
        return phonenumbers.format_number(parsed, _STYLES[style])

    digits = str(parsed.national_number)
    if style.count("#") != len(digits):
        msg = (
            f"Expected a display template with {len(digits)} '#' for {mask(e164)}, "
            f"found {style!r}."
        )
        raise BadRequest(msg, code="display_format")
    it = iter(digits)
    return "".join(next(it) if ch == "#" else ch for ch in style)
