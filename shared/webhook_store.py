"""Record provider call events in Firestore and publish what each call owes.

One document per call, ``calls/{call_id}``, with ``call_id`` =
``{provider}:{site_id}:{provider_call_id}`` (the provider's id escaped for a
document id). It holds the ``shared.callmerge`` record plus ``site_id``,
``call_id``, ``updated_at`` and ``expires_at`` (a TTL field, 35 days after
the last event). Each request that brought a new event also leaves its payload
in ``calls/{call_id}/raw/{event_key}``, credentials dropped and the caller's
number masked; ``raw_ref`` in messages points at that collection. The raw
caller number is stored nowhere in Firestore.

``deliver`` is the whole flow for one call's events from one request, at
least once from end to end:

1. Read the call document, merge the events (a repeat changes nothing) and,
   when the record owes a message, claim the right to publish it for
   ``claim_s`` seconds; write it all back on condition that the document is
   still the version read, else read and merge again. That is a one-document
   transaction without locks; contention is only between events of one call.
2. Publish. On failure release the claim and raise TransientError (503), so
   the provider retries, and the retry publishes: the record keeps owing the
   message until it is marked.
3. Mark what went out and drop the claim, as ``callmerge.mark_published``
   would, written as field transforms so no concurrent merge is overwritten.

A request that finds another delivery of the same call holding a live claim
waits for it: it answers once the message is out, or takes over when the
claim is released or expires. So two racing deliveries of one call (a repeat,
or the end and the recording at once) publish one completed message. Only a
crash between the publish and the mark can send it twice; consumers key on
``call_id``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import random
import re
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote

import phonenumbers

from shared import callmerge, callmessages
from shared.callevent import CallEvent
from shared.callmessages import Outgoing
from shared.errors import BadRequest, ConfigError, TransientError
from shared.phones import mask_text
from shared.providers.base import WebhookRequest, form_pairs

if TYPE_CHECKING:
    from shared.pool import SiteCache
    from shared.sites import Site

logger = logging.getLogger(__name__)

CALLS = "calls"
RAW = "raw"
# Call documents and raw payloads live 35 days after a call's last event, as
# long as session data, so a late CRM match still finds them.
RETENTION = dt.timedelta(days=35)
# A claim outlives the publish timeout by this much: time to mark it too.
CLAIM_MARGIN_S = 5.0
# How often a delivery waiting on another's claim looks again.
POLL_S = 0.1
# When events of one call race (a provider's burst of retries), a lost write
# is merged again after a jittered pause of up to 10-160 ms; twelve rounds
# cover a burst of a dozen deliveries before the answer becomes a 503.
CONTENDED_ROUNDS = 12
BACKOFF_S = 0.01
# Provider call ids are short; a longer one is hashed so the id stays small.
MAX_ID_CHARS = 200

# Credentials a payload carries are never stored, not even masked.
_CREDENTIALS = frozenset({"secret", "sign", "vpbx_api_key"})
# Fields that hold the caller's number (Twilio, Zadarma, UIS, generic hook);
# Mango's is "number" inside "from".
_CALLER_FIELDS = frozenset(
    {"From", "Caller", "caller_id", "contact_phone_number", "caller"}
)
# Six or more digits, written with the separators people put in numbers.
_DIGIT_RUN = re.compile(r"\+?\(?\d(?:[\s().-]*\d){5,}")


def call_doc_id(provider: str, site_id: str, provider_call_id: str) -> str:
    """The call's document id; distinct provider ids never share one.

    The provider's id is percent-escaped (Mango's ids hold "/" and "="), and
    an escaped id too long for comfort becomes "!" plus its SHA-256: "!" is
    escaped in every other id, so the two forms cannot meet.
    """
    escaped = quote(provider_call_id, safe="")
    if len(escaped) > MAX_ID_CHARS:
        escaped = "!" + hashlib.sha256(provider_call_id.encode()).hexdigest()
    return f"{provider}:{site_id}:{escaped}"


def raw_ref(call_id: str) -> str:
    return f"{CALLS}/{call_id}/{RAW}"


def masked_payload(req: WebhookRequest, callers: Iterable[str | None]) -> dict:
    """The request's body as stored: parsed, credentials dropped, caller masked.

    Caller fields are masked whatever they hold (a withheld or odd caller id
    too), and any other run of digits ending in a caller's national number is
    masked as well. The body is kept as JSON text, so any JSON shape fits a
    Firestore field.
    """
    tails = _national_numbers(callers)
    if req.form:
        pairs = [
            [name, _masked_value(name, _nested(value), tails, parent=None)]
            for name, value in form_pairs(req.raw_body)
            if name not in _CREDENTIALS
        ]
        return {"format": "form", "body": _dump(pairs)}
    try:
        data = json.loads(req.raw_body)
    except ValueError:
        # The providers post forms or JSON; anything else is not kept at all.
        return {"format": "unread", "body": None}
    return {"format": "json", "body": _dump(_masked(data, tails, parent=None))}


@dataclass(frozen=True)
class Recorded:
    """A call after one read-merge-write.

    ``outbox`` is what the record owes; ``token`` is set when this delivery
    holds the claim to publish it, None when another delivery holds it.
    """

    record: dict | None
    changed: bool
    outbox: tuple[Outgoing, ...]
    token: str | None


@dataclass(frozen=True)
class Delivery:
    call_id: str
    changed: bool
    published: tuple[str, ...]  # message types, in publish order


class CallStore:
    """Call records in Firestore. Safe to share between threads."""

    def __init__(
        self,
        client,
        *,
        claim_s: float,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.client = client
        self.claim_s = claim_s
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))

    def _ref(self, call_id: str):
        return self.client.collection(CALLS).document(call_id)

    def record(
        self,
        call_id: str,
        site_id: str,
        events: Sequence[CallEvent],
        raw: dict | None,
        callers: Sequence[str | None],
    ) -> Recorded:
        """Merge ``events`` into the call and claim any message it owes.

        ``raw`` (a ``masked_payload``) is stored when at least one event is new.
        Raises TransientError when Firestore is down or the call stays contended.
        """
        ref = self._ref(call_id)
        with unavailable_as_transient("Firestore"):
            for attempt in range(CONTENDED_ROUNDS):
                snap = ref.get()
                stored = snap.to_dict() if snap.exists else None
                recorded, new = self._merge(call_id, site_id, stored, events, callers)
                if not new and recorded.token is None:
                    return recorded
                if self._commit(ref, snap, recorded.record, site_id, call_id,
                                new, raw):
                    return recorded
                # Another event of this call was written since our read.
                logger.debug("Call %s changed while merging; merging again",
                             call_id, extra={"fields": {"call_id": call_id}})
                time.sleep(random.uniform(0, BACKOFF_S * 2 ** min(attempt, 4)))

        msg = (
            f"Expected to record call {call_id} within {CONTENDED_ROUNDS} "
            "attempts, found it written by others every time."
        )
        raise TransientError(msg, code="contended")

    def _merge(self, call_id, site_id, stored, events, callers):
        record, new = stored, []
        for event in events:
            result = callmerge.merge(record, event)
            record = result.record
            if result.changed:
                new.append(event)

        owed = callmessages.outbox(call_id, site_id, record, callers,
                                   raw_ref(call_id))
        token = None
        now = self.clock()
        if owed and not _claimed(record, now):
            token = uuid.uuid4().hex
            until = now + dt.timedelta(seconds=self.claim_s)
            record = record | {"publishing": {"token": token, "until": until}}
        return Recorded(record, bool(new), tuple(owed), token), new

    def _commit(self, ref, snap, record, site_id, call_id, new, raw) -> bool:
        """Write the record if it is unchanged since ``snap``; False if it was not.

        The precondition (the version read, or "does not exist yet") makes this
        read-merge-write as safe as a transaction on one document, without a
        transaction's locks, which on the emulator stall for seconds per
        conflict when a provider's retries race.
        """
        from google.api_core import exceptions

        now = self.clock()
        doc = record | {
            "site_id": site_id,
            "call_id": call_id,
            "updated_at": now,
            "expires_at": now + RETENTION,
        }
        batch = self.client.batch()
        if snap.exists:
            option = self.client.write_option(last_update_time=snap.update_time)
            batch.update(ref, doc, option=option)
        else:
            batch.create(ref, doc)
        if new and raw is not None:
            raw_doc = ref.collection(RAW).document(callmerge.event_key(new[0]))
            batch.set(raw_doc, raw | {
                "event_kinds": [event.event_kind for event in new],
                "received_at": now,
                "expires_at": now + RETENTION,
            })
        try:
            batch.commit()
        except (exceptions.FailedPrecondition, exceptions.Conflict,
                exceptions.NotFound):
            return False
        return True

    def mark(self, call_id: str, sent: Sequence[Outgoing]) -> None:
        """Note the messages Pub/Sub accepted and drop the claim."""
        from google.cloud import firestore

        fields = {"publishing": firestore.DELETE_FIELD, "updated_at": self.clock()}
        if any(message.mark == "completed" for message in sent):
            fields["completed_published"] = True
        refs = [ref for message in sent for ref in message.refs]
        if refs:
            fields["published_recordings"] = firestore.ArrayUnion(refs)
        with unavailable_as_transient("Firestore"):
            self._ref(call_id).update(fields)

    def release(self, call_id: str) -> None:
        """Drop the claim after a failed publish, so a waiting delivery retries.

        Best effort: when Firestore is down too, the claim simply expires.
        """
        from google.cloud import firestore

        try:
            with unavailable_as_transient("Firestore"):
                self._ref(call_id).update({"publishing": firestore.DELETE_FIELD})
        except TransientError as exc:
            logger.warning("Publish claim left to expire: %s", exc.message,
                           extra={"fields": {"call_id": call_id}})


Publisher = Callable[[str, list[tuple[str, dict]]], list[str]]


def deliver(
    store: CallStore,
    call_id: str,
    site_id: str,
    events: Sequence[CallEvent],
    *,
    raw: dict | None,
    publish: Publisher,
    topic: str,
) -> Delivery:
    """Record one call's events and publish what the call owes (at least once).

    Raises TransientError when Firestore or Pub/Sub is unavailable, or when
    another delivery of the call kept its claim past ``claim_s``.
    """
    callers = [event.caller for event in events]
    changed = False
    give_up = time.monotonic() + store.claim_s + 1.0
    while True:
        recorded = store.record(call_id, site_id, events, raw, callers)
        changed = changed or recorded.changed
        if not recorded.outbox:
            return Delivery(call_id, changed, ())
        if recorded.token is not None:
            break
        if time.monotonic() > give_up:
            msg = (
                f"Expected the publish claim on call {call_id} to end within "
                f"{store.claim_s:.0f} s, found it still held."
            )
            raise TransientError(msg, code="claim_held")
        # Another delivery of this call is publishing; look again shortly.
        # The events are merged already, so only the claim is checked again.
        logger.debug("Call %s: waiting for another delivery's publish", call_id,
                     extra={"fields": {"call_id": call_id}})
        time.sleep(POLL_S)
        events, raw = (), None

    sent = recorded.outbox
    try:
        publish(topic, [(message.type, message.body) for message in sent])
    except TransientError:
        store.release(call_id)
        raise
    store.mark(call_id, sent)
    return Delivery(call_id, changed, tuple(message.type for message in sent))


@contextlib.contextmanager
def unavailable_as_transient(service: str):
    """Turn a failed call to a Google service into TransientError (a 503)."""
    from google.api_core import exceptions

    try:
        yield
    except (exceptions.GoogleAPICallError, exceptions.RetryError) as exc:
        msg = f"Expected {service} to answer, found {type(exc).__name__}."
        raise TransientError(msg) from exc


def sender_site(sites: SiteCache, site_id: str) -> Site:
    """The site a webhook's URL names, for a sender that retries on a 5xx.

    A malformed or unknown id is the sender's mistake (404, from the cache);
    a broken site document is ours to fix, so it is a ConfigError (500) that
    keeps the sender retrying until it is fixed.
    """
    try:
        with unavailable_as_transient("Firestore"):
            return sites.get(site_id)
    except BadRequest as exc:
        msg = f"Expected a valid document for site {site_id}: {exc.message}"
        raise ConfigError(msg, code="site_config") from None


def _claimed(record: dict, now: dt.datetime) -> bool:
    claim = record.get("publishing")
    return bool(claim) and claim["until"] > now


def _national_numbers(callers: Iterable[str | None]) -> tuple[str, ...]:
    tails = []
    for caller in callers:
        if caller:
            parsed = phonenumbers.parse(caller, None)
            tails.append(str(parsed.national_number))
    return tuple(dict.fromkeys(tails))


def _nested(value: str):
    """Mango's ``json`` form field, and the like, as the object it holds."""
    if value.startswith("{"):
        try:
            return json.loads(value)
        except ValueError:
            pass
    return value


def _masked(value, tails: tuple[str, ...], parent: str | None):
    if isinstance(value, dict):
        return {
            key: _masked_value(key, item, tails, parent)
            for key, item in value.items()
            if key not in _CREDENTIALS
        }
    if isinstance(value, list):
        return [_masked(item, tails, parent) for item in value]
    if isinstance(value, str):
        return _DIGIT_RUN.sub(lambda m: _mask_run(m.group(), tails), value)
    if isinstance(value, int) and not isinstance(value, bool):
        masked = _mask_run(str(value), tails)
        return value if masked == str(value) else masked
    return value


def _masked_value(key: str, value, tails: tuple[str, ...], parent: str | None):
    is_caller = key in _CALLER_FIELDS or (parent == "from" and key == "number")
    if is_caller and isinstance(value, (str, int)) and not isinstance(value, bool):
        return mask_text(str(value))
    return _masked(value, tails, parent=key)


def _mask_run(run: str, tails: tuple[str, ...]) -> str:
    digits = "".join(ch for ch in run if ch.isdigit())
    return mask_text(run) if any(digits.endswith(t) for t in tails) else run


def _dump(value) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
