"""CRM hand-off: leads out from stitched calls, deal stages and revenue back.

``crm_lead`` (Pub/Sub, ``calls-stitched``) sends each stitched call to the
site's CRM as a lead (``shared.crm.leads``); ``crm_webhook`` (HTTP) turns the
CRM's deal changes into ``deals`` rows tied to the call's session
(``shared.crm.deals``). One adapter per CRM: ``amocrm`` (also Kommo),
``bitrix24``, ``hubspot`` and ``generic`` (a signed JSON webhook). See
docs/crm.md.
"""

from __future__ import annotations

from shared.crm.amocrm import AmoCrm
from shared.crm.bitrix24 import Bitrix24
from shared.crm.config import CrmConfig
from shared.crm.generic import GenericWebhook
from shared.crm.hubspot import HubSpot


def adapter(cfg: CrmConfig, hubspot_endpoint: str):
    """The adapter for a site's CRM."""
    if cfg.crm == "amocrm":
        return AmoCrm(cfg)
    if cfg.crm == "bitrix24":
        return Bitrix24(cfg)
    if cfg.crm == "hubspot":
        return HubSpot(cfg, hubspot_endpoint)
    return GenericWebhook(cfg)
