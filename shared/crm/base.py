"""What every CRM adapter shares: the lead to send and the deal read back.

An adapter (``amocrm``, ``bitrix24``, ``hubspot``, ``generic``) turns a
``Lead`` into its CRM's requests and a CRM's deal into a ``Deal``. Adapters
are resumable: ``create`` and ``add_call`` keep the ids each step produced in
``state`` and call ``save(state)`` after every CRM write, so a redelivery
after a crash skips the writes that already happened and creates nothing twice.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

from shared.crm import content
from shared.crm.config import CrmConfig
from shared.crm.http import Http

Save = Callable[[dict], None]


@dataclass(frozen=True)
class Lead:
    """One call, as a CRM lead: values, text and the caller's raw number."""

    lead_id: str  # <site_id>:<call_id>
    stitched: dict = field(repr=False)
    phone: str | None = field(repr=False)  # E.164; the CRM is its only recipient
    fields: dict = field(default_factory=dict)
    title: str = ""
    summary: str = ""

    @classmethod
    def of(cls, stitched: dict, repeat: bool = False) -> Lead:
        return cls(
            lead_id=f"{stitched['site_id']}:{stitched['call_id']}",
            stitched=stitched,
            phone=stitched.get("caller") or None,
            fields=content.lead_fields(stitched),
            title=content.title(stitched),
            summary=content.summary(stitched, repeat=repeat),
        )

    def mapped(self, mapping: dict) -> dict:
        """CRM field -> value for the site's mapping of this lead's values."""
        return {
            target: self.fields[key]
            for key, target in mapping.items()
            if key in self.fields
        }


@dataclass(frozen=True)
class Deal:
    """A deal's state after a change, as the CRM reports it."""

    deal_id: str
    lead_id: str | None  # the CRM lead the product created, when known
    stage: str | None
    won: bool
    lost: bool
    revenue: float | None
    currency: str | None
    changed_at: dt.datetime
    pipeline: str | None = None
    call_id: str | None = None  # the generic hook may name the call itself


def money(value) -> float | None:
    """A CRM's amount (number or text like "15000.00") as a float."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def closed(stage: str | None, won: str, lost: str, cfg: CrmConfig) -> tuple[bool, bool]:
    """(won, lost) of a stage: the CRM's own closing stage or one of the site's
    ``won_stages``/``lost_stages`` (pipelines with stages of their own)."""
    return (
        stage == won or stage in cfg.won_stages,
        stage == lost or stage in cfg.lost_stages,
    )


class Adapter:
    """The settings and HTTP every adapter starts from; ``name`` is the CRM's,
    as its errors name it."""

    name: str

    def __init__(self, cfg: CrmConfig, http: Http | None = None) -> None:
        self.cfg = cfg
        self.http = http or Http(self.name)


class NotesOnLead:
    """A repeat call and a late recording as notes on the caller's lead.

    For the CRMs whose leads take notes (amoCRM, Bitrix24 comments, HubSpot
    notes on the deal); the adapter supplies ``_note(lead_id, text)``. The
    ``noted`` mark in ``state`` makes a redelivered call add no second note.
    """

    def _note(self, lead_id: str, text: str) -> None:
        raise NotImplementedError

    def add_call(self, lead_id: str, lead: Lead, state: dict, save: Save) -> None:
        if not state.get("noted"):
            self._note(lead_id, lead.summary)
            state["noted"] = True
            save(state)

    def add_recording(self, lead_id: str, url: str) -> None:
        self._note(lead_id, f"Call recording: {url}")
