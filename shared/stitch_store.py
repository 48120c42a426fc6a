"""The I/O around stitching: Firestore reads, the ledger, BigQuery, Pub/Sub.

``Stitcher.completed`` handles one ``call.completed`` message and
``Stitcher.recording`` one ``call.recording``; ``shared.stitching`` decides.

At least once, with a ledger: ``stitched_calls/{call_id}`` holds the decided
row, its version and how far it got (``written_version`` in BigQuery,
``published_version`` on ``calls-stitched``). The decision is stored in the
same atomic batch that counts the call in the caller's record, with a
precondition that the ledger does not exist yet, so a repeat of the message
(a redelivery, two deliveries at once, an operator's replay) finds the stored
decision and neither decides again nor counts the call twice. Each step after
it runs only while its mark is behind, and the BigQuery row carries the insert
id ``{call_id}:{version}``, so a crash between a write and its mark costs one
repeat that BigQuery drops.

Only one delivery at a time finishes a call: the one that stored the decision
(or the recording) holds a claim, ``claimed_until``, for ``CLAIM_S``. Another
delivery that finds work left and a live claim raises TransientError, so
Pub/Sub brings it back later, when the work is done or the claim has lapsed.
A delivery that fails drops its claim, so its redelivery need not wait.

Firestore reads per call: one ``get_all`` (ledger, number, caller), one query
of the hold log (composite index ``holds``: site_id ASC, number ASC, from
DESC), one ``get_all`` of the candidates' sessions and visitors.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from shared import stitching, warehouse
from shared.errors import BadRequest, TransientError
from shared.pool import RETENTION, SiteCache
from shared.store import HOLDS, NUMBERS, SESSIONS, VISITORS, Snapshot

logger = logging.getLogger(__name__)

LEDGER = "stitched_calls"
CALLERS = "callers"
TABLE = "calls"
# Two messages of one caller stitched at once race on the caller's record;
# the loser decides again with the winner's record, a few times at most.
DECIDE_ATTEMPTS = 4
# A delivery finishes a call (BigQuery insert, publish, two marks) well within
# Pub/Sub's 30 s ack deadline, after which the message is redelivered anyway.
CLAIM_S = 30


def caller_key(site_id: str, caller_hash: str) -> str:
    """Caller records are per site: one site's callers say nothing of another's."""
    return f"{site_id}:{caller_hash}"


class StitchStore:
    """Firestore access for stitching, one client shared by the threads."""

    def __init__(self, client) -> None:
        self.client = client

    def _ref(self, collection: str, doc_id: str):
        return self.client.collection(collection).document(doc_id)

    def _get_all(self, refs) -> dict[tuple[str, str], Snapshot]:
        """Existing documents among ``refs`` by (collection, id), in one call."""
        found = {}
        for snap in self.client.get_all(refs):
            if snap.exists:
                key = (snap.reference.parent.id, snap.id)
                found[key] = Snapshot(snap.id, snap.to_dict(), snap.update_time)
        return found

    def ledger(self, call_id: str) -> Snapshot | None:
        return self._get_all([self._ref(LEDGER, call_id)]).get((LEDGER, call_id))

    def context(self, call: stitching.Call):
        """(ledger, number, caller) snapshots of a call; each may be None."""
        refs = [self._ref(LEDGER, call.call_id)]
        if call.tracking_number:
            refs.append(self._ref(NUMBERS, call.tracking_number))
        key = caller_key(call.site_id, call.caller_hash) if call.caller_hash else None
        if key:
            refs.append(self._ref(CALLERS, key))
        found = self._get_all(refs)
        return (
            found.get((LEDGER, call.call_id)),
            found.get((NUMBERS, call.tracking_number)),
            found.get((CALLERS, key)),
        )

    def holds(self, call: stitching.Call) -> list[stitching.Held]:
        """The number's latest holds that started by the call (plus clock
        skew), each with its session and visitor."""
        from google.cloud.firestore_v1.base_query import FieldFilter

        latest = call.started_at + dt.timedelta(seconds=stitching.CLOCK_SKEW_S)
        query = (
            self.client.collection(HOLDS)
            .where(filter=FieldFilter("site_id", "==", call.site_id))
            .where(filter=FieldFilter("number", "==", call.tracking_number))
            .where(filter=FieldFilter("from", "<=", latest))
            .order_by("from", direction="DESCENDING")
            .limit(stitching.HOLDS_LIMIT)
        )
        holds = [(snap.id, snap.to_dict()) for snap in query.stream()]
        if not holds:
            return []

        refs = []
        for _, hold in holds:
            refs.append(self._ref(SESSIONS, hold["session_id"]))
            refs.append(self._ref(VISITORS, hold["visitor_id"]))
        docs = self._get_all(refs)

        def data(collection, doc_id):
            snap = docs.get((collection, doc_id))
            return snap.data if snap else None

        return [
            stitching.Held(hold_id, hold, data(SESSIONS, hold["session_id"]),
                           data(VISITORS, hold["visitor_id"]))
            for hold_id, hold in holds
        ]

    def record(self, call: stitching.Call, ledger: dict, caller: dict | None,
               caller_snap: Snapshot | None) -> bool:
        """Store the decision and the caller's record in one atomic batch.

        False, with nothing written, when the ledger exists already or the
        caller's record changed since it was read.
        """
        from google.api_core import exceptions

        batch = self.client.batch()
        batch.create(self._ref(LEDGER, call.call_id), ledger)
        if caller is not None:
            ref = self._ref(CALLERS, caller_key(call.site_id, call.caller_hash))
            if caller_snap is None:
                batch.create(ref, caller)
            else:
                option = self.client.write_option(last_update_time=caller_snap.version)
                batch.update(ref, caller, option=option)
        try:
            batch.commit()
        except (exceptions.Conflict, exceptions.FailedPrecondition,
                exceptions.NotFound):
            return False
        return True

    def _update_if_unchanged(self, snap: Snapshot, fields: dict) -> bool:
        from google.api_core import exceptions

        option = self.client.write_option(last_update_time=snap.version)
        try:
            self._ref(LEDGER, snap.id).update(fields, option=option)
        except (exceptions.FailedPrecondition, exceptions.NotFound):
            return False
        return True

    def claim(self, snap: Snapshot, until: dt.datetime) -> bool:
        """Take the right to finish a call; False if the ledger changed since."""
        return self._update_if_unchanged(snap, {"claimed_until": until})

    def bump(self, snap: Snapshot, row: dict, recording_ref: str,
             until: dt.datetime) -> bool:
        """Store the next version of a row and claim it; False if the ledger
        changed since it was read."""
        from google.cloud import firestore

        return self._update_if_unchanged(snap, {
            "row": row,
            "version": row["version"],
            "recording_refs": firestore.ArrayUnion([recording_ref]),
            "claimed_until": until,
        })

    def mark(self, call_id: str, field: str, version: int,
             release: bool = False) -> None:
        """Advance a progress mark (it never moves back, whatever the order),
        dropping the claim with the last one."""
        from google.cloud import firestore

        fields = {field: firestore.Maximum(version)}
        if release:
            fields["claimed_until"] = None
        self._ref(LEDGER, call_id).update(fields)

    def release(self, call_id: str) -> None:
        """Drop a claim after a failure. Best effort: if Firestore is down too,
        the claim lapses by itself."""
        try:
            self._ref(LEDGER, call_id).update({"claimed_until": None})
        except Exception as exc:  # the failure being handled matters more
            logger.warning("Claim on call %s left to lapse: %s", call_id,
                           type(exc).__name__)


class Stitcher:
    """Stitch calls into rows, at least once and without duplicates.

    Thread-safe: functions-framework serves several messages at once.
    """

    def __init__(
        self,
        store: StitchStore,
        sites: SiteCache,
        publish: Callable[[str, list[tuple[str, dict]]], object],
        topic: str,
        now: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.store = store
        self.sites = sites
        self.publish = publish
        self.topic = topic
        self.now = now or (lambda: dt.datetime.now(dt.UTC))

    # -- call.completed -------------------------------------------------------

    def completed(self, body: dict) -> None:
        """Stitch a completed call, or finish what an earlier delivery began."""
        call = stitching.parse_call(body)
        site = self.sites.get(call.site_id)
        ledger = self._decide(call, site)
        if ledger is not None:
            self._flush(call.call_id, ledger, body.get("caller"))

    def _claimed(self, snap: Snapshot) -> dict | None:
        """The ledger to finish, now claimed; None when nothing is left.

        Raises TransientError while another delivery holds a live claim.
        """
        data = snap.data
        if data["published_version"] >= data["version"]:
            logger.debug("Call %s is stitched already; nothing left to do", snap.id)
            return None
        now = self.now()
        if data.get("claimed_until") and data["claimed_until"] > now:
            msg = (f"Expected call {snap.id} to be free to finish, found another "
                   "delivery at work on it.")
            raise TransientError(msg, code="in_progress")
        if not self.store.claim(snap, now + dt.timedelta(seconds=CLAIM_S)):
            msg = (f"Expected call {snap.id} to be free to finish, found its ledger "
                   "changed by another delivery.")
            raise TransientError(msg, code="in_progress")
        logger.debug("Call %s was stitched before; finishing it", snap.id)
        return data

    def _decide(self, call, site) -> dict | None:
        for _ in range(DECIDE_ATTEMPTS):
            ledger_snap, number, caller = self.store.context(call)
            if ledger_snap is not None:
                return self._claimed(ledger_snap)

            holds = []
            if number is not None and number.data.get("kind") == "dynamic":
                holds = self.store.holds(call)
            now = self.now()
            result = stitching.stitch(call, site, number.data if number else None,
                                      holds, caller.data if caller else None, now)
            ledger = {
                "site_id": call.site_id,
                "call_id": call.call_id,
                "row": result.row,
                "version": 1,
                "written_version": 0,
                "published_version": 0,
                "recording_refs": [call.recording_ref] if call.recording_ref else [],
                "claimed_until": now + dt.timedelta(seconds=CLAIM_S),
                "created_at": now,
                "expires_at": now + RETENTION,
            }
            if self.store.record(call, ledger, result.caller, caller):
                logger.info(
                    "Stitched call %s: %s, confidence %.3f, %d candidate(s)",
                    call.call_id, result.reason, result.confidence,
                    len(result.candidates),
                    extra={"fields": {
                        "event": "call_stitched",
                        "call_id": call.call_id,
                        "site_id": call.site_id,
                        "reason": result.reason,
                        "confidence": result.confidence,
                        "candidates": len(result.candidates),
                        "first_time_caller": result.row["first_time_caller"],
                    }},
                )
                return ledger
            logger.debug("Call %s: caller record or ledger changed; deciding again",
                         call.call_id)
        msg = (f"Expected to store the stitching of call {call.call_id}, found "
               f"concurrent writes {DECIDE_ATTEMPTS} times.")
        raise TransientError(msg)

    def _flush(self, call_id: str, ledger: dict, caller: str | None) -> None:
        """Write and publish the ledger's version; the caller holds the claim."""
        version = ledger["version"]
        row = ledger["row"]
        try:
            if ledger["written_version"] < version:
                warehouse.insert_rows(TABLE, [row])
                self.store.mark(call_id, "written_version", version)
            if version == 1:
                outgoing = (stitching.STITCHED, stitching.message(row, caller))
            else:
                # A recording message carries no caller number, and the
                # product keeps none: the CRM has it from call.stitched.
                outgoing = (stitching.UPDATED, stitching.message(row, None))
            self.publish(self.topic, [outgoing])
        except Exception:
            self.store.release(call_id)
            raise
        self.store.mark(call_id, "published_version", version, release=True)

    # -- call.recording -------------------------------------------------------

    def recording(self, body: dict) -> None:
        """Add a later recording to a stitched call as its next row version.

        The attribution is copied, never decided again. A recording already
        on the row is a repeat: only unfinished steps run.
        """
        call_id = _required_text(body, "call_id")
        ref = _required_text(body, "recording_ref")
        for _ in range(DECIDE_ATTEMPTS):
            snap = self.store.ledger(call_id)
            if snap is None or snap.data["published_version"] < 1:
                # Pub/Sub does not keep order: the completed call may still be
                # on its way, and a redelivery of this message will find it.
                msg = (f"Expected call {call_id} to be stitched before its "
                       "recording, found it not yet stitched.")
                raise TransientError(msg, code="not_yet_stitched")

            ledger = snap.data
            if ref in ledger["recording_refs"]:
                logger.debug("Call %s has this recording already", call_id)
                ledger = self._claimed(snap)
            else:
                now = self.now()
                if ledger.get("claimed_until") and ledger["claimed_until"] > now:
                    msg = (f"Expected call {call_id} to be free for its recording, "
                           "found another delivery at work on it.")
                    raise TransientError(msg, code="in_progress")
                row = stitching.with_recording(ledger["row"], ref, now)
                until = now + dt.timedelta(seconds=CLAIM_S)
                if not self.store.bump(snap, row, ref, until):
                    continue
                ledger = {**ledger, "row": row, "version": row["version"]}
                logger.info("Call %s has a later recording: row version %d",
                            call_id, row["version"],
                            extra={"fields": {"event": "call_recording",
                                              "call_id": call_id}})
            if ledger is not None:
                self._flush(call_id, ledger, None)
            return
        msg = (f"Expected to store the recording of call {call_id}, found "
               f"concurrent writes {DECIDE_ATTEMPTS} times.")
        raise TransientError(msg)


def _required_text(body: dict, name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        msg = f"Expected {name} as non-empty text, found {value!r:.40}."
        raise BadRequest(msg, code="call")
    return value
