"""The UTM dictionary: allowed values, patterns and per-platform auto-parameters.

The product ships ``shared/utm_dictionary.toml``; a site extends it with a file
of the same shape. Extending adds list items to the default lists, merges tables
key by key and replaces any other value, so a site can add values and aliases
or reopen and close a set, but cannot drop a default value.
"""

from __future__ import annotations

import functools
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.errors import ConfigError

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "utm_dictionary.toml"

# A normal value: Latin lower case letters and digits, words joined by one "_".
NORMAL_VALUE = re.compile(r"[a-z0-9]+(?:_[a-z0-9]+)*")
MONTH_KIND = "month"
# A macro must never match inside normal text, or normalising twice could cut
# words apart differently: it needs a character normal text lacks ("{", upper
# case) or a doubled "_", and nothing that would end a URL parameter.
_MACRO_SHAPE = re.compile(r"(?=.*(?:[^a-z0-9_]|__))[^\s&=#?]+")
_PART_NAME = re.compile(r"[a-z][a-z0-9]*")

_SET_KEYS = {"closed", "values", "aliases", "pattern"}
_PART_KEYS = _SET_KEYS | {"kind"}
_PLATFORM_KEYS = {"medium", "macros", "macro_patterns", "template"}
_TEMPLATE_FIELDS = ("utm_content", "utm_term")
_TOP_KEYS = {"source", "medium", "campaign", "platforms"}


@dataclass(frozen=True)
class ValueSet:
    """The accepted values of one field or campaign part."""

    values: tuple[str, ...]
    aliases: Mapping[str, str]
    pattern: re.Pattern[str] | None
    closed: bool

    def accepts(self, value: str) -> bool:
        if value in self.values:
            return True
        return self.pattern is not None and self.pattern.fullmatch(value) is not None


@dataclass(frozen=True)
class CampaignPart:
    name: str
    kind: str  # "set" or "month"
    values: ValueSet


@dataclass(frozen=True)
class Platform:
    """An ad platform: its key is also its utm_source value."""

    name: str
    medium: str
    macros: tuple[str, ...]
    macro_patterns: tuple[re.Pattern[str], ...]
    template: Mapping[str, str]
    macro_re: re.Pattern[str]


@dataclass(frozen=True)
class Dictionary:
    source: ValueSet
    medium: ValueSet
    campaign_parts: tuple[CampaignPart, ...]
    platforms: Mapping[str, Platform]
    # Matches any platform's macro: used when utm_source names no platform.
    any_macro_re: re.Pattern[str]

    def macro_re_for(self, source: str | None) -> re.Pattern[str]:
        platform = self.platforms.get(source or "")
        return platform.macro_re if platform else self.any_macro_re


@functools.cache
def default_dictionary() -> Dictionary:
    """The shipped dictionary, read once per process."""
    return _build(_read(DEFAULT_PATH))


def load_dictionary(path: str | os.PathLike[str] | None = None) -> Dictionary:
    """The default dictionary extended by the site file at ``path``, if any.

    Raises ConfigError when the file cannot be read or does not fit the format.
    """
    if path is None:
        return default_dictionary()
    return extend_dictionary(_read(Path(path)))


def extend_dictionary(extra: Mapping[str, Any]) -> Dictionary:
    """The default dictionary extended by an already parsed site dictionary."""
    return _build(_merge(_read(DEFAULT_PATH), extra))


def _read(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        msg = f"Expected a readable UTM dictionary at {str(path)!r}, found {exc}."
        raise ConfigError(msg, code="utm_dictionary") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        msg = f"Expected TOML in the UTM dictionary {str(path)!r}, found: {exc}."
        raise ConfigError(msg, code="utm_dictionary") from None


def _merge(base: Any, extra: Any) -> Any:
    if isinstance(base, dict) and isinstance(extra, Mapping):
        merged = dict(base)
        for key, value in extra.items():
            merged[key] = _merge(base[key], value) if key in base else value
        return merged

    if isinstance(base, list) and isinstance(extra, list):
        return base + [item for item in extra if item not in base]

    return extra


def _fail(where: str, expected: str, found: object) -> ConfigError:
    msg = f"Expected {where} in the UTM dictionary to be {expected}, found {found!r}."
    return ConfigError(msg, code="utm_dictionary")


def _check_keys(where: str, table: object, allowed: set[str]) -> Mapping[str, Any]:
    if not isinstance(table, Mapping):
        raise _fail(where, "a table", table)
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise _fail(where, f"a table of {', '.join(sorted(allowed))}", unknown[0])
    return table


def _normal_list(where: str, items: object, *, one_word: bool) -> tuple[str, ...]:
    if not isinstance(items, list):
        raise _fail(where, "a list", items)
    for item in items:
        if not isinstance(item, str) or not NORMAL_VALUE.fullmatch(item):
            raise _fail(where, "normal values (lower case Latin, digits, '_')", item)
        if one_word and "_" in item:
            raise _fail(where, "single words (a campaign part has no '_')", item)
    return tuple(items)


def _value_set(where: str, table: Mapping[str, Any], *, one_word: bool) -> ValueSet:
    values = _normal_list(f"{where}.values", table.get("values", []), one_word=one_word)

    aliases = table.get("aliases", {})
    if not isinstance(aliases, Mapping):
        raise _fail(f"{where}.aliases", "a table", aliases)
    _normal_list(f"{where}.aliases", list(aliases), one_word=one_word)
    for alias, target in aliases.items():
        # An alias must lead to a listed value in one step, or normalising
        # twice would not give the same result.
        if target not in values or alias in values:
            expected = "an unlisted key naming a listed value"
            raise _fail(f"{where}.aliases.{alias}", expected, target)

    raw_pattern = table.get("pattern", "")
    if not isinstance(raw_pattern, str):
        raise _fail(f"{where}.pattern", "a regular expression", raw_pattern)
    try:
        pattern = re.compile(raw_pattern) if raw_pattern else None
    except re.error as exc:
        expected = f"a regular expression ({exc})"
        raise _fail(f"{where}.pattern", expected, raw_pattern) from None

    closed = table.get("closed", True)
    if not isinstance(closed, bool):
        raise _fail(f"{where}.closed", "true or false", closed)
    return ValueSet(values, dict(aliases), pattern, closed)


def _macro_re(macros: tuple[str, ...], patterns: tuple[str, ...]) -> re.Pattern[str]:
    # Longest first, so "__AID_NAME__" wins over "__AID__" where both fit.
    literal = [re.escape(m) for m in sorted(macros, key=len, reverse=True)]
    alternatives = literal + [f"(?:{p})" for p in patterns]
    return re.compile("|".join(alternatives) if alternatives else r"(?!)")


def _platform(name: str, table: object, medium_set: ValueSet) -> Platform:
    where = f"platforms.{name}"
    table = _check_keys(where, table, _PLATFORM_KEYS)

    medium = table.get("medium", "cpc")
    if medium not in medium_set.values:
        raise _fail(f"{where}.medium", "a listed utm_medium value", medium)

    macros = table.get("macros", [])
    if not isinstance(macros, list):
        raise _fail(f"{where}.macros", "a list", macros)
    for macro in macros:
        if not isinstance(macro, str) or not _MACRO_SHAPE.fullmatch(macro):
            expected = "macros such as '{keyword}' or '__CID__'"
            raise _fail(f"{where}.macros", expected, macro)

    raw_patterns = table.get("macro_patterns", [])
    if not isinstance(raw_patterns, list):
        raise _fail(f"{where}.macro_patterns", "a list", raw_patterns)
    for raw in raw_patterns:
        # A leading brace keeps a pattern from matching inside normal text.
        if not isinstance(raw, str) or not raw.startswith("\\{"):
            expected = "regular expressions starting with a brace ('\\{')"
            raise _fail(f"{where}.macro_patterns", expected, raw)
    try:
        patterns = tuple(re.compile(p) for p in raw_patterns)
    except (re.error, TypeError) as exc:
        expected = f"regular expressions ({exc})"
        raise _fail(f"{where}.macro_patterns", expected, raw_patterns) from None

    macro_re = _macro_re(tuple(macros), tuple(raw_patterns))
    template = _check_keys(
        f"{where}.template", table.get("template", {}), set(_TEMPLATE_FIELDS)
    )
    for field, value in template.items():
        # A template is macros joined by "_": checked here so that a link
        # built from it always passes the lint.
        leftover = macro_re.sub("", value) if isinstance(value, str) else None
        if not value or leftover is None or leftover.strip("_"):
            raise _fail(f"{where}.template.{field}", f"macros of {name}", value)

    return Platform(name, medium, tuple(macros), patterns, dict(template), macro_re)


def _build(data: Mapping[str, Any]) -> Dictionary:
    data = _check_keys("the top level", data, _TOP_KEYS)
    source = _value_set(
        "source",
        _check_keys("source", data.get("source", {}), _SET_KEYS),
        one_word=False,
    )
    medium = _value_set(
        "medium",
        _check_keys("medium", data.get("medium", {}), _SET_KEYS),
        one_word=False,
    )

    campaign = data.get("campaign", {})
    if not isinstance(campaign, Mapping):
        raise _fail("campaign", "a table", campaign)
    names = campaign.get("parts", [])
    if (
        not isinstance(names, list)
        or not names
        or len(set(map(str, names))) != len(names)
        or not all(isinstance(n, str) and _PART_NAME.fullmatch(n) for n in names)
    ):
        expected = "a list of distinct lower-case part names"
        raise _fail("campaign.parts", expected, names)
    _check_keys("campaign", campaign, {"parts", *names})
    parts = []
    for name in names:
        where = f"campaign.{name}"
        table = _check_keys(where, campaign.get(name, {}), _PART_KEYS)
        kind = table.get("kind", "set")
        if kind not in ("set", MONTH_KIND):
            raise _fail(f"{where}.kind", "'set' or 'month'", kind)
        parts.append(CampaignPart(name, kind, _value_set(where, table, one_word=True)))

    raw_platforms = data.get("platforms", {})
    if not isinstance(raw_platforms, Mapping):
        raise _fail("platforms", "a table", raw_platforms)
    platforms = {}
    for name, table in raw_platforms.items():
        if name not in source.values:
            raise _fail(f"platforms.{name}", "named by a listed utm_source value", name)
        platforms[name] = _platform(name, table, medium)

    every_macro = tuple(m for p in platforms.values() for m in p.macros)
    every_pattern = tuple(
        r.pattern for p in platforms.values() for r in p.macro_patterns
    )
    return Dictionary(
        source=source,
        medium=medium,
        campaign_parts=tuple(parts),
        platforms=platforms,
        any_macro_re=_macro_re(tuple(dict.fromkeys(every_macro)), every_pattern),
    )
