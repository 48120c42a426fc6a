"""Conversions, the per-site export configuration and the platforms' windows.

A ``Conversion`` is one funnel event of a site (a call, a qualified call, a
lead, a won deal or a deal's revenue adjustment) with what the platforms match
on: the session's click ids and analytics ids, the SHA-256 of the caller's
E.164 number and the visitor's ad consent. Each is exported to each platform
the site configures for its kind, once: the ledger key is
``<platform>:<conversion_id>``.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

from shared.errors import ConfigError

KINDS = ("call", "qualified_call", "lead", "deal", "deal_adjustment")
PLATFORMS = ("google", "yandex", "meta", "vk")
GOOGLE_APIS = ("data_manager", "legacy")

# Ledger states (docs/exports.md has the transitions).
PENDING = "pending"
SENT = "sent"
ACCEPTED = "accepted"
REJECTED = "rejected"
RETRY_AFTER = "retry_after"
EXPIRED = "expired"
STATES = (PENDING, SENT, ACCEPTED, REJECTED, RETRY_AFTER, EXPIRED)
# States in which a conversion is never sent again to that platform.
FINAL = (SENT, ACCEPTED, REJECTED, EXPIRED)

# How old a conversion may be when it reaches the platform. Google Ads counts
# clicks up to 90 days back (the longest click-through window); Metrica links
# a call only to a visit at most 21 days before the upload; Meta refuses
# event_time older than 7 days. VK Ads names no window: 30 days is ours.
WINDOWS = {
    "google": dt.timedelta(days=90),
    "yandex": dt.timedelta(days=21),
    "meta": dt.timedelta(days=7),
    "vk": dt.timedelta(days=30),
}
# The due query looks back as far as the longest window.
LOOKBACK = max(WINDOWS.values())
DEFAULT_QUALIFIED_TALK_S = 60

_DIGITS = re.compile(r"^\d{1,20}$")
_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")


@dataclass(frozen=True)
class Conversion:
    """One funnel event of a site, ready for the payload builders."""

    conversion_id: str
    site_id: str
    kind: str
    occurred_at: dt.datetime
    value: float | None = None
    currency: str | None = None
    consent_ads: bool = False
    click_ids: dict = field(default_factory=dict)
    analytics_ids: dict = field(default_factory=dict)
    caller_hash: str | None = None
    # Meta's form: SHA-256 of the digits without "+" (shared.phones).
    caller_hash_digits: str | None = None
    visitor_id: str | None = None
    call_id: str | None = None
    # When the visitor arrived (the session's touch); windows that count from
    # the click or the visit use it, else the conversion's own time.
    touch_at: dt.datetime | None = None
    landing_page: str | None = None
    answered: bool | None = None
    talk_s: int | None = None
    ring_s: int | None = None
    first_time_caller: bool | None = None
    # For an adjustment: the deal conversion it corrects.
    adjusts: str | None = None

    @property
    def visit_at(self) -> dt.datetime:
        return self.touch_at or self.occurred_at

    @property
    def from_call(self) -> bool:
        return self.kind in ("call", "qualified_call")


@dataclass(frozen=True)
class GoogleConfig:
    customer_id: str
    actions: dict  # kind -> conversion action id
    api: str = "data_manager"
    login_customer_id: str | None = None


@dataclass(frozen=True)
class YandexConfig:
    counter_id: str
    goals: dict  # kind -> goal id (offline_conversions/upload)
    calls: tuple = ("call",)  # kinds sent through upload_calls


@dataclass(frozen=True)
class MetaConfig:
    pixel_id: str
    events: dict  # kind -> event_name
    api_version: str = "v24.0"


@dataclass(frozen=True)
class VkConfig:
    pixel_id: str
    goals: dict  # kind -> goal name


@dataclass(frozen=True)
class ExportConfig:
    """``extra.exports`` of a site document (docs/exports.md, "Configuration")."""

    site_id: str
    currency: str = "RUB"
    timezone: str = "Europe/Moscow"
    qualified_talk_s: int = DEFAULT_QUALIFIED_TALK_S
    values: dict = field(default_factory=dict)  # kind -> fixed value
    google: GoogleConfig | None = None
    yandex: YandexConfig | None = None
    meta: MetaConfig | None = None
    vk: VkConfig | None = None

    def platforms(self) -> list[str]:
        return [p for p in PLATFORMS if getattr(self, p) is not None]

    def kinds(self) -> set[str]:
        """Funnel kinds some platform of this site takes."""
        out: set[str] = set()
        if self.google:
            out |= set(self.google.actions)
        if self.yandex:
            out |= set(self.yandex.goals) | set(self.yandex.calls)
        if self.meta:
            out |= set(self.meta.events)
        if self.vk:
            out |= set(self.vk.goals)
        return out

    def takes(self, platform: str, kind: str) -> bool:
        conf = getattr(self, platform)
        if conf is None:
            return False
        if platform == "google":
            return kind in conf.actions
        if platform == "yandex":
            return kind in conf.goals or kind in conf.calls
        if platform == "meta":
            return kind in conf.events
        return kind in conf.goals


def _kinds_map(raw, what: str, site_id: str, pattern=_NAME) -> dict:
    if not isinstance(raw, dict) or not raw:
        msg = f"Expected {what} of site {site_id} to map funnel kinds, found {raw!r}."
        raise ConfigError(msg)
    out = {}
    for kind, target in raw.items():
        target = str(target)
        if kind not in KINDS or not pattern.match(target):
            msg = (
                f"Expected {what} of site {site_id} to map one of {KINDS} to an "
                f"id, found {kind!r}: {target!r}."
            )
            raise ConfigError(msg)
        out[kind] = target
    return out


def _digits(raw, what: str, site_id: str) -> str:
    text = str(raw or "").replace("-", "")
    if not _DIGITS.match(text):
        msg = f"Expected {what} of site {site_id} to be digits, found {raw!r}."
        raise ConfigError(msg)
    return text


def parse_config(
    site_id: str, extra: dict, currency: str = "RUB", timezone: str = "Europe/Moscow"
) -> ExportConfig | None:
    """The site's export configuration, or None when it exports nothing."""
    raw = (extra or {}).get("exports")
    if not raw:
        return None
    if not isinstance(raw, dict):
        raise ConfigError(f"Expected extra.exports of site {site_id} to be an object.")

    google = yandex = meta = vk = None
    if g := raw.get("google"):
        api = g.get("api", "data_manager")
        if api not in GOOGLE_APIS:
            raise ConfigError(
                f"Expected google.api of site {site_id} in {GOOGLE_APIS}."
            )
        login = g.get("login_customer_id")
        google = GoogleConfig(
            customer_id=_digits(g.get("customer_id"), "google.customer_id", site_id),
            actions=_kinds_map(g.get("actions"), "google.actions", site_id, _DIGITS),
            api=api,
            login_customer_id=(
                _digits(login, "google.login_customer_id", site_id) if login else None
            ),
        )
    if y := raw.get("yandex"):
        calls = tuple(y.get("calls", ["call"]))
        if not set(calls) <= set(KINDS):
            raise ConfigError(f"Expected yandex.calls of site {site_id} in {KINDS}.")
        yandex = YandexConfig(
            counter_id=_digits(y.get("counter_id"), "yandex.counter_id", site_id),
            goals=(
                _kinds_map(y["goals"], "yandex.goals", site_id)
                if y.get("goals")
                else {}
            ),
            calls=calls,
        )
    if m := raw.get("meta"):
        meta = MetaConfig(
            pixel_id=_digits(m.get("pixel_id"), "meta.pixel_id", site_id),
            events=_kinds_map(m.get("events"), "meta.events", site_id),
            api_version=str(m.get("api_version", "v24.0")),
        )
    if v := raw.get("vk"):
        vk = VkConfig(
            pixel_id=_digits(v.get("pixel_id"), "vk.pixel_id", site_id),
            goals=_kinds_map(v.get("goals"), "vk.goals", site_id),
        )

    values = raw.get("values") or {}
    if not all(k in KINDS and isinstance(v, (int, float)) for k, v in values.items()):
        raise ConfigError(f"Expected values of site {site_id} to map kinds to numbers.")
    return ExportConfig(
        site_id=site_id,
        currency=str(raw.get("currency") or currency),
        timezone=timezone,
        qualified_talk_s=int(raw.get("qualified_talk_s", DEFAULT_QUALIFIED_TALK_S)),
        values=dict(values),
        google=google,
        yandex=yandex,
        meta=meta,
        vk=vk,
    )
