"""Checking a tagged URL and building one for a platform."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from urllib.parse import unquote_plus, urlsplit, urlunsplit

from shared.errors import BadRequest
from shared.utm._dictionary import Dictionary, default_dictionary
from shared.utm._values import (
    ERROR,
    FIXED_BY_NORMALISING,
    MACRO_LIKE,
    MAX_VALUE_CHARS,
    UTM_FIELDS,
    WARNING,
    Finding,
    check_values,
)

# An ad link without these cannot be attributed to a campaign.
REQUIRED_FIELDS = ("utm_source", "utm_medium", "utm_campaign")


def _split_url(url: str) -> tuple[str, str, str, str, str] | None:
    try:
        parts = urlsplit(url.strip())
    except ValueError:  # a malformed IPv6 host, for one
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    return parts.scheme, parts.netloc, parts.path, parts.query, parts.fragment


def _bad_url(url: str) -> Finding:
    shown = url[: MAX_VALUE_CHARS * 2]
    msg = f"Expected an absolute http or https URL, found {shown!r}."
    return Finding("url_invalid", "url", shown, msg)


def _query_pairs(query: str) -> list[tuple[str, str, str]]:
    """(name, decoded value, value as written) for each parameter, in order."""
    pairs = []
    for chunk in query.split("&"):
        if chunk:
            name, _, value = chunk.partition("=")
            pairs.append((unquote_plus(name), unquote_plus(value), value))
    return pairs


def _inspect(
    url: str, dictionary: Dictionary | None
) -> tuple[list[Finding], str | None]:
    """The findings about one ad link and the link in normal form (None if
    ``url`` is not a URL): ``validate_url`` and ``normalise_url`` at once,
    so a link checked for ``utm_check`` is split and its values checked once.
    """
    dictionary = dictionary or default_dictionary()
    parts = _split_url(url)
    if parts is None:
        return [_bad_url(url)], None

    scheme, netloc, path, query, fragment = parts
    findings: list[Finding] = []
    values: dict[str, str] = {}
    for name, value, written in _query_pairs(query):
        field = name.lower()
        if not field.startswith("utm_"):
            continue

        if name != field:
            # Analytics tools read parameter names case-sensitively.
            msg = (
                f"Expected the parameter name {field!r} in lower case, found {name!r}."
            )
            findings.append(Finding("parameter_case", field, name, msg, field))
        if field not in UTM_FIELDS:
            msg = (
                f"Expected one of {', '.join(UTM_FIELDS)}, found {name!r}; it is not "
                f"part of the standard and is not stored."
            )
            findings.append(
                Finding("unknown_parameter", field, value, msg, None, WARNING)
            )
            continue
        if field in values:
            msg = f"Expected {field} once, found it again with {value!r}."
            findings.append(Finding("duplicate", field, value, msg))
            continue

        if "%7b" in written.lower() and MACRO_LIKE.search(value):
            # A platform substitutes only a macro written with literal braces.
            msg = f"Expected the macro in {field} unencoded, found {written!r}."
            findings.append(Finding("macro_encoded", field, written, msg, value))
        values[field] = value

    for field in REQUIRED_FIELDS:
        if not values.get(field, "").strip():
            msg = f"Expected {field} in every ad link, found none."
            findings.append(Finding("missing", field, None, msg))

    normal, value_findings = check_values(values, dictionary)

    kept, seen = [], set()
    for chunk in filter(None, query.split("&")):
        field = unquote_plus(chunk.partition("=")[0]).lower()
        if field not in UTM_FIELDS:
            kept.append(chunk)
        elif field not in seen:
            seen.add(field)
            if normal[field]:
                kept.append(f"{field}={normal[field]}")
    link = urlunsplit((scheme, netloc, path or "/", "&".join(kept), fragment))
    return findings + value_findings, link


def validate_url(url: str, dictionary: Dictionary | None = None) -> list[Finding]:
    """Every finding about the UTM parameters of one ad link."""
    return _inspect(url, dictionary)[0]


def normalise_url(url: str, dictionary: Dictionary | None = None) -> str | None:
    """``url`` with each UTM value in normal form; None if it is not a URL.

    The first of each of the five parameters is kept, its name lower case and
    its value normal (decoded macros included); repeats and values with
    nothing usable left are dropped. Other parameters (``utm_id`` too) and the
    fragment stay as written. What normalising cannot fix, such as a missing
    campaign or an unlisted medium, is left for the findings to say.
    """
    return _inspect(url, dictionary)[1]


def compose_link(
    url: str,
    platform: str,
    campaign: Mapping[str, str],
    *,
    content: str | None = None,
    term: str | None = None,
    medium: str | None = None,
    dictionary: Dictionary | None = None,
) -> tuple[str | None, list[Finding]]:
    """Tag ``url`` for ``platform``; returns the link and the findings.

    ``campaign`` maps each campaign part named in the dictionary (by default
    vertical, region, goal, month) to its value. Values are normalised first,
    and what normalising fixes is a warning; content, term and medium default
    to the platform's template and medium. The link is
    None only when ``url`` itself is unusable. Raises BadRequest for an
    unknown platform or a wrong set of campaign parts.
    """
    dictionary = dictionary or default_dictionary()
    spec = dictionary.platforms.get(platform)
    if spec is None:
        known = ", ".join(sorted(dictionary.platforms))
        msg = f"Expected a platform from the dictionary ({known}), found {platform!r}."
        raise BadRequest(msg, code="utm_platform")

    names = [part.name for part in dictionary.campaign_parts]
    if sorted(campaign) != sorted(names):
        msg = (
            f"Expected the campaign parts {', '.join(names)}, found "
            f"{', '.join(campaign) or 'none'}."
        )
        raise BadRequest(msg, code="utm_campaign_parts")

    raw = {
        "utm_source": platform,
        "utm_medium": medium or spec.medium,
        "utm_campaign": "_".join(campaign[name] for name in names),
        "utm_content": content or spec.template.get("utm_content"),
        "utm_term": term or spec.template.get("utm_term"),
    }
    normal, checked = check_values(raw, dictionary)
    # The builder fixes these by normalising its input, so that a part typed
    # as "Москва" gives "msk": warnings here, not errors.
    findings = [
        replace(f, severity=WARNING) if f.code in FIXED_BY_NORMALISING else f
        for f in checked
    ]

    parts = _split_url(url)
    if parts is None:
        return None, [_bad_url(url), *findings]

    scheme, netloc, path, query, fragment = parts
    kept = []
    for chunk in filter(None, query.split("&")):
        name = unquote_plus(chunk.partition("=")[0])
        if not name.lower().startswith("utm_"):
            kept.append(chunk)
            continue
        msg = (
            f"Expected {url!r} without UTM parameters, found {name!r}; it was replaced."
        )
        findings.append(Finding("replaced", name.lower(), chunk, msg, None, WARNING))

    # Values are written as they are: a normal value needs no escaping, and
    # a platform substitutes only a macro written with literal braces.
    tags = [f"{field}={normal[field]}" for field in UTM_FIELDS if normal[field]]
    link = urlunsplit((scheme, netloc, path or "/", "&".join(kept + tags), fragment))
    return link, findings


def build_link(
    url: str,
    platform: str,
    campaign: Mapping[str, str],
    *,
    content: str | None = None,
    term: str | None = None,
    medium: str | None = None,
    dictionary: Dictionary | None = None,
) -> str:
    """The tagged link, or BadRequest naming the first error finding."""
    link, findings = compose_link(
        url,
        platform,
        campaign,
        content=content,
        term=term,
        medium=medium,
        dictionary=dictionary,
    )
    errors = [finding for finding in findings if finding.severity == ERROR]
    if errors or link is None:
        first = errors[0]
        more = f" ({len(errors) - 1} more problems)" if len(errors) > 1 else ""
        raise BadRequest(first.message[:-1] + more + ".", code=f"utm_{first.code}")
    return link
