"""The number pool: which number a visit sees, and for how long it is held.

Rules, in the order ``Assigner.assign`` applies them:

1. Known bots see the default number; nothing is written.
2. A page view of a session that already has a number keeps it (and renews a
   dynamic lease).
3. A new session whose touch the site's rule does not select gets a static
   channel number or the default number, without a hold.
4. A selected session gets, in this order: the visitor's previous number if it
   is free or still theirs (stickiness); else a free number, least recently
   released first, chosen at random among the first few so concurrent requests
   rarely collide; else the site's overflow policy (default number, or share
   the least recently used overflow number).

A number is free when its cool-down has passed: ``available_at`` is the lease
end plus the site's cool-down, so expired leases free themselves lazily and no
sweeper is needed. Every claim is one atomic batch of at most four writes
(number, session, visitor, hold log) with a precondition on the number's
version, so one number is never held by two live sessions.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from shared import phones, touches
from shared.errors import BadRequest, NotFound
from shared.sites import SITE_ID, Site, site_from_doc
from shared.store import HOLDS, NUMBERS, SESSIONS, SITES, VISITORS
from shared.store import PoolStore, Snapshot, Write

logger = logging.getLogger(__name__)

ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
# Firestore reserves document ids of the form __.*__ and refuses to read or
# write one; the ids name documents, so such an id is a bad field, not a 500.
RESERVED_ID = re.compile(r"^__.*__$")
ANALYTICS_IDS = ("ga_client_id", "ga_session_id", "ym_client_id")
AD_IDS = ("fbp", "fbc")
# Firestore and the warehouse keep a session's data 35 days (TTL field below).
RETENTION = dt.timedelta(days=35)
# How many claims one request tries before it treats the pool as exhausted.
MAX_CLAIM_ATTEMPTS = 6
# Of the candidates in hand, a claim picks at random among this many of the
# least recently released.
FEW = 4
# A candidate list read from Firestore serves this process for at most 1 s.
CANDIDATE_TTL_S = 1.0
# A number handed to a request in this process is not handed to another for 3 s.
IN_FLIGHT_S = 3.0

_BOT = re.compile(
    r"bot\b|bot/|crawler|spider|slurp|yandex(?:bot|images|metrika)|bingpreview|"
    r"facebookexternalhit|lighthouse|pingdom|uptimerobot|python-requests|curl/|wget",
    re.IGNORECASE,
)


def is_bot(user_agent: str | None) -> bool:
    return not user_agent or bool(_BOT.search(user_agent))


def new_id() -> str:
    return secrets.token_urlsafe(16)


@dataclass(frozen=True)
class AssignRequest:
    site_id: str
    visitor_id: str | None
    session_id: str | None
    page_url: str | None
    referrer: str | None
    first_touch: dict | None
    last_touch: dict | None
    last_non_direct_touch: dict | None
    ids: dict
    consent_analytics: bool
    consent_ads: bool
    user_agent: str | None = None


@dataclass(frozen=True)
class Assignment:
    number: str
    display: str
    kind: str  # dynamic | static | default
    reason: str
    visitor_id: str
    session_id: str
    default: str
    lease_expires_at: dt.datetime | None = None
    renew_in_s: int | None = None
    shared: bool = False

    def to_response(self) -> dict:
        expires = self.lease_expires_at
        return {
            "number": self.number,
            "display": self.display,
            "kind": self.kind,
            "default": self.default,
            "visitor_id": self.visitor_id,
            "session_id": self.session_id,
            "lease_expires_at": expires.isoformat() if expires else None,
            "renew_in_s": self.renew_in_s,
            "shared": self.shared,
        }


@dataclass
class Outcome:
    """What one call did, beside its answer: rows for the warehouse and counts."""

    assignment: Assignment | None = None
    rows: list[tuple[str, dict]] = field(default_factory=list)  # (type, row)
    conflicts: int = 0
    exhausted: bool = False


def _id(value, name: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not ID_PATTERN.match(value):
        msg = f"Expected {name} of 8-64 characters [A-Za-z0-9_-], found {value!r:.80}."
        raise BadRequest(msg, code="field")
    if RESERVED_ID.match(value):
        msg = f"Expected {name} not of the reserved form __name__, found {value!r:.80}."
        raise BadRequest(msg, code="field")
    return value


def parse_request(site_id: str, body: dict, user_agent: str | None) -> AssignRequest:
    """Validate the snippet's assign body; raises BadRequest naming the field."""
    consent = body.get("consent") or {}
    if not isinstance(consent, dict):
        raise BadRequest("Expected consent to be an object.", code="field")

    ids = {}
    for key in ANALYTICS_IDS + AD_IDS:
        value = touches.text_field(body.get(key), key, 200)
        if value is not None:
            ids[key] = value
    return AssignRequest(
        site_id=site_id,
        visitor_id=_id(body.get("visitor_id"), "visitor_id"),
        session_id=_id(body.get("session_id"), "session_id"),
        page_url=touches.text_field(
            body.get("page_url"), "page_url", touches.MAX_URL_CHARS
        ),
        referrer=touches.text_field(
            body.get("referrer"), "referrer", touches.MAX_URL_CHARS
        ),
        first_touch=touches.clean_touch(body.get("first_touch"), "first_touch"),
        last_touch=touches.clean_touch(body.get("last_touch"), "last_touch"),
        last_non_direct_touch=touches.clean_touch(
            body.get("last_non_direct_touch"), "last_non_direct_touch"
        ),
        ids=ids,
        consent_analytics=consent.get("analytics") is True,
        consent_ads=consent.get("ads") is True,
        user_agent=(user_agent or "")[:500],
    )


def lease_live(number: dict, now: dt.datetime) -> bool:
    lease = number.get("lease")
    return bool(lease) and lease["expires_at"] > now


def is_free(number: dict, now: dt.datetime) -> bool:
    return (
        number.get("kind") == "dynamic"
        and not number.get("overflow")
        and number["available_at"] <= now
    )


def claimable_by(number: dict, visitor_id: str, now: dt.datetime) -> bool:
    """Free, or still this visitor's own (live lease or in its own cool-down)."""
    if number.get("kind") != "dynamic" or number.get("overflow"):
        return False
    if lease_live(number, now):
        return number["lease"]["visitor_id"] == visitor_id
    return number["available_at"] <= now or number.get("last_visitor_id") == visitor_id


class CandidateCache:
    """Free numbers read once and handed out to this process's requests.

    Concurrent requests of one instance never get the same candidate, and one
    query serves many assignments. Entries may be stale (another instance may
    have claimed a number since); the claim's precondition catches that.
    """

    def __init__(self, store: PoolStore, window: int, clock=time.monotonic) -> None:
        self.store = store
        self.window = window
        self.clock = clock
        self._lock = threading.Lock()
        self._lists: dict[str, tuple[float, list[Snapshot]]] = {}
        self._taken: dict[tuple[str, object], float] = {}

    def take(
        self, site_id: str, now: dt.datetime, rng: random.Random
    ) -> Snapshot | None:
        with self._lock:
            tick = self.clock()
            fetched, items = self._lists.get(site_id, (0.0, []))
            if not items or tick - fetched > CANDIDATE_TTL_S:
                self._taken = {
                    n: t for n, t in self._taken.items() if tick - t < IN_FLIGHT_S
                }
                fresh = self.store.free_numbers(site_id, now, self.window)
                # A version handed out moments ago may not be committed yet; a
                # number whose document has changed since is a new candidate.
                items = [s for s in fresh if (s.id, s.version) not in self._taken]
                fetched = tick
            if not items:
                self._lists[site_id] = (fetched, items)
                return None

            chosen = items.pop(rng.randrange(min(FEW, len(items))))
            self._taken[(chosen.id, chosen.version)] = tick
            self._lists[site_id] = (fetched, items)
            return chosen

    def forget(self, site_id: str) -> None:
        with self._lock:
            self._lists.pop(site_id, None)


class SiteCache:
    def __init__(self, store: PoolStore, ttl_s: float, clock=time.monotonic) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self.clock = clock
        self._sites: dict[str, tuple[float, Site]] = {}

    def get(self, site_id: str) -> Site:
        # The id names a Firestore document: an empty one, a path ("a/b") or a
        # reserved name would fail in Firestore as a 500; none names a site.
        if not isinstance(site_id, str) or not SITE_ID.match(site_id):
            raise NotFound(
                f"Expected a site id of 2-63 of [a-z0-9_-], found {site_id!r:.80}.",
                code="unknown_site",
            )
        hit = self._sites.get(site_id)
        if hit and self.clock() - hit[0] < self.ttl_s:
            return hit[1]

        snap = self.store.get(SITES, site_id)
        if snap is None:
            raise NotFound(
                f"Expected a configured site, found none for {site_id!r}.",
                code="unknown_site",
            )
        site = site_from_doc(snap.data)
        self._sites[site_id] = (self.clock(), site)
        return site


class Assigner:
    """Assign, renew and release numbers. Safe to share between threads.

    At least once: the snippet may repeat any call. A repeated assign of a
    session returns that session's number; a repeated renew extends the same
    lease; a repeated release finds the lease already ended and writes nothing.
    """

    def __init__(
        self,
        store: PoolStore,
        *,
        window: int = 48,
        site_ttl_s: float = 30.0,
        rng: random.Random | None = None,
        now: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.store = store
        self.sites = SiteCache(store, site_ttl_s)
        self.candidates = CandidateCache(store, window)
        self.rng = rng or random.Random()
        self.now = now or (lambda: dt.datetime.now(dt.UTC))

    # -- assign ---------------------------------------------------------------

    def assign(self, req: AssignRequest) -> Outcome:
        site = self.sites.get(req.site_id)
        now = self.now()
        visitor_id = req.visitor_id or new_id()

        if is_bot(req.user_agent):
            return Outcome(
                self._fixed(
                    site, "default", "bot", visitor_id, req.session_id or new_id()
                )
            )

        session = self._own_session(req, site, visitor_id)
        if session:
            return self._continue(site, session, now)

        session_id = new_id() if session is False else (req.session_id or new_id())
        visitor = self.store.get(VISITORS, visitor_id) if req.visitor_id else None
        if visitor is not None and visitor.data.get("site_id") != site.site_id:
            visitor = None
        touch = req.last_touch or req.first_touch
        if not site.dynamic_rule.matches(touch):
            return self._not_dynamic(
                site, req, visitor, visitor_id, session_id, touch, now
            )
        return self._claim_new(site, req, visitor, visitor_id, session_id, touch, now)

    def _own_session(self, req: AssignRequest, site: Site, visitor_id: str):
        """The request's session if it exists and is this visitor's; a session
        id that belongs to someone else is never continued (returns False)."""
        if not req.session_id:
            return None
        snap = self.store.get(SESSIONS, req.session_id)
        if snap is None:
            return None
        data = snap.data
        if data.get("site_id") != site.site_id or data.get("visitor_id") != visitor_id:
            return False
        return snap

    def _fixed(self, site, kind, reason, visitor_id, session_id, number=None):
        number = number or site.default_number
        return Assignment(
            number=number,
            display=phones.display(number, site.display_format),
            kind=kind,
            reason=reason,
            visitor_id=visitor_id,
            session_id=session_id,
            default=site.default_number,
        )

    def _visitor_write(self, site, req, visitor, visitor_id, session_id, number, now):
        merged = touches.merge_visitor_touches(
            visitor.data if visitor else None,
            {
                "first_touch": req.first_touch,
                "last_touch": req.last_touch,
                "last_non_direct_touch": req.last_non_direct_touch,
            },
        )
        doc = {
            "site_id": site.site_id,
            **merged,
            "last_session_id": session_id,
            "consent": {"analytics": req.consent_analytics, "ads": req.consent_ads},
            "updated_at": now,
            "expires_at": now + RETENTION,
        }
        if number:
            doc["last_number"] = number
        if visitor is None:
            doc["created_at"] = now
        ids = self._permitted_ids(req)
        if ids:
            doc["ids"] = ids
        return Write(VISITORS, visitor_id, doc, mode="merge"), merged

    @staticmethod
    def _permitted_ids(req: AssignRequest) -> dict:
        ids = {}
        if req.consent_analytics:
            ids.update({k: v for k, v in req.ids.items() if k in ANALYTICS_IDS})
        if req.consent_ads:
            ids.update({k: v for k, v in req.ids.items() if k in AD_IDS})
        return ids

    def _session_doc(self, site, req, visitor_id, touch, merged, now, **extra):
        source, medium = touches.channel(touch)
        return {
            "site_id": site.site_id,
            "visitor_id": visitor_id,
            "started_at": now,
            "page_url": req.page_url,
            "referrer": req.referrer,
            "touch": touch,
            "source": source,
            "medium": medium,
            **merged,
            "ids": self._permitted_ids(req),
            "consent": {"analytics": req.consent_analytics, "ads": req.consent_ads},
            "expires_at": now + RETENTION,
            **extra,
        }

    def _not_dynamic(self, site, req, visitor, visitor_id, session_id, touch, now):
        static = site.static_number_for(touch)
        kind, reason = (
            ("static", "static_route") if static else ("default", "not_dynamic")
        )
        assignment = self._fixed(site, kind, reason, visitor_id, session_id, static)

        visitor_write, merged = self._visitor_write(
            site, req, visitor, visitor_id, session_id, None, now
        )
        session = self._session_doc(
            site,
            req,
            visitor_id,
            touch,
            merged,
            now,
            number=assignment.number,
            number_kind=kind,
            hold_id=None,
        )
        self.store.commit([Write(SESSIONS, session_id, session), visitor_write])
        return Outcome(assignment, [("session", session_row(session_id, session))])

    def _continue(self, site: Site, session: Snapshot, now: dt.datetime) -> Outcome:
        """Another page view of a live session: same number, lease renewed."""
        data = session.data
        if data.get("number_kind") != "dynamic":
            kind = data.get("number_kind") or "default"
            return Outcome(
                self._fixed(
                    site,
                    kind,
                    "same_session",
                    data["visitor_id"],
                    session.id,
                    data.get("number"),
                )
            )
        return self._renew(site, session, now)

    def _claim_new(self, site, req, visitor, visitor_id, session_id, touch, now):
        visitor_write, merged = self._visitor_write(
            site, req, visitor, visitor_id, session_id, None, now
        )

        def session_doc(number, hold_id, expires, shared):
            return self._session_doc(
                site,
                req,
                visitor_id,
                touch,
                merged,
                now,
                number=number,
                number_kind="dynamic",
                hold_id=hold_id,
                lease_expires_at=expires,
                shared=shared,
            )

        outcome = self._claim(
            site, visitor_id, session_id, visitor, now, visitor_write, session_doc
        )
        assignment = outcome.assignment
        session = session_doc(assignment.number, None, None, assignment.shared)
        if assignment.kind == "default":
            session.update(number_kind="default", pool_exhausted=True)
            self.store.commit([Write(SESSIONS, session_id, session), visitor_write])
        outcome.rows.insert(0, ("session", session_row(session_id, session)))
        return outcome

    def _claim(
        self, site, visitor_id, session_id, visitor, now, visitor_write, session_doc
    ) -> Outcome:
        """Claim a number for a session: sticky, then pool, then overflow."""
        outcome = Outcome()
        tried: set[tuple[str, object]] = set()  # (number, version) attempted

        last_number = visitor.data.get("last_number") if visitor else None
        if last_number:
            snap = self.store.get(NUMBERS, last_number)
            if snap and snap.data.get("site_id") == site.site_id:
                tried.add((snap.id, snap.version))
                if claimable_by(snap.data, visitor_id, now) and self._commit_claim(
                    site,
                    snap,
                    visitor_id,
                    session_id,
                    now,
                    visitor_write,
                    session_doc,
                    "sticky",
                    outcome,
                ):
                    return outcome

        commits = 0
        for _ in range(2 * MAX_CLAIM_ATTEMPTS):
            snap = self.candidates.take(site.site_id, now, self.rng)
            if snap is None or commits == MAX_CLAIM_ATTEMPTS:
                break
            if (snap.id, snap.version) in tried or not is_free(snap.data, now):
                # The cached list predates this request's view: read it afresh.
                self.candidates.forget(site.site_id)
                continue
            tried.add((snap.id, snap.version))
            commits += 1
            if self._commit_claim(
                site,
                snap,
                visitor_id,
                session_id,
                now,
                visitor_write,
                session_doc,
                "pool",
                outcome,
            ):
                return outcome
            # Someone else changed the number since it was read: the cached
            # list is stale, so the next take reads a fresh one.
            outcome.conflicts += 1
            self.candidates.forget(site.site_id)

        if self._claim_cooling(
            site, visitor_id, session_id, now, visitor_write, session_doc, outcome
        ):
            return outcome
        return self._overflow(
            site, visitor_id, session_id, now, visitor_write, session_doc, outcome
        )

    def _hold_doc(
        self, site, number, visitor_id, session_id, now, expires, reason, shared
    ):
        return {
            "site_id": site.site_id,
            "number": number,
            "session_id": session_id,
            "visitor_id": visitor_id,
            "from": now,
            "until": expires,
            "reason": reason,
            "shared": shared,
            "released": False,
            "expires_at": now + RETENTION,
        }

    def _commit_claim(
        self,
        site,
        snap,
        visitor_id,
        session_id,
        now,
        visitor_write,
        session_doc,
        reason,
        outcome,
    ) -> bool:
        hold_id = uuid.uuid4().hex
        expires = now + dt.timedelta(seconds=site.lease_s)
        previous = snap.data.get("lease")
        number_update = {
            "lease": {
                "session_id": session_id,
                "visitor_id": visitor_id,
                "hold_id": hold_id,
                "from": now,
                "expires_at": expires,
            },
            "available_at": expires + dt.timedelta(seconds=site.cooldown_s),
            "last_visitor_id": visitor_id,
            "last_used_at": now,
        }
        hold = self._hold_doc(
            site, snap.id, visitor_id, session_id, now, expires, reason, False
        )
        writes = [
            Write(NUMBERS, snap.id, number_update, mode="update", expect=snap),
            Write(SESSIONS, session_id, session_doc(snap.id, hold_id, expires, False)),
            visitor_write_with_number(visitor_write, snap.id),
            Write(HOLDS, hold_id, hold),
        ]
        if not self.store.commit(writes):
            return False

        if previous and not previous.get("released") and previous["hold_id"]:
            # The previous holder's lease lapsed without a release: its hold
            # ended when the lease did, which the warehouse learns only now.
            if previous["expires_at"] > now:
                previous = {**previous, "expires_at": now}
            outcome.rows.append(("hold", closed_hold_row(site, snap.id, previous)))
        outcome.rows.append(("hold", hold_row(hold_id, hold, "start")))
        outcome.assignment = Assignment(
            number=snap.id,
            display=snap.data.get("display")
            or phones.display(snap.id, site.display_format),
            kind="dynamic",
            reason=reason,
            visitor_id=visitor_id,
            session_id=session_id,
            default=site.default_number,
            lease_expires_at=expires,
            renew_in_s=site.renew_s,
        )
        return True

    def _claim_cooling(
        self, site, visitor_id, session_id, now, visitor_write, session_doc, outcome
    ) -> bool:
        """Under pressure, reuse the number released longest ago whose rest has
        passed the site's minimum cool-down, before giving up on the pool.

        Calls after a visit bunch in its first minutes, so a number resting for
        most of its cool-down is a smaller risk than a visitor shown the default
        number. With ``min_cooldown_s == cooldown_s`` (a strict site) this never
        happens.
        """
        early_s = site.cooldown_s - site.min_cooldown_s
        if early_s <= 0:
            return False
        horizon = now + dt.timedelta(seconds=early_s)
        cooling = self.store.free_numbers(site.site_id, horizon, FEW)
        for snap in cooling:
            if lease_live(snap.data, now):
                continue
            if self._commit_claim(
                site,
                snap,
                visitor_id,
                session_id,
                now,
                visitor_write,
                session_doc,
                "early_reuse",
                outcome,
            ):
                logger.info(
                    "Number reused %d s into its cool-down for site %s",
                    (now - snap.data["lease"]["expires_at"]).total_seconds()
                    if snap.data.get("lease")
                    else -1,
                    site.site_id,
                    extra={"fields": {"event": "early_reuse", "site_id": site.site_id}},
                )
                return True
            outcome.conflicts += 1
        return False

    def _overflow(
        self, site, visitor_id, session_id, now, visitor_write, session_doc, outcome
    ) -> Outcome:
        outcome.exhausted = True
        shared = None
        if site.overflow_policy == "share":
            shared = next(iter(self.store.overflow_numbers(site.site_id, 1)), None)
        logger.warning(
            "Pool exhausted for site %s; falling back to %s",
            site.site_id,
            "a shared overflow number" if shared else "the default number",
            extra={
                "fields": {
                    "event": "pool_exhausted",
                    "site_id": site.site_id,
                    "policy": site.overflow_policy,
                    "fallback": "overflow" if shared else "default",
                }
            },
        )
        if shared is None:
            outcome.assignment = self._fixed(
                site, "default", "exhausted", visitor_id, session_id
            )
            return outcome

        # Overflow numbers are shared on purpose, so no precondition: concurrent
        # sharers may both write ``last_used_at`` and both hold the number.
        hold_id = uuid.uuid4().hex
        expires = now + dt.timedelta(seconds=site.lease_s)
        hold = self._hold_doc(
            site, shared.id, visitor_id, session_id, now, expires, "overflow", True
        )
        session = session_doc(shared.id, hold_id, expires, True)
        session["pool_exhausted"] = True
        self.store.commit(
            [
                Write(
                    NUMBERS,
                    shared.id,
                    {
                        "last_used_at": now,
                        "available_at": expires + dt.timedelta(seconds=site.cooldown_s),
                    },
                    mode="update",
                ),
                Write(SESSIONS, session_id, session),
                visitor_write_with_number(visitor_write, shared.id),
                Write(HOLDS, hold_id, hold),
            ]
        )
        outcome.rows.append(("hold", hold_row(hold_id, hold, "start")))
        outcome.assignment = Assignment(
            number=shared.id,
            display=shared.data.get("display")
            or phones.display(shared.id, site.display_format),
            kind="dynamic",
            reason="overflow",
            visitor_id=visitor_id,
            session_id=session_id,
            default=site.default_number,
            lease_expires_at=expires,
            renew_in_s=site.renew_s,
            shared=True,
        )
        return outcome

    # -- renew and release ----------------------------------------------------

    def _session_for(self, site_id: str, session_id, visitor_id) -> Snapshot:
        session_id = _id(session_id, "session_id")
        if not session_id:
            raise BadRequest("Expected session_id, found none.", code="field")
        snap = self.store.get(SESSIONS, session_id)
        if snap is None or snap.data.get("site_id") != site_id:
            raise NotFound(
                "Expected a known session, found none.", code="unknown_session"
            )
        visitor_id = _id(visitor_id, "visitor_id")
        if visitor_id and snap.data.get("visitor_id") != visitor_id:
            raise NotFound(
                "Expected a known session, found none.", code="unknown_session"
            )
        return snap

    def renew(self, site_id: str, session_id, visitor_id=None) -> Outcome:
        site = self.sites.get(site_id)
        session = self._session_for(site.site_id, session_id, visitor_id)
        return self._continue(site, session, self.now())

    def _renew(self, site: Site, session: Snapshot, now: dt.datetime) -> Outcome:
        data = session.data
        hold_id = data.get("hold_id")
        expires = now + dt.timedelta(seconds=site.lease_s)
        number = data.get("number")

        if data.get("shared") and hold_id:
            # A shared overflow number has no exclusive lease: extend the hold only.
            self.store.commit(
                [Write(HOLDS, hold_id, {"until": expires}, mode="update")]
            )
            return Outcome(
                self._dynamic_answer(
                    site, data, session.id, number, expires, "renew", shared=True
                )
            )

        # Two tabs of one session may renew at once; the loser of that race
        # reads again and still finds its own lease. A lease that has ended
        # (released on the previous page, or lapsed) is never revived: the
        # session claims again, which starts a new hold in the log.
        for _ in range(2):
            snap = self.store.get(NUMBERS, number) if number and hold_id else None
            lease = (snap.data.get("lease") or {}) if snap else {}
            if lease.get("hold_id") != hold_id or not lease_live(snap.data, now):
                break
            ok = self.store.commit(
                [
                    Write(
                        NUMBERS,
                        snap.id,
                        {
                            "lease.expires_at": expires,
                            "available_at": expires
                            + dt.timedelta(seconds=site.cooldown_s),
                        },
                        mode="update",
                        expect=snap,
                    ),
                    Write(HOLDS, hold_id, {"until": expires}, mode="update"),
                ]
            )
            if ok:
                return Outcome(
                    self._dynamic_answer(
                        site, data, session.id, number, expires, "renew"
                    )
                )

        # The lease was lost (the page slept past it and someone else took the
        # number): claim again for the same session, keeping its touches.
        return self._reclaim(site, session, now)

    def _dynamic_answer(
        self, site, data, session_id, number, expires, reason, shared=False
    ):
        return Assignment(
            number=number,
            display=phones.display(number, site.display_format),
            kind="dynamic",
            reason=reason,
            visitor_id=data["visitor_id"],
            session_id=session_id,
            default=site.default_number,
            lease_expires_at=expires,
            renew_in_s=site.renew_s,
            shared=shared,
        )

    def _reclaim(self, site: Site, session: Snapshot, now: dt.datetime) -> Outcome:
        data = dict(session.data)
        visitor_id = data["visitor_id"]
        visitor = self.store.get(VISITORS, visitor_id)
        visitor_write = Write(VISITORS, visitor_id, {"updated_at": now}, mode="merge")

        def session_doc(number, hold_id, expires, shared):
            return {
                **data,
                "number": number,
                "hold_id": hold_id,
                "lease_expires_at": expires,
                "shared": shared,
            }

        outcome = self._claim(
            site, visitor_id, session.id, visitor, now, visitor_write, session_doc
        )
        if outcome.assignment.kind == "default":
            self.store.commit(
                [
                    Write(
                        SESSIONS,
                        session.id,
                        {
                            **data,
                            "number": site.default_number,
                            "number_kind": "default",
                            "hold_id": None,
                            "pool_exhausted": True,
                        },
                    )
                ]
            )
        return outcome

    def release(self, site_id: str, session_id, visitor_id=None) -> Outcome:
        """End the session's hold now; its cool-down starts. Idempotent."""
        site = self.sites.get(site_id)
        session = self._session_for(site.site_id, session_id, visitor_id)
        data = session.data
        hold_id = data.get("hold_id")
        now = self.now()
        outcome = Outcome()
        if data.get("number_kind") != "dynamic" or not hold_id:
            return outcome

        hold = self.store.get(HOLDS, hold_id)
        if hold is None or hold.data.get("released"):
            return outcome
        end = min(now, hold.data["until"])
        writes = [
            Write(HOLDS, hold_id, {"until": end, "released": True}, mode="update")
        ]

        if not data.get("shared"):
            snap = self.store.get(NUMBERS, data["number"])
            lease = (snap.data.get("lease") or {}) if snap else {}
            if lease.get("hold_id") == hold_id:
                writes.insert(
                    0,
                    Write(
                        NUMBERS,
                        snap.id,
                        {
                            "lease.expires_at": end,
                            "lease.released": True,
                            "available_at": end + dt.timedelta(seconds=site.cooldown_s),
                            "last_released_at": end,
                        },
                        mode="update",
                        expect=snap,
                    ),
                )
        if self.store.commit(writes):
            row = hold_row(
                hold_id, {**hold.data, "until": end, "released": True}, "release"
            )
            outcome.rows.append(("hold", row))
        return outcome


def visitor_write_with_number(write: Write, number: str) -> Write:
    return Write(
        write.collection,
        write.doc_id,
        {**write.data, "last_number": number},
        mode=write.mode,
    )


# -- warehouse rows -----------------------------------------------------------


def _iso(value):
    return value.isoformat() if isinstance(value, dt.datetime) else value


def _touch_record(touch: dict | None) -> dict | None:
    if not touch:
        return None
    source, medium = touches.channel(touch)
    record = {key: touch.get(key) for key in touches.TOUCH_KEYS if key != "at"}
    record.update(source=source, medium=medium, at=touch.get("at"))
    return record


def session_row(session_id: str, doc: dict) -> dict:
    """The ``sessions`` table row for a session document."""
    touch = doc.get("touch") or {}
    consent = doc.get("consent") or {}
    return {
        "row_id": session_id,
        "session_id": session_id,
        "site_id": doc["site_id"],
        "visitor_id": doc["visitor_id"],
        "started_at": _iso(doc["started_at"]),
        "source": doc.get("source"),
        "medium": doc.get("medium"),
        "campaign": touch.get("utm_campaign"),
        "content": touch.get("utm_content"),
        "term": touch.get("utm_term"),
        "utm_raw": touch.get("utm_raw"),
        "utm_findings": touch.get("utm_findings") or [],
        "click_ids": {key: touch.get(key) for key in touches.CLICK_IDS},
        "landing_page": doc.get("page_url") or touch.get("landing_page"),
        "referrer": doc.get("referrer"),
        "number": doc.get("number"),
        "number_kind": doc.get("number_kind"),
        "pool_exhausted": bool(doc.get("pool_exhausted")),
        "consent_analytics": bool(consent.get("analytics")),
        "consent_ads": bool(consent.get("ads")),
        "first_touch": _touch_record(doc.get("first_touch")),
        "last_touch": _touch_record(doc.get("last_touch")),
        "last_non_direct_touch": _touch_record(doc.get("last_non_direct_touch")),
    }


def hold_row(hold_id: str, hold: dict, event: str) -> dict:
    """A ``number_holds`` row: one per hold event; the latest per hold wins."""
    return {
        "row_id": f"{hold_id}:{event}",
        "hold_id": hold_id,
        "event": event,
        "site_id": hold["site_id"],
        "number": hold["number"],
        "session_id": hold["session_id"],
        "visitor_id": hold["visitor_id"],
        "held_from": _iso(hold["from"]),
        "held_until": _iso(hold["until"]),
        "reason": hold.get("reason"),
        "shared": bool(hold.get("shared")),
        "released": bool(hold.get("released")),
    }


def closed_hold_row(site: Site, number: str, lease: dict) -> dict:
    return hold_row(
        lease["hold_id"],
        {
            "site_id": site.site_id,
            "number": number,
            "session_id": lease["session_id"],
            "visitor_id": lease["visitor_id"],
            "from": lease["from"],
            "until": lease["expires_at"],
            "reason": "pool",
        },
        "expired",
    )
