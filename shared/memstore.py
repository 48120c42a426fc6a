"""An in-memory PoolStore with Firestore's semantics, for the traffic simulator.

It keeps the same contract as ``shared.store.FirestoreStore``: documents are
dicts, ``update`` writes accept dotted field paths and fail on a missing
document, and a batch whose precondition fails writes nothing. Versions are a
counter per write, so a precondition fails exactly when Firestore's would.
"""

from __future__ import annotations

import datetime as dt
import itertools
import threading

from shared.store import NUMBERS, Snapshot, Write


class MemoryStore:
    def __init__(self) -> None:
        self.docs: dict[str, dict[str, tuple[dict, int]]] = {}
        self._versions = itertools.count(1)
        self._lock = threading.Lock()
        self.reads = 0
        self.writes = 0

    def bind_counter(self, counter) -> None:  # the Firestore store's hook
        pass

    def put(self, collection: str, doc_id: str, data: dict) -> None:
        with self._lock:
            self.docs.setdefault(collection, {})[doc_id] = (
                _copy(data),
                next(self._versions),
            )

    def all(self, collection: str) -> dict[str, dict]:
        return {k: v[0] for k, v in self.docs.get(collection, {}).items()}

    def get(self, collection: str, doc_id: str) -> Snapshot | None:
        self.reads += 1
        hit = self.docs.get(collection, {}).get(doc_id)
        if hit is None:
            return None
        return Snapshot(doc_id, _copy(hit[0]), hit[1])

    def _numbers(self, site_id: str, overflow: bool):
        for doc_id, (data, version) in self.docs.get(NUMBERS, {}).items():
            if (
                data.get("site_id") == site_id
                and data.get("kind") == "dynamic"
                and bool(data.get("overflow")) == overflow
            ):
                yield Snapshot(doc_id, data, version)

    def free_numbers(
        self, site_id: str, now: dt.datetime, limit: int
    ) -> list[Snapshot]:
        free = [
            s for s in self._numbers(site_id, False) if s.data["available_at"] <= now
        ]
        free.sort(key=lambda s: (s.data["available_at"], s.id))
        self.reads += max(1, min(limit, len(free)))
        return [Snapshot(s.id, _copy(s.data), s.version) for s in free[:limit]]

    def overflow_numbers(self, site_id: str, limit: int) -> list[Snapshot]:
        spare = sorted(
            self._numbers(site_id, True), key=lambda s: (s.data["last_used_at"], s.id)
        )
        self.reads += max(1, min(limit, len(spare)))
        return [Snapshot(s.id, _copy(s.data), s.version) for s in spare[:limit]]

    def commit(self, writes: list[Write]) -> bool:
        with self._lock:
            for write in writes:
                current = self.docs.get(write.collection, {}).get(write.doc_id)
                if write.mode == "update" and current is None:
                    return False
                if write.expect is not None and (
                    current is None or current[1] != write.expect.version
                ):
                    return False

            for write in writes:
                table = self.docs.setdefault(write.collection, {})
                current = table.get(write.doc_id, ({}, 0))[0]
                if write.mode == "set":
                    data = _copy(write.data)
                elif write.mode == "merge":
                    data = _merge(_copy(current), write.data)
                else:
                    data = _copy(current)
                    for path, value in write.data.items():
                        _set_path(data, path, _copy(value))
                table[write.doc_id] = (data, next(self._versions))
            self.writes += len(writes)
            return True


def _copy(value):
    """Copy the containers of a document; leaves (str, datetime, ...) are
    immutable and shared, which makes this much cheaper than deepcopy."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _merge(base: dict, changes: dict) -> dict:
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = _merge(base[key], value)
        else:
            base[key] = _copy(value)
    return base


def _set_path(doc: dict, path: str, value) -> None:
    *parents, leaf = path.split(".")
    for part in parents:
        child = doc.get(part)
        if not isinstance(child, dict):
            child = doc[part] = {}
        doc = child
    doc[leaf] = value
