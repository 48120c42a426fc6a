"""Replay synthetic traffic through the real functions on the local stack.

``run_live`` plays the same visits ``run_product`` scores in memory, but as a
browser and a PBX would: each page start is a POST to ``assign``, each
heartbeat a ``/renew``, each goodbye a ``/release``, and each call two signed
requests to ``call_webhook``'s generic hook (start, then end, so a
``call.completed`` is published). The stitch function then writes the call to
BigQuery, and the row's ``session_id`` is scored against the truth with the
same ``Score`` as the in-memory run.

Time is compressed: ``scale`` simulated seconds pass in one wall second, and
the site's lease, renew, cool-down and minimum cool-down are divided by
``scale`` too, so every timer keeps its place relative to the traffic. The
site takes whole seconds only, so the useful scales divide 40 (renew) and 120
(lease): 10 or 20 keep every default exact. Quiet stretches longer than a
lease plus a cool-down (no event at all) are cut to that length: after it
every lease has lapsed and every cool-down passed whether the stretch lasts 20
minutes or 6 hours, so nothing the product reads can tell the difference.

What cannot be compressed: the emulators' own latency (tens of ms per
request), the assign function's one-second candidate cache and the stitch
function's 5 s clock-skew allowance, each worth ``scale`` times more simulated
time here. They are the reason the live run may disagree with the in-memory
one on a few calls (tests/test_simulator_live.py measures by how much).
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import hashlib
import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable

from shared import pool_admin, settings
from shared.providers import generic
from shared.sites import site_from_doc
from simulator import run
from simulator.run import STATIC_NUMBER, Score, session_id
from simulator.traffic import Visit

# The stack's test and demo provider secrets are keyed by this site id.
LIVE_SITE = "demo"
ORIGIN = "https://shop.example.test"
UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/156.0 Safari/537.36"
TIMERS = ("lease_s", "renew_s", "cooldown_s", "min_cooldown_s")
# A call: a few seconds of ringing, then a conversation long enough to count.
RING_S = 4
TALK_S = 45
HTTP_TIMEOUT_S = 30


class LiveError(RuntimeError):
    """The live replay could not run (a function refused a request)."""


def live_site_doc(site_id: str, scale: int, site_overrides: dict | None) -> dict:
    """The simulator's site with its timers divided by ``scale``.

    Raises ``ValueError`` when a timer would not stay a whole number of
    seconds (>= 1 for lease and renew): rounding would move it relative to
    the traffic and the two runs would no longer be comparable.
    """
    doc = {**run.SITE, **(site_overrides or {})}
    simulated = site_from_doc(doc)
    doc = {**doc, "site_id": site_id, "allowed_origins": [ORIGIN]}
    for key in TIMERS:
        value = getattr(simulated, key)
        if value % scale or (key in ("lease_s", "renew_s") and value < scale):
            msg = f"Expected {key}={value} to divide by scale {scale} exactly."
            raise ValueError(msg)
        doc[key] = value // scale
    return doc


def timeline(visits: list[Visit], renew_s: int, scale: int, quiet_s: float):
    """(wall offset s, simulated time, kind, visit, call), in simulated order.

    Gaps longer than ``quiet_s`` simulated seconds shrink to ``quiet_s``.
    """
    events = sorted(run._events(visits, renew_s), key=lambda e: (e[0], e[1]))
    out = []
    shift = 0.0
    previous = None
    for at, _, kind, visit, call in events:
        if previous is not None:
            gap = (at - previous).total_seconds()
            shift += max(0.0, gap - quiet_s)
        previous = at
        offset = ((at - events[0][0]).total_seconds() - shift) / scale
        out.append((offset, at, kind, visit, call))
    return out


class _Http:
    """A browser's and a PBX's requests to the functions (urllib, no session)."""

    def __init__(self, stack, site_id: str) -> None:
        self.assign_url = stack.urls["assign"]
        self.webhook_url = stack.urls["call_webhook"]
        self.site_id = site_id
        secrets = settings.get().provider_secrets.get(site_id) or {}
        self.secret = secrets.get("generic_secret")
        if not self.secret:
            msg = f"Expected a generic_secret for site {site_id} in the stack's env."
            raise LiveError(msg)

    def _post(self, url: str, body: bytes, headers: dict) -> tuple[int, dict]:
        req = urllib.request.Request(url, data=body, method="POST")
        for name, value in headers.items():
            req.add_header(name, value)
        try:
            with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT_S) as resp:
                data = resp.read()
                return resp.status, json.loads(data) if data else {}
        except urllib.error.HTTPError as exc:
            return exc.code, {"error": exc.read()[:300].decode(errors="replace")}

    def assign(self, path: str, body: dict, ip: str) -> dict:
        status, answer = self._post(
            f"{self.assign_url}{path}?site={self.site_id}",
            json.dumps(body).encode(),
            {
                "Content-Type": "text/plain;charset=UTF-8",
                "Origin": ORIGIN,
                "User-Agent": UA,
                "X-Forwarded-For": ip,
            },
        )
        if status >= 300:
            raise LiveError(f"assign{path} answered {status}: {answer}")
        return answer

    def hook(self, body: dict) -> None:
        raw = json.dumps(body).encode()
        stamp = str(int(time.time()))
        status, answer = self._post(
            f"{self.webhook_url}/generic/{self.site_id}",
            raw,
            {
                "Content-Type": "application/json",
                generic.TIMESTAMP_HEADER: stamp,
                generic.SIGNATURE_HEADER: generic.sign(self.secret, stamp, raw),
            },
        )
        if status >= 300:
            raise LiveError(f"call_webhook answered {status}: {answer}")


def _assign_body(visit: Visit) -> dict:
    touch = dict(visit.touch)
    # A stable GA4 client id per visitor, so ga_send has someone to credit.
    digest = int(hashlib.sha256(visit.visitor.encode()).hexdigest()[:8], 16)
    return {
        "visitor_id": visit.visitor,
        "session_id": session_id(visit),
        "page_url": "https://shop.example.test/",
        "referrer": touch.get("referrer"),
        "first_touch": touch or None,
        "last_touch": touch or None,
        "ga_client_id": f"{digest}.{int(visit.start.timestamp())}",
        "ga_session_id": str(int(visit.start.timestamp())),
        "consent": {"analytics": True, "ads": True},
    }


def _visitor_ip(visit: Visit) -> str:
    # One address per visitor, as real traffic: the per-IP limit never bites.
    n = int(hashlib.sha256(visit.visitor.encode()).hexdigest()[:6], 16)
    return f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255 or 1}"


def run_live(
    stack,
    visits: list[Visit],
    pool_size: int,
    scale: int,
    site_overrides: dict | None = None,
    progress: Callable[[str], None] = print,
    *,
    site_id: str = LIVE_SITE,
    paid_calls_only: bool = True,
    workers: int = 12,
    rows_timeout_s: float = 180.0,
) -> Score:
    """Replay ``visits`` through the stack's functions; score the stitched calls.

    Configures ``site_id`` (its numbers are the in-memory run's) on the
    stack's Firestore, so run it on a stack whose Firestore holds nothing of
    that site. With ``paid_calls_only`` false the calls of unpaid visits are
    placed too (on static or default numbers), for the warehouse and GA4;
    only paid visits' calls are scored either way, as ``run_product`` does.
    The returned score carries ``missing``: calls whose row never reached
    BigQuery within ``rows_timeout_s`` (scored unattributed), and ``late_s``:
    the largest delay of an event behind its schedule. ``exhausted`` counts
    the assign function's ``pool_exhausted`` log events; ``peak_held`` the
    most dynamic numbers whose lease the responses showed live at once.
    """
    doc = live_site_doc(site_id, scale, site_overrides)
    sim_site = site_from_doc({**run.SITE, **(site_overrides or {})})
    _configure(stack, doc, pool_size)
    http = _Http(stack, site_id)

    quiet_s = sim_site.lease_s + sim_site.cooldown_s
    plan = timeline(visits, sim_site.renew_s, scale, quiet_s)
    tag = uuid.uuid4().hex[:8]
    score = Score("live", pool_size)
    shown: dict[int, str] = {}
    leases: dict[str, float] = {}  # number -> wall expiry (for utilisation)
    sent: list[tuple[str, Visit, object]] = []  # (call_id, visit, call)
    lock = threading.Lock()
    chains: dict[int, concurrent.futures.Future] = {}
    lease_wall_s = doc["lease_s"]

    def note(visit: Visit, answer: dict) -> None:
        with lock:
            shown[visit.visit_id] = answer["number"]
            if answer["kind"] == "dynamic" and not answer["shared"]:
                now = time.monotonic()
                leases[answer["number"]] = now + lease_wall_s
                live = sum(1 for until in leases.values() if until > now)
                score.peak_held = max(score.peak_held, live)

    def act(kind: str, visit: Visit, call, index: int) -> None:
        sid = session_id(visit)
        ip = _visitor_ip(visit)
        if kind == "start":
            note(visit, http.assign("", _assign_body(visit), ip))
        elif kind == "beat":
            body = {"session_id": sid, "visitor_id": visit.visitor}
            note(visit, http.assign("/renew", body, ip))
        elif kind == "leave" and visit.releases:
            http.assign("/release", {"session_id": sid}, ip)
        elif kind == "call":
            _place_call(http, tag, visit, call, index, shown, sent, lock)

    def chained(before, kind, visit, call, index):
        # A visit's events run in order even when one request is slow.
        if before is not None:
            before.result()
        act(kind, visit, call, index)

    exhausted_before = _exhaustions(stack, site_id)
    started = time.monotonic()
    late = 0.0
    total = len(plan)
    span = plan[-1][0] if plan else 0.0
    progress(
        f"live replay: {len(visits)} visits, {total} events over {span:.0f} s "
        f"wall (scale {scale}, lease {doc['lease_s']} s, renew {doc['renew_s']} s, "
        f"cool-down {doc['cooldown_s']} s), pool {pool_size}"
    )
    next_report = started + 10
    futures = []
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for n, (offset, _, kind, visit, call) in enumerate(plan):
            if kind == "call" and paid_calls_only and not visit.paid:
                continue
            wait = started + offset - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            late = max(late, -wait)
            index = n if kind == "call" else 0
            future = pool.submit(
                chained, chains.get(visit.visit_id), kind, visit, call, index
            )
            chains[visit.visit_id] = future
            futures.append(future)
            if time.monotonic() >= next_report:
                next_report += 10
                progress(
                    f"  {time.monotonic() - started:5.0f} s: {n + 1}/{total} events,"
                    f" {len(sent)} calls placed, {late:.1f} s behind at worst"
                )
        for future in futures:
            future.result()
    progress(
        f"  replay done in {time.monotonic() - started:.0f} s; "
        f"{len(sent)} calls placed, waiting for their rows in BigQuery..."
    )

    score.exhausted = _exhaustions(stack, site_id) - exhausted_before
    rows = _wait_for_rows(stack, [c for c, _, _ in sent], rows_timeout_s, progress)
    score.missing = 0
    for call_id, visit, call in sorted(sent, key=lambda s: s[2].at):
        if not visit.paid:
            continue
        if call_id not in rows:
            score.missing += 1
        score.add(call, visit.end, session_id(visit), rows.get(call_id))
    score.late_s = round(late, 2)
    return score


def _configure(stack, doc: dict, pool_size: int) -> None:
    client = stack.firestore()
    pool_admin.put_site(client, doc)
    rows = [{"number": n} for n in run._numbers(pool_size)]
    rows.append(
        {
            "number": STATIC_NUMBER,
            "kind": "static",
            "channel": {"utm_source": "billboard", "utm_medium": "offline"},
        }
    )
    pool_admin.import_numbers(client, doc["site_id"], rows)


def _exhaustions(stack, site_id: str) -> int:
    """``pool_exhausted`` events the assign function has logged for the site."""
    count = 0
    for line in stack.log_text("assign").splitlines():
        if '"pool_exhausted"' not in line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        count += entry.get("event") == "pool_exhausted" and (
            entry.get("site_id") == site_id
        )
    return count


def _place_call(http: _Http, tag, visit, call, index, shown, sent, lock) -> None:
    """Ring the number the visit last saw: start, then end with the outcome."""
    with lock:
        number = shown.get(visit.visit_id, run.DEFAULT_NUMBER)
    provider_call_id = f"sim-{tag}-{visit.visit_id}-{index}"
    started_at = dt.datetime.now(dt.UTC)
    common = {
        "call_id": provider_call_id,
        "tracking_number": number,
        "caller": call.caller,
        "started_at": started_at.isoformat(),
    }
    http.hook({**common, "event": "start", "occurred_at": started_at.isoformat()})
    ended = started_at + dt.timedelta(seconds=RING_S + TALK_S)
    http.hook(
        {
            **common,
            "event": "end",
            "occurred_at": ended.isoformat(),
            "answered": True,
            "ring_s": RING_S,
            "talk_s": TALK_S,
            "status": "answered",
        }
    )
    with lock:
        sent.append((f"generic:{http.site_id}:{provider_call_id}", visit, call))


def _wait_for_rows(stack, call_ids: list[str], timeout_s: float, progress) -> dict:
    """call_id -> session_id (None: unattributed) of each stitched call."""
    if not call_ids:
        return {}
    deadline = time.monotonic() + timeout_s
    quoted = ", ".join(f"'{c}'" for c in call_ids)
    rows: dict[str, str | None] = {}
    while True:
        found = stack.query(
            "select call_id, session_id from `{dataset}.calls` "
            f"where call_id in ({quoted}) and version = 1"
        )
        rows = {row["call_id"]: row["session_id"] for row in found}
        if len(rows) >= len(call_ids) or time.monotonic() > deadline:
            break
        time.sleep(1)
    missing = len(call_ids) - len(rows)
    progress(
        f"  {len(rows)}/{len(call_ids)} calls stitched into BigQuery"
        + (f"; {missing} never arrived" if missing else "")
    )
    return rows
