"""Normalising and checking one set of UTM values against the dictionary."""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from anyascii import anyascii

from shared.utm._dictionary import (
    MONTH_KIND,
    CampaignPart,
    Dictionary,
    ValueSet,
    default_dictionary,
)

UTM_FIELDS = ("utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term")
# Platforms substitute their auto-parameters into these two fields only; the
# campaign stays a name, so that reports group by it.
MACRO_FIELDS = frozenset({"utm_content", "utm_term"})
# Longer values are cut before any work: GA4 keeps 100 characters of a
# campaign, and the cap bounds what one request can cost.
MAX_VALUE_CHARS = 200
# A campaign month outside these years is a typo (192511, 302511), not a plan.
MONTH_YEARS = range(2000, 2100)

ERROR = "error"
WARNING = "warning"
# Findings that normalising fixes: the stored value is the standard one, so
# reports stay whole (the link still wants fixing). Every other value finding
# (an unlisted value, a campaign's shape or month, a macro) survives storage.
FIXED_BY_NORMALISING = frozenset(
    {
        "too_long",
        "not_lowercase",
        "non_latin",
        "whitespace",
        "bad_character",
        "bad_separator",
        "alias",
    }
)

# Anything in braces reads as a macro to a person, known or not.
MACRO_LIKE = re.compile(r"\{\{[^{}]*\}\}|\{[^{}]*\}")
_PLACEHOLDER = "\x00"
_SKELETON = re.compile(r"(?:\x00|[a-z0-9]+)(?:_(?:\x00|[a-z0-9]+))*")
# Quotes are dropped rather than turned into "_": transliteration writes the
# Russian soft and hard signs as apostrophes ("объявление" -> "ob'yavlenie").
_QUOTES = re.compile(r"['\"`]")
_NOT_WORD = re.compile(r"[^a-z0-9]+")
_NOT_WORD_OR_SEP = re.compile(r"[^a-z0-9_]")
_UPPER = re.compile(r"[A-Z]")


@dataclass(frozen=True)
class Finding:
    """One problem with a UTM value: what, where, and how to fix it."""

    code: str
    field: str
    value: str | None
    message: str
    suggestion: str | None = None
    severity: str = ERROR

    def to_dict(self) -> dict[str, str | None]:
        return dataclasses.asdict(self)


def _tokens(text: str, macro_re: re.Pattern[str] | None) -> list[tuple[bool, str]]:
    """Split ``text`` into (is_macro, piece) pairs, in order."""
    if macro_re is None:
        return [(False, text)]

    tokens: list[tuple[bool, str]] = []
    start = 0
    for match in macro_re.finditer(text):
        if match.start() > start:
            tokens.append((False, text[start : match.start()]))
        tokens.append((True, match.group()))
        start = match.end()
    if start < len(text):
        tokens.append((False, text[start:]))
    return tokens


def _form_tokens(text: str, macro_re: re.Pattern[str] | None) -> list[tuple[bool, str]]:
    """Like _tokens, but anything in braces counts as a macro too.

    Unknown and misplaced macros get findings of their own, so their braces
    are not reported again as bad characters.
    """
    tokens: list[tuple[bool, str]] = []
    for is_macro, piece in _tokens(text, macro_re):
        tokens += [(True, piece)] if is_macro else _tokens(piece, MACRO_LIKE)
    return tokens


def _normal_text(text: str) -> str:
    ascii_text = anyascii(text).lower()
    return _NOT_WORD.sub("_", _QUOTES.sub("", ascii_text)).strip("_")


def normal_form(text: str, macro_re: re.Pattern[str] | None = None) -> str:
    """``text`` transliterated, lower case, words joined by "_", macros kept.

    The result is at most MAX_VALUE_CHARS long, cut between tokens so that a
    macro is never broken, and empty when nothing usable is left.
    """
    pieces: list[str] = []
    length = -1  # the first piece needs no separator
    for is_macro, piece in _tokens(text[:MAX_VALUE_CHARS], macro_re):
        word = piece if is_macro else _normal_text(piece)
        if not word:
            continue

        room = max(0, MAX_VALUE_CHARS - length - 1)
        if len(word) > room:
            word = "" if is_macro else word[:room].rstrip("_")
            if word:
                pieces.append(word)
            break

        pieces.append(word)
        length += len(word) + 1
    return "_".join(pieces)


def conforms(text: str, macro_re: re.Pattern[str] | None = None) -> bool:
    """True when ``text`` is already in normal form (macros allowed verbatim)."""
    if not text or len(text) > MAX_VALUE_CHARS:
        return False

    skeleton = "".join(
        _PLACEHOLDER if is_macro else piece
        for is_macro, piece in _tokens(text, macro_re)
    )
    return _SKELETON.fullmatch(skeleton) is not None


def _closest(value: str, choices: Sequence[str]) -> str | None:
    matches = difflib.get_close_matches(value, choices, n=1, cutoff=0.75)
    return matches[0] if matches else None


def _form_findings(
    field: str, raw: str, suggestion: str | None, macro_re: re.Pattern[str] | None
) -> list[Finding]:
    """Findings about how ``raw`` is written, whatever it means."""
    found: list[Finding] = []
    if len(raw) > MAX_VALUE_CHARS:
        msg = (
            f"Expected {field} of at most {MAX_VALUE_CHARS} characters, found "
            f"{len(raw)}."
        )
        raw = raw[:MAX_VALUE_CHARS]
        found.append(Finding("too_long", field, raw, msg, suggestion, WARNING))

    tokens = _form_tokens(raw, macro_re)
    literal = "".join(piece for is_macro, piece in tokens if not is_macro)
    odd = sorted(
        {ch for ch in literal if ch < "\x80" and not ch.isspace() and not ch.isalnum()}
        - {"_"}
    )
    problems = (
        ("not_lowercase", _UPPER.search(literal), "in lower case"),
        (
            "non_latin",
            any(ch >= "\x80" and not ch.isspace() for ch in literal),
            "in Latin letters",
        ),
        (
            "whitespace",
            any(ch.isspace() for ch in literal),
            "without spaces (words joined by '_')",
        ),
    )
    for code, present, expected in problems:
        if present:
            msg = f"Expected {field} {expected}, found {raw!r}."
            found.append(Finding(code, field, raw, msg, suggestion))
    if odd:
        msg = (
            f"Expected {field} of letters, digits and '_' only, found "
            f"{''.join(odd)!r} in {raw!r}."
        )
        found.append(Finding("bad_character", field, raw, msg, suggestion))

    # Separators are judged as if every other problem were fixed in place.
    skeleton = "".join(
        _PLACEHOLDER if is_macro else _NOT_WORD_OR_SEP.sub("a", piece.lower())
        for is_macro, piece in tokens
    )
    if not _SKELETON.fullmatch(skeleton):
        msg = (
            f"Expected {field} as words joined by single '_', with none at either "
            f"end, found {raw!r}."
        )
        found.append(Finding("bad_separator", field, raw, msg, suggestion))
    return found


def _macro_findings(
    field: str, raw: str, source: str | None, dictionary: Dictionary
) -> list[Finding]:
    """Findings about platform auto-parameters (macros) in ``raw``."""
    if field not in MACRO_FIELDS:
        match = dictionary.any_macro_re.search(raw) or MACRO_LIKE.search(raw)
        if not match:
            return []
        msg = (
            f"Expected {field} without platform macros (they belong in utm_content "
            f"and utm_term), found {match.group()!r}."
        )
        return [Finding("macro_not_allowed", field, raw, msg)]

    platform = dictionary.platforms.get(source or "")
    if platform:
        owner, known = f"a {platform.name} macro", platform.macros
    else:
        owner = "a macro of a known platform"
        known = tuple(m for p in dictionary.platforms.values() for m in p.macros)

    found = []
    for is_macro, piece in _tokens(raw, dictionary.macro_re_for(source)):
        for match in [] if is_macro else MACRO_LIKE.finditer(piece):
            macro = match.group()
            msg = f"Expected {owner} in {field}, found {macro!r}."
            found.append(
                Finding("macro_unknown", field, raw, msg, _closest(macro, known))
            )
    return found


def _set_value(
    field: str, raw: str, value: str, values: ValueSet
) -> tuple[str, list[Finding]]:
    """Resolve an alias and check membership of a source or medium."""
    if value in values.aliases:
        target = values.aliases[value]
        msg = f"Expected the standard {field} {target!r}, found the alias {value!r}."
        return target, [Finding("alias", field, raw, msg, target, WARNING)]

    if values.accepts(value):
        return value, []

    closest = _closest(value, values.values + tuple(values.aliases))
    closest = values.aliases.get(closest, closest) if closest else None
    severity = ERROR if values.closed else WARNING
    msg = f"Expected a listed {field} value, found {value!r}."
    return value, [Finding("unknown_value", field, raw, msg, closest, severity)]


def _campaign_value(
    raw: str, value: str, dictionary: Dictionary
) -> tuple[str, list[Finding]]:
    """Check each part of a campaign name, resolving part aliases."""
    specs = dictionary.campaign_parts
    parts = value.split("_")
    if len(parts) != len(specs):
        shape = "_".join(spec.name for spec in specs)
        msg = (
            f"Expected utm_campaign as {shape} ({len(specs)} parts joined by '_'), "
            f"found {value!r} with {len(parts)}."
        )
        return value, [Finding("campaign_format", "utm_campaign", raw, msg)]

    # Aliases are resolved first, so that every suggestion is the whole fix.
    final = [
        spec.values.aliases.get(part, part) if spec.kind != MONTH_KIND else part
        for part, spec in zip(parts, specs, strict=True)
    ]
    found: list[Finding] = []
    for index, (part, spec) in enumerate(zip(parts, specs, strict=True)):
        finding = _campaign_part(raw, part, spec, final, index)
        if finding:
            found.append(finding)
    return "_".join(final), found


def _campaign_part(
    raw: str, part: str, spec: CampaignPart, final: list[str], index: int
) -> Finding | None:
    if spec.kind == MONTH_KIND:
        if _is_month(part):
            return None
        msg = (
            f"Expected the {spec.name} part of utm_campaign as a real month "
            f"yyyymm, found {part!r}."
        )
        return Finding("campaign_month", "utm_campaign", raw, msg)

    values = spec.values
    if part in values.aliases:
        msg = (
            f"Expected the standard {spec.name} {final[index]!r} in utm_campaign, "
            f"found the alias {part!r}."
        )
        return Finding("alias", "utm_campaign", raw, msg, "_".join(final), WARNING)

    if values.accepts(part):
        return None
    closest = _closest(part, values.values + tuple(values.aliases))
    suggestion = None
    if closest:
        fixed = [*final[:index], values.aliases.get(closest, closest)]
        suggestion = "_".join(fixed + final[index + 1 :])
    msg = f"Expected a listed {spec.name} in utm_campaign, found {part!r}."
    severity = ERROR if values.closed else WARNING
    return Finding(
        "campaign_part_unknown", "utm_campaign", raw, msg, suggestion, severity
    )


def _is_month(text: str) -> bool:
    if len(text) != 6 or not text.isdigit():
        return False
    return int(text[:4]) in MONTH_YEARS and 1 <= int(text[4:]) <= 12


def check_values(
    values: Mapping[str, str | None], dictionary: Dictionary | None = None
) -> tuple[dict[str, str | None], list[Finding]]:
    """Normalise the present UTM values and report every finding about them.

    ``values`` maps utm_* names to raw strings; absent, None and blank values
    stay None without a finding. A value with nothing usable left after
    normalising becomes None with an ``unusable`` finding.
    """
    dictionary = dictionary or default_dictionary()
    normal: dict[str, str | None] = dict.fromkeys(UTM_FIELDS)
    findings: list[Finding] = []

    # The source goes first: it names the platform whose macros the other
    # fields may carry.
    for field in UTM_FIELDS:
        raw = values.get(field)
        if not isinstance(raw, str) or not raw.strip():
            continue

        source = normal["utm_source"]
        macro_re = dictionary.macro_re_for(source) if field in MACRO_FIELDS else None
        form_re = macro_re or dictionary.any_macro_re
        shown = raw[:MAX_VALUE_CHARS]
        value = normal_form(raw, macro_re)
        # A value already in normal form has nothing to say about its writing
        # (the common case, and the cheap one).
        clean = value == raw
        meaning: list[Finding] = []
        if not value:
            msg = f"Expected {field} with letters or digits, found {shown!r}."
            meaning = [Finding("unusable", field, shown, msg)]
        elif field == "utm_source":
            value, meaning = _set_value(field, shown, value, dictionary.source)
        elif field == "utm_medium":
            value, meaning = _set_value(field, shown, value, dictionary.medium)
        elif field == "utm_campaign":
            value, meaning = _campaign_value(shown, value, dictionary)

        if not clean:
            findings += _form_findings(field, raw, value or None, form_re)
            findings += _macro_findings(field, shown, source, dictionary)
        findings += meaning
        normal[field] = value or None

    return normal, findings


def normalise_touch_utm(
    params: Mapping[str, str | None], dictionary: Dictionary | None = None
) -> tuple[dict[str, str | None], dict[str, str | None], list[Finding]]:
    """Normalise the five utm_* values of one touch for storage.

    Returns (normal values, raw values as received, findings), each dict with
    all five keys. Raw values are cut to MAX_VALUE_CHARS like the rest, so one
    request cannot store an unbounded string; anything that is not a string
    counts as absent. Never raises on any string input.
    """
    raw = {
        field: value[:MAX_VALUE_CHARS] if isinstance(value, str) else None
        for field in UTM_FIELDS
        for value in [params.get(field)]
    }
    # The untruncated values go in, so that a too_long finding says so.
    normal, findings = check_values(params, dictionary)
    return normal, raw, findings
