"""UIS (and CoMagic, the same platform) HTTP notifications.

UIS signs nothing. Each notification is a template the account owner writes
in the UIS cabinet, so the template itself carries the proof: a shared secret,
either as a ``secret`` query parameter of the notification URL or as a
``secret`` field of the JSON body (preferred: URLs end up in access logs).

The template also says which stage it reports, as a literal ``event`` field,
because UIS template names are free text. The supported kinds, one template
each (docs/webhooks.md has the bodies to paste):

- ``start``: incoming call to a virtual number (the tracking number).
- ``answer``: an employee answered.
- ``end``: the call ended; talk, wait and total durations.
- ``recording``: the recording is ready; ``file_link`` is one URL or a list.

``call_session_id`` is the call's id for dedup; ``notification_time`` is local
time in the account's zone ("YYYY-MM-DD HH:MM:SS") or unix seconds.
``tag_names`` and other UIS fields are accepted and ignored. Nothing signed
dates the request, so a replay is only caught by ``shared.callmerge`` dedup.
"""

from __future__ import annotations

import datetime as dt

from shared.callevent import STATUSES, CallEvent
from shared.errors import BadRequest, Unauthorized
from shared.providers import base
from shared.providers.base import ProviderSecrets, WebhookRequest

NAME = "uis"
KINDS = ("start", "answer", "end", "recording")


def verify(req: WebhookRequest, secrets: ProviderSecrets, now: dt.datetime) -> None:
    """Refuse a notification whose shared secret is missing or wrong."""
    expected = secrets.require("uis_secret")
    found = req.query.get("secret")
    if not found:
        body_secret = req.json_object().get("secret")
        found = body_secret if isinstance(body_secret, str) else None
    if not found:
        msg = "Expected the shared secret in ?secret= or the body, found none."
        raise Unauthorized(msg, code="secret_missing")

    if not base.same(expected, found):
        msg = "Expected the configured UIS shared secret, found another value."
        raise Unauthorized(msg, code="secret")


def parse(
    req: WebhookRequest,
    region: str,
    tz: str,
    *,
    now: dt.datetime | None = None,
) -> list[CallEvent]:
    """The events in one notification; every UIS template carries its own time."""
    data = req.json_object()
    kind = base.text(data, "event", NAME)
    if kind not in KINDS:
        msg = f"Expected event to be one of {', '.join(KINDS)}, found {kind[:40]!r}."
        raise BadRequest(msg, code="uis_event")

    call_id = base.text(data, "call_session_id", NAME)
    occurred_at = base.provider_time(
        data.get("notification_time"), tz, "notification_time", NAME
    )
    if kind == "recording":
        return [
            CallEvent(
                provider=NAME,
                provider_call_id=call_id,
                event_kind="recording",
                occurred_at=occurred_at,
                recording_ref=link,
            )
            for link in _links(data)
        ]

    number = base.optional_text(data, "virtual_phone_number", NAME)
    if kind == "start" and number is None:
        msg = "Expected virtual_phone_number in a start notification, found nothing."
        raise BadRequest(msg, code="uis_field")
    caller = base.caller(base.optional_text(data, "contact_phone_number", NAME), region)
    ring_s = base.seconds(data, "wait_time_duration", NAME)
    common = {
        "provider": NAME,
        "provider_call_id": call_id,
        "event_kind": kind,
        "occurred_at": occurred_at,
        "tracking_number": base.tracking(number, region),
        "caller": caller,
    }
    if kind == "start":
        return [CallEvent(**common, started_at=occurred_at, status="ringing")]
    if kind == "answer":
        answer = {"answered": True, "ring_s": ring_s, "status": "in_progress"}
        return [CallEvent(**common, **answer)]
    return [_end(data, common, occurred_at, ring_s)]


def _end(data: dict, common: dict, occurred_at: dt.datetime, ring_s) -> CallEvent:
    talk_s = base.seconds(data, "talk_time_duration", NAME)
    total_s = base.seconds(data, "total_time_duration", NAME)
    status = _status(data)
    if talk_s is not None:
        answered = talk_s > 0
    elif status is not None:
        answered = status == "answered"
    else:
        msg = "Expected talk_time_duration or call_status in an end notification."
        raise BadRequest(msg, code="uis_field")

    # The talk time decides; call_status only refines why nobody talked.
    if answered:
        status = "answered"
    elif status in (None, "answered", "ringing", "in_progress"):
        status = "no_answer"
    started_at = None
    if total_s is not None:
        started_at = occurred_at - dt.timedelta(seconds=total_s)
    return CallEvent(
        **common,
        started_at=started_at,
        answered=answered,
        ring_s=ring_s,
        talk_s=talk_s,
        status=status,
    )


def _status(data: dict) -> str | None:
    # Note: UIS's call_status wording is not published in a form we could
    # confirm, so only our canonical words are read; the answer itself comes
    # from talk_time_duration whenever the template sends it.
    value = data.get("call_status")
    if isinstance(value, str) and value.strip().lower() in STATUSES:
        return value.strip().lower()
    return None


def _links(data: dict) -> list[str]:
    value = data.get("file_link")
    links = value if isinstance(value, list) else [value]
    if value in (None, "") or not all(
        isinstance(link, str) and link.startswith(("https://", "http://"))
        for link in links
    ):
        msg = "Expected file_link as an http(s) URL or a list of them."
        raise BadRequest(msg, code="uis_field")
    # A call with several legs has one file per leg; keep their order.
    return list(dict.fromkeys(links))
