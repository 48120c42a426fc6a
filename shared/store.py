"""Document storage behind the number pool: Firestore in production and locally.

The pool needs only a few operations, so it talks to this small interface and
not to Firestore directly; the traffic simulator can then run the very same
pool code on an in-memory store.

Concurrency model: optimistic, without transactions. A claim is one atomic
batch whose write to the number document carries a precondition on the
version (Firestore's update time) the claimer read. If anyone changed the number
since, the whole batch fails and nothing is written. Firestore transactions
would lock the documents they read, and on the emulator every lock conflict
costs a 2 s timeout; a precondition conflict costs one round trip.
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass, field
from typing import Any, Protocol

NUMBERS = "numbers"
SESSIONS = "sessions"
VISITORS = "visitors"
HOLDS = "holds"
SITES = "sites"


@dataclass(frozen=True)
class Snapshot:
    id: str
    data: dict
    version: Any  # opaque: compared by the store, never interpreted by callers


@dataclass(frozen=True)
class Write:
    collection: str
    doc_id: str
    data: dict
    mode: str = "set"  # "set" replaces, "merge" merges maps, "update" changes fields
    expect: Snapshot | None = None  # the version this write must still find


@dataclass
class OpCounter:
    """Documents read and written, for the benchmark's cost figures."""

    reads: int = 0
    writes: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, reads: int = 0, writes: int = 0) -> None:
        with self._lock:
            self.reads += reads
            self.writes += writes


class PoolStore(Protocol):
    def get(self, collection: str, doc_id: str) -> Snapshot | None: ...

    def free_numbers(
        self, site_id: str, now: dt.datetime, limit: int
    ) -> list[Snapshot]:
        """Dynamic, non-overflow numbers with ``available_at <= now``, least
        recently released first."""

    def overflow_numbers(self, site_id: str, limit: int) -> list[Snapshot]:
        """Overflow numbers, least recently used first."""

    def commit(self, writes: list[Write]) -> bool:
        """Apply all writes atomically; False (nothing written) when an
        ``expect`` precondition fails."""


class FirestoreStore:
    """PoolStore on Firestore. Counts reads and writes per calling thread's
    request in ``counter`` when one is bound with ``bind_counter``."""

    def __init__(self, client) -> None:
        self.client = client
        self._local = threading.local()

    def bind_counter(self, counter: OpCounter | None) -> None:
        self._local.counter = counter

    def _count(self, reads: int = 0, writes: int = 0) -> None:
        counter = getattr(self._local, "counter", None)
        if counter is not None:
            counter.add(reads, writes)

    def get(self, collection: str, doc_id: str) -> Snapshot | None:
        snap = self.client.collection(collection).document(doc_id).get()
        self._count(reads=1)
        if not snap.exists:
            return None
        return Snapshot(snap.id, snap.to_dict(), snap.update_time)

    def _query(self, query) -> list[Snapshot]:
        docs = [Snapshot(s.id, s.to_dict(), s.update_time) for s in query.stream()]
        # Firestore bills a query that matches nothing as one read.
        self._count(reads=max(1, len(docs)))
        return docs

    def free_numbers(
        self, site_id: str, now: dt.datetime, limit: int
    ) -> list[Snapshot]:
        from google.cloud.firestore_v1.base_query import FieldFilter

        query = (
            self.client.collection(NUMBERS)
            .where(filter=FieldFilter("site_id", "==", site_id))
            .where(filter=FieldFilter("kind", "==", "dynamic"))
            .where(filter=FieldFilter("overflow", "==", False))
            .where(filter=FieldFilter("available_at", "<=", now))
            .order_by("available_at")
            .limit(limit)
        )
        return self._query(query)

    def overflow_numbers(self, site_id: str, limit: int) -> list[Snapshot]:
        from google.cloud.firestore_v1.base_query import FieldFilter

        query = (
            self.client.collection(NUMBERS)
            .where(filter=FieldFilter("site_id", "==", site_id))
            .where(filter=FieldFilter("kind", "==", "dynamic"))
            .where(filter=FieldFilter("overflow", "==", True))
            .order_by("last_used_at")
            .limit(limit)
        )
        return self._query(query)

    def commit(self, writes: list[Write]) -> bool:
        from google.api_core import exceptions

        batch = self.client.batch()
        for write in writes:
            ref = self.client.collection(write.collection).document(write.doc_id)
            if write.mode == "update":
                option = None
                if write.expect is not None:
                    option = self.client.write_option(
                        last_update_time=write.expect.version
                    )
                batch.update(ref, write.data, option=option)
            else:
                batch.set(ref, write.data, merge=write.mode == "merge")
        try:
            batch.commit()
        except (exceptions.FailedPrecondition, exceptions.NotFound):
            return False
        self._count(writes=len(writes))
        return True
