"""A site's CRM settings: ``extra.crm`` of its site document plus its secrets.

``extra.crm`` (Firestore, not secret)::

    {"type": "amocrm" | "kommo" | "bitrix24" | "hubspot" | "webhook",
     "base_url": "https://shop.amocrm.ru",   # amoCRM/Kommo account, or the
                                              # generic receiver's URL
     "account": "shop",                      # amoCRM subdomain its webhooks name
     "pipeline_id": "7001", "stage": "7002", # where new leads start
     "fields": {"campaign": 512345, ...},    # FIELDS key -> CRM field
     "tags": ["calltracking"], "dedup_days": 30, "currency": "RUB",
     "won_stages": [...], "lost_stages": [...]}

Secrets (``CALLTRACK_CRM_SECRETS``, per site): ``amocrm_token``,
``amocrm_webhook_secret``, ``bitrix24_webhook_url``,
``bitrix24_application_token``, ``hubspot_token``, ``hubspot_client_secret``,
``webhook_secret``. See docs/crm.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.crm.content import FIELDS
from shared.errors import ConfigError

TYPES = ("amocrm", "bitrix24", "hubspot", "webhook")
# Kommo is amoCRM's international edition: the same API on another host.
ALIASES = {"kommo": "amocrm"}
SECRET_NAMES = (
    "amocrm_token",
    "amocrm_webhook_secret",
    "bitrix24_webhook_url",
    "bitrix24_application_token",
    "hubspot_token",
    "hubspot_client_secret",
    "webhook_secret",
)
# A repeat caller's lead older than this is history, not an open enquiry.
DEFAULT_DEDUP_DAYS = 30


@dataclass(frozen=True)
class CrmConfig:
    site_id: str
    crm: str
    base_url: str | None
    pipeline_id: str | None
    stage: str | None
    fields: dict
    tags: tuple[str, ...]
    dedup_days: int
    currency: str
    won_stages: tuple[str, ...]
    lost_stages: tuple[str, ...]
    responsible_user_id: int | None
    account: str | None
    secrets: dict = field(repr=False, compare=False)

    def secret(self, name: str) -> str:
        value = self.secrets.get(name)
        if not value:
            msg = (
                f"Expected CRM secret {name} for site {self.site_id} in "
                "CALLTRACK_CRM_SECRETS, found none."
            )
            raise ConfigError(msg, code="crm_secret")
        return value


def _text(value) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ConfigError(
            f"Expected text or a number, found {value!r:.40}.", code="crm_config"
        )
    return str(value)


def _texts(value, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ConfigError(f"Expected extra.crm.{name} as a list.", code="crm_config")
    return tuple(str(v) for v in value)


def from_site(site, all_secrets: dict) -> CrmConfig | None:
    """The site's CRM settings, or None when the site has no CRM."""
    doc = site.extra.get("crm")
    if not doc:
        return None
    if not isinstance(doc, dict):
        raise ConfigError(
            f"Expected extra.crm of site {site.site_id} as an object.",
            code="crm_config",
        )
    crm = ALIASES.get(doc.get("type"), doc.get("type"))
    if crm not in TYPES:
        msg = (
            f"Expected extra.crm.type of site {site.site_id} in "
            f"{', '.join(TYPES)} or kommo, found {doc.get('type')!r:.40}."
        )
        raise ConfigError(msg, code="crm_config")

    mapping = doc.get("fields") or {}
    unknown = sorted(set(mapping) - set(FIELDS)) if isinstance(mapping, dict) else []
    if not isinstance(mapping, dict) or unknown:
        msg = (
            f"Expected extra.crm.fields of site {site.site_id} to map lead "
            f"values ({', '.join(FIELDS)}), found {unknown or mapping!r:.80}."
        )
        raise ConfigError(msg, code="crm_config")
    secrets = all_secrets.get(site.site_id) or {}
    strange = sorted(set(secrets) - set(SECRET_NAMES))
    if strange:
        msg = (
            f"Expected CRM secret names among {', '.join(SECRET_NAMES)} for "
            f"site {site.site_id}, found {', '.join(strange)}."
        )
        raise ConfigError(msg, code="crm_secret")
    days = doc.get("dedup_days", DEFAULT_DEDUP_DAYS)
    if isinstance(days, bool) or not isinstance(days, int) or days < 0:
        raise ConfigError("Expected extra.crm.dedup_days >= 0.", code="crm_config")
    user = doc.get("responsible_user_id")
    base_url = _text(doc.get("base_url"))
    if crm in ("amocrm", "webhook") and not base_url:
        msg = f"Expected extra.crm.base_url for {crm} on site {site.site_id}."
        raise ConfigError(msg, code="crm_config")
    return CrmConfig(
        site_id=site.site_id,
        crm=crm,
        base_url=base_url.rstrip("/") if base_url else None,
        pipeline_id=_text(doc.get("pipeline_id")),
        stage=_text(doc.get("stage")),
        fields=dict(mapping),
        tags=_texts(doc.get("tags", ["calltracking"]), "tags"),
        dedup_days=days,
        currency=str(doc.get("currency") or site.currency),
        won_stages=_texts(doc.get("won_stages"), "won_stages"),
        lost_stages=_texts(doc.get("lost_stages"), "lost_stages"),
        responsible_user_id=int(user) if user is not None else None,
        account=_text(doc.get("account")),
        secrets=dict(secrets),
    )
