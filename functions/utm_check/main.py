"""HTTP function ``utm_check``: the UTM standard for a form or a spreadsheet script.

Routes (one function, one URL): ``POST /`` checks links (``{"urls": [...]}``),
``POST /values`` normalises one UTM set, ``POST /build`` tags a landing page for
a platform, ``GET /dictionary`` lists the allowed values; ``OPTIONS`` answers the
CORS preflight. An optional ``site`` query parameter selects the site's own
dictionary (docs/utm.md). The logic is ``shared.utm.service``.

Idempotent: nothing is written, so any request may be repeated.
"""

from __future__ import annotations

import functools

import functions_framework

from shared import clients, settings, utm, web
from shared.errors import BadRequest, CallTrackError
from shared.utm import service

# 500 links of a few hundred characters each, with room to spare; the snippet's
# 16 KB limit would cut a spreadsheet column short.
MAX_BODY_BYTES = 256 * 1024
PREFLIGHT_MAX_AGE_S = 86_400
# Anyone may call it from any page: it reads no personal data, writes nothing,
# and answers only what a link's own tags already show. No cookies are used,
# so "*" grants nothing beyond reading the answer.
CORS = {"Access-Control-Allow-Origin": "*"}

POST_ROUTES = {
    "": service.check_links,
    "/values": service.check_values,
    "/build": service.build,
}


@functools.cache
def _dictionaries() -> utm.SiteDictionaries:
    return utm.SiteDictionaries(clients.firestore(), settings.get().site_cache_s)


def _dictionary(request) -> tuple[utm.Dictionary, str]:
    site = request.args.get("site")
    if site is None:
        return utm.default_dictionary(), "default"
    dictionary, own = _dictionaries().get(site)
    return dictionary, "site" if own else "default"


@functions_framework.http
@web.endpoint
def utm_check(request):
    try:
        return _handle(request)
    except CallTrackError as exc:
        # A page may read why it was refused.
        exc.headers = CORS
        raise


def _handle(request):
    route = request.path.rstrip("/")
    if request.method == "OPTIONS":
        return (
            "",
            204,
            {
                **CORS,
                "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
                "Access-Control-Allow-Headers": "Content-Type",
                "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE_S),
            },
        )

    handler = POST_ROUTES.get(route)
    if handler is None and route != "/dictionary":
        msg = f"Expected one of / /values /build /dictionary, found {route!r:.60}."
        raise BadRequest(msg, code="route")
    method = "POST" if handler else "GET"
    if request.method != method:
        msg = f"Expected {method} for {route or '/'}, found {request.method}."
        raise BadRequest(msg, code="method")

    if handler is None:
        dictionary, which = _dictionary(request)
        body = {"dictionary": which, **service.describe(dictionary)}
        return web.json_response(body, 200, CORS)

    body = web.read_json_object(request, MAX_BODY_BYTES)
    dictionary, which = _dictionary(request)
    answer = {"dictionary": which, **handler(body, dictionary)}
    return web.json_response(answer, 200, {**CORS, "Cache-Control": "no-store"})
