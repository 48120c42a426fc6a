"""HTTP function ``assign``: the snippet asks which number to show.

Routes (one function, one URL): ``POST /`` assigns, ``POST /renew`` extends the
lease (heartbeat), ``POST /release`` ends it (``sendBeacon`` on page hide);
``OPTIONS`` answers the CORS preflight. The site comes in the ``site`` query
parameter so that a preflight, which has no body, can be checked too.
"""

from __future__ import annotations

import functools
import logging
import time

import functions_framework

from shared import clients, events, settings, web
from shared.errors import BadRequest, CallTrackError, Forbidden, RateLimited
from shared.pool import Assigner, parse_request
from shared.ratelimit import TokenBuckets
from shared.store import FirestoreStore, OpCounter

logger = logging.getLogger("functions.assign")

ROUTES = ("", "/renew", "/release")
PREFLIGHT_MAX_AGE_S = 86_400


@functools.cache
def _assigner() -> Assigner:
    conf = settings.get()
    store = FirestoreStore(clients.firestore())
    return Assigner(store, window=conf.pick_window, site_ttl_s=conf.site_cache_s)


@functools.cache
def _buckets() -> TokenBuckets:
    conf = settings.get()
    return TokenBuckets(conf.rate_per_min, conf.rate_burst)


def _cors(origin: str | None) -> dict:
    if not origin:
        return {}
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}


@functions_framework.http
@web.endpoint
def assign(request):
    route = request.path.rstrip("/")
    if route not in ROUTES:
        raise BadRequest(
            f"Expected one of / /renew /release, found {route!r}.", code="route"
        )
    assigner = _assigner()
    site = assigner.sites.get(request.args.get("site", ""))
    origin = request.headers.get("Origin")
    if origin and not site.allows_origin(origin):
        raise Forbidden(
            f"Expected an allowed origin for site {site.site_id}, "
            f"found {origin!r:.100}.",
            code="origin",
        )

    if request.method == "OPTIONS":
        return (
            "",
            204,
            {
                **_cors(origin),
                "Access-Control-Allow-Methods": "POST, OPTIONS",
                "Access-Control-Allow-Headers": "Content-Type",
                "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE_S),
            },
        )
    if request.method != "POST":
        raise BadRequest(f"Expected POST, found {request.method}.", code="method")

    try:
        return _handle(request, assigner, site.site_id, route, origin)
    except CallTrackError as exc:
        # The page may read the reason only when its origin is allowed.
        exc.headers = _cors(origin)
        raise


def _handle(request, assigner, site_id, route, origin):
    started = time.perf_counter()
    if route == "":
        wait_s = _buckets().allow(web.client_ip(request))
        if wait_s:
            raise RateLimited(
                "Too many new visits from one client; slow down.",
                retry_after_s=max(1, round(wait_s)),
            )
    body = web.read_json_object(request)

    counter = OpCounter()
    assigner.store.bind_counter(counter)
    try:
        if route == "":
            req = parse_request(site_id, body, request.headers.get("User-Agent"))
            outcome = assigner.assign(req)
        elif route == "/renew":
            outcome = assigner.renew(
                site_id, body.get("session_id"), body.get("visitor_id")
            )
        else:
            outcome = assigner.release(
                site_id, body.get("session_id"), body.get("visitor_id")
            )
    finally:
        assigner.store.bind_counter(None)
    _publish(outcome.rows)

    timing = (
        f'fsr;desc="{counter.reads}", fsw;desc="{counter.writes}", '
        f'conflicts;desc="{outcome.conflicts}", '
        f"app;dur={(time.perf_counter() - started) * 1000:.1f}"
    )
    headers = {**_cors(origin), "Server-Timing": timing, "Cache-Control": "no-store"}
    if outcome.assignment is None:
        return "", 204, headers
    return web.json_response(outcome.assignment.to_response(), 200, headers)


def _publish(rows) -> None:
    """Hand warehouse rows to Pub/Sub; the visitor's answer does not wait on
    BigQuery.

    Note: if Pub/Sub refuses, the assignment stands (it is in Firestore) and the
    rows are logged as lost for the warehouse; failing the page over a reporting
    row would cost the call itself.
    """
    try:
        events.publish(settings.get().topic_sessions, rows)
    except CallTrackError as exc:
        logger.error(
            "Session rows not published: %s",
            exc.message,
            extra={"fields": {"event": "rows_lost", "rows": len(rows)}},
        )
