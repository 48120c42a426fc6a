"""The ``utm_check`` API without HTTP: request bodies in, response bodies out.

Each function validates its body (BadRequest naming the field) and answers with
plain JSON-ready dicts, so the function stays a thin adapter and everything here
is tested without a server. Nothing is stored: every call is idempotent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.errors import BadRequest
from shared.touches import text_field
from shared.utm._dictionary import Dictionary
from shared.utm._links import _inspect, compose_link
from shared.utm._values import ERROR, UTM_FIELDS, Finding, normalise_touch_utm

# A spreadsheet of one campaign launch fits; more is split by the caller. One
# check costs well under a millisecond, so a full request stays far below a
# second.
MAX_LINKS = 500
# The same bound as a landing page on the assign path.
MAX_URL_CHARS = 2048
# Values are cut to 200 characters anyway; longer input is not a tag.
MAX_TEXT_CHARS = 500


def _text(body: Mapping[str, Any], key: str, limit: int, *, required: bool = False):
    value = body.get(key)
    if required and value is None:
        raise BadRequest(f"Expected {key}, found none.", code="field")
    if required and value == "":
        # Present but empty is not missing: the checks that follow judge it.
        return value
    return text_field(value, key, limit)


def _only(body: Mapping[str, Any], allowed: set[str]) -> None:
    """Unknown keys are refused: a typo (``url`` for ``urls``) must not pass
    as an empty, clean request."""
    unknown = sorted(set(body) - allowed)
    if unknown:
        msg = f"Expected only {', '.join(sorted(allowed))}, found {unknown[0]!r:.60}."
        raise BadRequest(msg, code="field")


def _counts(findings: list[Finding]) -> dict[str, Any]:
    errors = sum(1 for f in findings if f.severity == ERROR)
    return {
        "ok": errors == 0,
        "errors": errors,
        "warnings": len(findings) - errors,
        "findings": [f.to_dict() for f in findings],
    }


def check_links(body: Mapping[str, Any], dictionary: Dictionary) -> dict[str, Any]:
    """``{"urls": [...]}`` (or one ``"url"``): the findings of each link.

    Each result has the link as sent, ``ok`` (no error finding), the counts,
    the findings and ``normalised_url`` (see ``normalise_url``).
    """
    _only(body, {"url", "urls"})
    if ("url" in body) == ("urls" in body):
        raise BadRequest("Expected either url or urls, found both or neither.")
    urls = [body["url"]] if "url" in body else body["urls"]
    if not isinstance(urls, list) or not 1 <= len(urls) <= MAX_LINKS:
        msg = f"Expected urls as a list of 1 to {MAX_LINKS} links."
        raise BadRequest(msg, code="field")

    results = []
    for index, url in enumerate(urls):
        name = "url" if "url" in body else f"urls[{index}]"
        url = _text({name: url}, name, MAX_URL_CHARS, required=True)
        findings, normalised = _inspect(url, dictionary)
        results.append({"url": url, **_counts(findings), "normalised_url": normalised})
    return {
        "ok": all(r["ok"] for r in results),
        "links": len(results),
        "errors": sum(r["errors"] for r in results),
        "warnings": sum(r["warnings"] for r in results),
        "results": results,
    }


def check_values(body: Mapping[str, Any], dictionary: Dictionary) -> dict[str, Any]:
    """``{"utm_source": ..., ...}``: the values as the warehouse would store them.

    The same normalisation as the assign path, and the findings on the raw
    values; no field is required (a form may check one at a time).
    """
    _only(body, set(UTM_FIELDS))
    raw = {field: _text(body, field, MAX_TEXT_CHARS) for field in UTM_FIELDS}
    normal, _, findings = normalise_touch_utm(raw, dictionary)
    return {"values": normal, **_counts(findings)}


def build(body: Mapping[str, Any], dictionary: Dictionary) -> dict[str, Any]:
    """``{"url", "platform", "campaign": {part: value}, "content"?, "term"?,
    "medium"?}``: the tagged link, or ``link: null`` with the findings when the
    parts break the standard."""
    _only(body, {"url", "platform", "campaign", "content", "term", "medium"})
    url = _text(body, "url", MAX_URL_CHARS, required=True)
    platform = _text(body, "platform", MAX_TEXT_CHARS, required=True)
    campaign = body.get("campaign")
    if not isinstance(campaign, dict):
        raise BadRequest("Expected campaign as an object of parts.", code="field")
    parts = {
        str(name)[:60]: _text(campaign, name, MAX_TEXT_CHARS, required=True)
        for name in campaign
    }

    link, findings = compose_link(
        url,
        platform,
        parts,
        content=_text(body, "content", MAX_TEXT_CHARS),
        term=_text(body, "term", MAX_TEXT_CHARS),
        medium=_text(body, "medium", MAX_TEXT_CHARS),
        dictionary=dictionary,
    )
    counted = _counts(findings)
    return {"link": link if counted["ok"] else None, **counted}


def describe(dictionary: Dictionary) -> dict[str, Any]:
    """The dictionary's allowed values, for a form's choices."""

    def value_set(values) -> dict[str, Any]:
        return {
            "closed": values.closed,
            "values": list(values.values),
            "aliases": dict(values.aliases),
            "pattern": values.pattern.pattern if values.pattern else None,
        }

    return {
        "source": value_set(dictionary.source),
        "medium": value_set(dictionary.medium),
        "campaign": {
            "parts": [
                {"name": part.name, "kind": part.kind, **value_set(part.values)}
                for part in dictionary.campaign_parts
            ]
        },
        "platforms": {
            name: {
                "medium": platform.medium,
                "macros": list(platform.macros),
                "template": dict(platform.template),
            }
            for name, platform in dictionary.platforms.items()
        },
    }
