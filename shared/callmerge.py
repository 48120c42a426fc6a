"""Fold one provider call's events into one call record, in any order.

``merge(record, event)`` is pure: it takes the stored record (or None) and one
``CallEvent`` and returns the new record plus what to publish. The caller reads,
merges and writes inside one Firestore transaction, so concurrent events for a
call serialise on the record.

Providers deliver at least once and in no fixed order, so the merge is built
to make a repeat harmless:

- every event leaves a key in ``seen``; an event whose key is there already
  changes nothing;
- fields only fill in or improve: the earliest ``started_at``, the longest
  ``ring_s`` and ``talk_s``, ``answered`` once true stays true, a final
  status is never replaced by a ringing or in-progress one;
- ``completed`` turns true with the first end event and stays true.

Publishing is at least once as well. ``publish_completed`` is true whenever the
record is complete and ``completed_published`` is not yet set, including on a
repeated event: if the publish (or the write marking it) failed, the provider's
retry publishes again. After a successful publish the caller sets the mark with
``mark_published(record, "completed", refs)`` in a second transaction; in the
ordinary flow that makes the completed message go out exactly once. A crash
between the publish and the mark, or two events of one call racing, can
publish twice; consumers key on (provider, provider_call_id), which makes the
repeat harmless. A record left complete but unmarked (the provider never
retried) is found by querying ``completed == true`` and
``completed_published == false``.

A recording that arrives after the completed message went out is published on
its own: ``publish_recording`` is true while any ref in ``recording_refs`` is
missing from ``published_recordings``, and ``mark_published(record,
"recording", refs)`` records it. Refs carried by the completed message are
marked with it, so they are never published twice in the ordinary flow.

The record never holds the raw caller number, only ``caller_hash`` and
``caller_mask``.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass

from shared.callevent import FINAL_STATUSES, CallEvent
from shared.phones import mask, phone_hash

SCHEMA = 1
# Ranks of the status ladder; a merge never moves a record down it.
_RANK = {"ringing": 0, "in_progress": 1} | {status: 2 for status in FINAL_STATUSES}
# 64 bits of SHA-256 keep ``seen`` small; a collision within one call's
# handful of events is out of reach.
_KEY_HEX = 16


@dataclass(frozen=True)
class MergeResult:
    """The merged record and what the caller should publish now.

    ``recordings_to_publish`` lists the refs a recording message should carry
    when ``publish_recording`` is true, in arrival order.
    """

    record: dict
    changed: bool
    publish_completed: bool
    publish_recording: bool
    recordings_to_publish: tuple[str, ...] = ()


def new_record(provider: str, provider_call_id: str) -> dict:
    """An empty record for a call; ``merge`` makes one when given None."""
    return {
        "schema": SCHEMA,
        "provider": provider,
        "provider_call_id": provider_call_id,
        "tracking_number": None,
        "caller_hash": None,
        "caller_mask": None,
        "started_at": None,
        "first_event_at": None,
        "last_event_at": None,
        "answered": None,
        "ring_s": None,
        "talk_s": None,
        "status": None,
        "recording_refs": [],
        "completed": False,
        "completed_at": None,
        "completed_published": False,
        "published_recordings": [],
        "seen": [],
    }


def event_key(event: CallEvent) -> str:
    """A key equal for repeats of one provider event and distinct otherwise.

    ``occurred_at`` is left out: for events without a time of their own it is
    the receipt time, which differs between a request and its retry. The raw
    caller is left out too, so the key never encodes it.
    """
    body = event.to_dict()
    body.pop("occurred_at")
    body.pop("caller")
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:_KEY_HEX]


def merge(record: dict | None, event: CallEvent) -> MergeResult:
    """``record`` with ``event`` folded in; the input record is not modified."""
    if record is None:
        record = new_record(event.provider, event.provider_call_id)
    _check_same_call(record, event)
    # A record written by an older schema lacks newer fields; start them empty.
    record = new_record(event.provider, event.provider_call_id) | record

    key = event_key(event)
    if key in record["seen"]:
        return _result(record, changed=False)

    merged = copy.deepcopy(record)
    merged["seen"].append(key)
    _fill_identity(merged, event)
    _fill_times(merged, event)
    _fill_outcome(merged, event)
    if event.recording_ref and event.recording_ref not in merged["recording_refs"]:
        merged["recording_refs"].append(event.recording_ref)

    return _result(merged, changed=merged != record)


def mark_published(record: dict, kind: str, refs: Iterable[str] = ()) -> dict:
    """A copy of ``record`` noting a successful publish of ``kind``.

    ``kind`` is "completed" or "recording"; ``refs`` are the recording refs the
    published message carried, so each is published once.
    """
    if kind not in ("completed", "recording"):
        msg = f"Expected kind 'completed' or 'recording', found {kind!r}."
        raise ValueError(msg)
    refs = list(refs)
    if kind == "completed" and not record.get("completed"):
        msg = "Expected a completed record to mark as published, found an open call."
        raise ValueError(msg)
    if kind == "recording" and not refs:
        msg = "Expected the recording refs that were published, found none."
        raise ValueError(msg)

    marked = copy.deepcopy(record)
    marked.setdefault("published_recordings", [])
    if kind == "completed":
        marked["completed_published"] = True
    for ref in refs:
        if ref not in marked["published_recordings"]:
            marked["published_recordings"].append(ref)
    return marked


def _result(record: dict, *, changed: bool) -> MergeResult:
    pending = tuple(
        ref
        for ref in record["recording_refs"]
        if ref not in record["published_recordings"]
    )
    complete = bool(record["completed"])
    published = bool(record["completed_published"])
    return MergeResult(
        record=record,
        changed=changed,
        publish_completed=complete and not published,
        publish_recording=published and bool(pending),
        recordings_to_publish=pending if published else (),
    )


def _check_same_call(record: dict, event: CallEvent) -> None:
    found = (record.get("provider"), record.get("provider_call_id"))
    if found != (event.provider, event.provider_call_id):
        msg = (
            f"Expected an event of call {found!r}, found one of "
            f"{(event.provider, event.provider_call_id)!r}."
        )
        raise ValueError(msg)


def _fill_identity(record: dict, event: CallEvent) -> None:
    # The first number seen wins: later events of one call repeat it, and a
    # record must not flip between numbers if a provider disagrees with itself.
    if record["tracking_number"] is None and event.tracking_number:
        record["tracking_number"] = event.tracking_number
    if record["caller_hash"] is None and event.caller:
        record["caller_hash"] = phone_hash(event.caller)
        record["caller_mask"] = mask(event.caller)


def _fill_times(record: dict, event: CallEvent) -> None:
    record["started_at"] = _earliest(record["started_at"], event.started_at)
    record["first_event_at"] = _earliest(record["first_event_at"], event.occurred_at)
    record["last_event_at"] = _latest(record["last_event_at"], event.occurred_at)
    if event.event_kind == "end":
        record["completed"] = True
        record["completed_at"] = _earliest(record["completed_at"], event.occurred_at)


def _fill_outcome(record: dict, event: CallEvent) -> None:
    record["ring_s"] = _largest(record["ring_s"], event.ring_s)
    record["talk_s"] = _largest(record["talk_s"], event.talk_s)
    if event.answered is True:
        record["answered"] = True
    elif record["answered"] is None:
        record["answered"] = event.answered

    status = record["status"]
    if event.status is not None:
        if status is None or _RANK[event.status] > _RANK[status]:
            status = event.status
        elif event.status == "answered" and status in FINAL_STATUSES:
            # Two outcomes disagree: any evidence of a conversation wins.
            status = "answered"
    if record["answered"] and status in FINAL_STATUSES:
        status = "answered"
    record["status"] = status


def _earliest(stored: str | None, value: dt.datetime | None) -> str | None:
    if value is None:
        return stored
    if stored is None or value < dt.datetime.fromisoformat(stored):
        return value.isoformat()
    return stored


def _latest(stored: str | None, value: dt.datetime) -> str:
    if stored is None or value > dt.datetime.fromisoformat(stored):
        return value.isoformat()
    return stored


def _largest(stored: int | None, value: int | None) -> int | None:
    if value is None:
        return stored
    return value if stored is None else max(stored, value)
