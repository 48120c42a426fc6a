"""Site configuration: one Firestore document ``sites/{site_id}`` per site."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from shared import phones, touches
from shared.errors import BadRequest

SITE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{1,62}$")
OVERFLOW_POLICIES = ("default", "share")

# Paid traffic is what a dynamic number exists for; organic and direct visits
# share the default number and cost no pool capacity.
DEFAULT_DYNAMIC_MEDIUMS = ("cpc", "ppc", "cpm", "cpa", "paid", "paid_social", "display")


@dataclass(frozen=True)
class DynamicRule:
    """Which sessions get a number from the pool."""

    mediums: tuple[str, ...] = DEFAULT_DYNAMIC_MEDIUMS
    sources: tuple[str, ...] = ()
    click_ids: bool = True
    everyone: bool = False

    def matches(self, touch: dict | None) -> bool:
        if self.everyone:
            return True
        touch = touch or {}
        if self.click_ids and any(touch.get(key) for key in touches.CLICK_IDS):
            return True
        source, medium = touches.channel(touch)
        return medium in self.mediums or source in self.sources

    def to_dict(self) -> dict:
        return {
            "mediums": list(self.mediums),
            "sources": list(self.sources),
            "click_ids": self.click_ids,
            "everyone": self.everyone,
        }


@dataclass(frozen=True)
class StaticRoute:
    """Non-dynamic traffic matching this touch is shown a static channel number."""

    number: str
    source: str | None = None
    medium: str | None = None

    def matches(self, touch: dict | None) -> bool:
        source, medium = touches.channel(touch)
        if self.source is not None and self.source != source:
            return False
        return self.medium is None or self.medium == medium


# Two minutes: most calls placed after a visit come in its first minutes.
DEFAULT_MIN_COOLDOWN_S = 120


@dataclass(frozen=True)
class Site:
    site_id: str
    default_number: str
    allowed_origins: tuple[str, ...]
    region: str = "RU"
    timezone: str = "Europe/Moscow"
    currency: str = "RUB"
    display_format: str = "international"
    # A lease lasts 120 s and the snippet renews it every 40 s while the page is
    # visible, so two lost heartbeats still keep the number.
    lease_s: int = 120
    renew_s: int = 40
    # After a visit ends its number rests 15 min, so a call placed shortly after
    # leaving still reaches the right session.
    cooldown_s: int = 900
    # Under pressure a number may be reused once it has rested this long,
    # longest-rested first, rather than showing the default number: simulated,
    # this turns a 1.0x-peak pool from 52% to 89% correct (docs/accuracy.md).
    # Set it equal to cooldown_s for a strict cool-down.
    min_cooldown_s: int = DEFAULT_MIN_COOLDOWN_S
    overflow_policy: str = "default"
    dynamic_rule: DynamicRule = field(default_factory=DynamicRule)
    static_routes: tuple[StaticRoute, ...] = ()
    extra: dict = field(default_factory=dict)

    def allows_origin(self, origin: str | None) -> bool:
        return bool(origin) and origin.rstrip("/") in self.allowed_origins

    def static_number_for(self, touch: dict | None) -> str | None:
        for route in self.static_routes:
            if route.matches(touch):
                return route.number
        return None

    def to_doc(self) -> dict:
        return {
            "site_id": self.site_id,
            "default_number": self.default_number,
            "allowed_origins": list(self.allowed_origins),
            "region": self.region,
            "timezone": self.timezone,
            "currency": self.currency,
            "display_format": self.display_format,
            "lease_s": self.lease_s,
            "renew_s": self.renew_s,
            "cooldown_s": self.cooldown_s,
            "min_cooldown_s": self.min_cooldown_s,
            "overflow_policy": self.overflow_policy,
            "dynamic_rule": self.dynamic_rule.to_dict(),
            "static_routes": [
                {"number": r.number, "source": r.source, "medium": r.medium}
                for r in self.static_routes
            ],
            "extra": self.extra,
        }


def _whole(doc: dict, key: str, default: int, minimum: int = 1) -> int:
    value = doc.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        msg = f"Expected {key} to be an integer >= {minimum}, found {value!r}."
        raise BadRequest(msg, code="site_config")
    return value


def site_from_doc(doc: dict) -> Site:
    """Validate a site document (from Firestore or an operator's file)."""
    site_id = doc.get("site_id", "")
    if not isinstance(site_id, str) or not SITE_ID.match(site_id):
        msg = f"Expected site_id of 2-63 of [a-z0-9_-], found {site_id!r}."
        raise BadRequest(msg, code="site_id")

    region = doc.get("region", "RU")
    default_number = phones.to_e164(str(doc.get("default_number", "")), region)
    policy = doc.get("overflow_policy", "default")
    if policy not in OVERFLOW_POLICIES:
        msg = f"Expected overflow_policy in {OVERFLOW_POLICIES}, found {policy!r}."
        raise BadRequest(msg)

    origins = doc.get("allowed_origins") or []
    if not isinstance(origins, list) or not all(isinstance(o, str) for o in origins):
        raise BadRequest(f"Expected allowed_origins as a list, found {origins!r}.")

    cooldown_s = _whole(doc, "cooldown_s", 900, minimum=0)
    min_cooldown_s = _whole(
        doc, "min_cooldown_s", min(cooldown_s, DEFAULT_MIN_COOLDOWN_S), minimum=0
    )
    if min_cooldown_s > cooldown_s:
        msg = (
            f"Expected min_cooldown_s <= cooldown_s ({cooldown_s}), "
            f"found {min_cooldown_s}."
        )
        raise BadRequest(msg, code="site_config")

    rule_doc = doc.get("dynamic_rule") or {}
    rule = DynamicRule(
        mediums=tuple(rule_doc.get("mediums", DEFAULT_DYNAMIC_MEDIUMS)),
        sources=tuple(rule_doc.get("sources", ())),
        click_ids=bool(rule_doc.get("click_ids", True)),
        everyone=bool(rule_doc.get("everyone", False)),
    )
    routes = tuple(
        StaticRoute(
            number=phones.to_e164(r["number"], region),
            source=r.get("source"),
            medium=r.get("medium"),
        )
        for r in doc.get("static_routes") or []
    )
    site = Site(
        site_id=site_id,
        default_number=default_number,
        allowed_origins=tuple(o.rstrip("/") for o in origins),
        region=region,
        timezone=doc.get("timezone", "Europe/Moscow"),
        currency=doc.get("currency", "RUB"),
        display_format=doc.get("display_format", "international"),
        lease_s=_whole(doc, "lease_s", 120),
        renew_s=_whole(doc, "renew_s", 40),
        cooldown_s=cooldown_s,
        min_cooldown_s=min_cooldown_s,
        overflow_policy=policy,
        dynamic_rule=rule,
        static_routes=routes,
        extra=dict(doc.get("extra") or {}),
    )
    phones.display(default_number, site.display_format)  # fails early on a bad template
    return site
