"""The pool's rules on the in-memory store, with a controlled clock."""

from __future__ import annotations

import datetime as dt
import random

from shared import pool_admin
from shared.memstore import MemoryStore
from shared.pool import Assigner, parse_request
from shared.sites import site_from_doc
from shared.store import Write

T0 = dt.datetime(2026, 12, 3, 10, 0, tzinfo=dt.UTC)
PAID = {"utm_source": "google", "utm_medium": "cpc"}


class Clock:
    def __init__(self):
        self.now = T0

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += dt.timedelta(seconds=seconds)


def pool(n=3, **config):
    store = MemoryStore()
    site = site_from_doc(
        {
            "site_id": "sim",
            "default_number": "+74951230000",
            "allowed_origins": [],
            **config,
        }
    )
    store.put("sites", "sim", site.to_doc())
    for i in range(n):
        doc = pool_admin.number_doc(site, f"+7495555{1000 + i:04d}")
        store.put("numbers", doc["number"], doc)
    clock = Clock()
    return store, Assigner(store, rng=random.Random(3), now=clock), clock


def visit(n, visitor=None):
    return parse_request(
        "sim",
        {
            "visitor_id": visitor or f"visitor-{n:04d}",
            "session_id": f"session-{n:04d}",
            "last_touch": PAID,
        },
        "Mozilla/5.0 Chrome/156",
    )


def test_memory_store_refuses_a_write_whose_precondition_is_stale():
    store = MemoryStore()
    store.put("numbers", "n1", {"a": 1})
    stale = store.get("numbers", "n1")
    assert store.commit([Write("numbers", "n1", {"a": 2}, "update", expect=stale)])

    assert (
        store.commit(
            [
                Write("numbers", "n1", {"a": 3}, "update", expect=stale),
                Write("holds", "h", {"x": 1}),
            ]
        )
        is False
    )
    assert store.all("numbers")["n1"] == {"a": 2}
    assert store.all("holds") == {}


def test_memory_store_updates_dotted_paths_and_refuses_missing_documents():
    store = MemoryStore()
    store.put("numbers", "n1", {"lease": {"expires_at": 1, "hold_id": "h"}})
    store.commit([Write("numbers", "n1", {"lease.expires_at": 2}, "update")])

    assert store.all("numbers")["n1"] == {"lease": {"expires_at": 2, "hold_id": "h"}}
    assert store.commit([Write("numbers", "nope", {"a": 1}, "update")]) is False


def test_pool_cycles_through_claim_release_and_cooldown_in_memory():
    store, assigner, clock = pool(1, cooldown_s=60)
    first = assigner.assign(visit(1)).assignment
    assigner.release("sim", "session-0001")
    clock.advance(30)
    during = assigner.assign(visit(2)).assignment
    clock.advance(31)
    after = assigner.assign(visit(3)).assignment

    assert first.kind == "dynamic"
    assert (during.kind, after.kind) == ("default", "dynamic")
    assert after.number == first.number
    assert len(store.all("holds")) == 2


def test_lapsed_lease_frees_the_number_after_lease_and_cooldown():
    store, assigner, clock = pool(1, lease_s=120, cooldown_s=60)
    first = assigner.assign(visit(1))
    clock.advance(179)
    blocked = assigner.assign(visit(2)).assignment
    clock.advance(2)
    freed = assigner.assign(visit(3))

    assert blocked.kind == "default"
    assert freed.assignment.number == first.assignment.number
    assert [kind for kind, row in freed.rows if row.get("event") == "expired"] == [
        "hold"
    ]


def test_returning_visitor_takes_back_its_number_in_its_own_cooldown():
    store, assigner, clock = pool(3, cooldown_s=900)
    first = assigner.assign(visit(1, "returning-1")).assignment
    assigner.release("sim", "session-0001")
    clock.advance(300)

    again = assigner.assign(visit(2, "returning-1")).assignment

    assert (again.number, again.reason) == (first.number, "sticky")


def test_under_pressure_a_number_past_its_minimum_cooldown_is_reused():
    store, assigner, clock = pool(1, cooldown_s=900, min_cooldown_s=300)
    first = assigner.assign(visit(1)).assignment
    assigner.release("sim", "session-0001")
    clock.advance(299)
    too_soon = assigner.assign(visit(2)).assignment
    clock.advance(2)
    reused = assigner.assign(visit(3)).assignment

    assert too_soon.kind == "default"
    assert (reused.number, reused.reason) == (first.number, "early_reuse")


def test_by_default_a_number_rests_two_minutes_before_early_reuse():
    store, assigner, clock = pool(1, cooldown_s=900)
    first = assigner.assign(visit(1)).assignment
    assigner.release("sim", "session-0001")
    clock.advance(119)
    too_soon = assigner.assign(visit(2)).assignment
    clock.advance(1)
    reused = assigner.assign(visit(3)).assignment

    assert too_soon.kind == "default"
    assert (reused.number, reused.reason) == (first.number, "early_reuse")


def test_a_strict_site_never_reuses_a_cooling_number():
    store, assigner, clock = pool(1, cooldown_s=900, min_cooldown_s=900)
    assigner.assign(visit(1))
    assigner.release("sim", "session-0001")
    clock.advance(899)

    assert assigner.assign(visit(2)).assignment.kind == "default"
