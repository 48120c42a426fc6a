"""HTTP function ``call_webhook``: telephony providers report calls here.

One URL per provider and site: ``POST /{provider}/{site_id}``. Mango appends
its event path (``/mango/{site_id}/events/call``, ``.../summary``,
``.../recording``); Zadarma checks the URL with ``GET /zadarma/{site_id}
?zd_echo=...``. The handler verifies, parses, records the events in the
call's Firestore document and publishes what the call owes to ``call-events``
(``shared.webhook_store``); stitching a call to a visit is another function's
work, so the provider gets its answer fast.

Answers: 200 once recorded (and published, when a message was owed); 400 for
a malformed payload; 401 or 403 for a missing, wrong or replayed signature;
404 for an unknown site, provider or path; 503 when Firestore or Pub/Sub is
unavailable, so that the provider retries. A refused request is neither
recorded nor published. Providers deliver at least once and in any order; a
repeat is a no-op (``shared.callmerge``).

Note: the Twilio signature covers the URL Twilio called. Configure providers
with the function's Cloud Run URL (``https://<service>-<hash>.a.run.app/...``),
whose path reaches the function as sent; the ``cloudfunctions.net`` form
strips the function's name from the path, so the rebuilt URL would differ.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import logging
import time

import flask
import functions_framework

from shared import clients, events, providers, settings, web
from shared.errors import BadRequest, ConfigError, NotFound
from shared.pool import SiteCache
from shared.providers import ProviderSecrets, WebhookRequest
from shared.sites import Site
from shared.store import FirestoreStore
from shared.webhook_store import CLAIM_MARGIN_S, CallStore, call_doc_id, deliver
from shared.webhook_store import masked_payload, sender_site

logger = logging.getLogger("functions.call_webhook")

# Provider callbacks are 1-3 KB; 64 KB is room for any of them, and refusing
# more keeps a hostile body from costing parse time.
MAX_BODY_BYTES = 64 * 1024
SECRET_NAMES = tuple(item.name for item in dataclasses.fields(ProviderSecrets))


@functools.cache
def _store() -> CallStore:
    claim_s = settings.get().publish_timeout_s + CLAIM_MARGIN_S
    return CallStore(clients.firestore(), claim_s=claim_s)


@functools.cache
def _sites() -> SiteCache:
    return SiteCache(FirestoreStore(clients.firestore()), settings.get().site_cache_s)


@functions_framework.http
@web.endpoint
def call_webhook(request: flask.Request):
    started = time.perf_counter()
    now = dt.datetime.now(dt.UTC)
    provider_name, site_id = _route(request.path)
    provider = providers.get(provider_name)
    site = _site(site_id, provider.name)

    body = web.read_body(request, MAX_BODY_BYTES)
    req = WebhookRequest.build(request.method, web.public_url(request),
                               dict(request.headers), body)
    if req.method == "GET" and provider.name == "zadarma":
        echo = providers.echo_response(req)
        if echo is not None:
            return flask.Response(echo, status=200, mimetype="text/plain")
    if req.method != "POST":
        # A GET callback would also put the caller's number in request logs.
        msg = f"Expected POST, found {req.method}."
        raise BadRequest(msg, code="method")

    provider.verify(req, provider_secrets(site.site_id), now)
    parsed = provider.parse(req, site.region, site.timezone, now=now)
    if not parsed:
        logger.debug("Untracked %s event ignored", provider.name,
                     extra={"fields": {"provider": provider.name,
                                       "site_id": site.site_id}})

    raw = masked_payload(req, [event.caller for event in parsed]) if parsed else None
    calls = []
    for provider_call_id, call_events in _by_call(parsed).items():
        call_id = call_doc_id(provider.name, site.site_id, provider_call_id)
        delivery = deliver(_store(), call_id, site.site_id, call_events, raw=raw,
                           publish=events.publish,
                           topic=settings.get().topic_call_events)
        _log(provider.name, site.site_id, call_events, delivery)
        calls.append({"call_id": call_id, "published": list(delivery.published)})

    timing = f"app;dur={(time.perf_counter() - started) * 1000:.1f}"
    return web.json_response({"events": len(parsed), "calls": calls}, 200,
                             {"Server-Timing": timing})


def provider_secrets(site_id: str) -> ProviderSecrets:
    """The site's provider secrets from settings; absent ones stay None."""
    values = settings.get().provider_secrets.get(site_id) or {}
    unknown = sorted(set(values) - set(SECRET_NAMES))
    if unknown:
        msg = (
            f"Expected provider secret names among {', '.join(SECRET_NAMES)} for "
            f"site {site_id}, found {', '.join(unknown)}."
        )
        raise ConfigError(msg, code="secret_names")
    return ProviderSecrets(**values)


def _route(path: str) -> tuple[str, str]:
    parts = path.strip("/").split("/")
    if len(parts) < 2 or (len(parts) > 2 and parts[0] != "mango"):
        msg = f"Expected /{{provider}}/{{site_id}}, found {path[:80]!r}."
        raise NotFound(msg, code="route")
    return parts[0], parts[1]


def _site(site_id: str, provider: str) -> Site:
    site = sender_site(_sites(), site_id)

    # A site may list the providers it uses; absent, every provider is open.
    enabled = site.extra.get("providers")
    if enabled is not None and not isinstance(enabled, list):
        found = type(enabled).__name__
        msg = f"Expected extra.providers of site {site_id} as a list, found {found}."
        raise ConfigError(msg, code="site_config")
    if enabled is not None and provider not in enabled:
        msg = f"Expected a provider enabled for site {site_id}, found {provider!r}."
        raise NotFound(msg, code="provider_disabled")
    return site


def _by_call(parsed: list) -> dict[str, list]:
    """The events grouped by call, in arrival order (a request rarely has two)."""
    calls: dict[str, list] = {}
    for event in parsed:
        calls.setdefault(event.provider_call_id, []).append(event)
    return calls


def _log(provider: str, site_id: str, call_events: list, delivery) -> None:
    # Provider, site, call and kinds only: the caller's number is never logged.
    kinds = [event.event_kind for event in call_events]
    logger.info(
        "Call %s: %s recorded%s", delivery.call_id, "+".join(kinds),
        f", published {', '.join(delivery.published)}" if delivery.published else "",
        extra={"fields": {
            "provider": provider, "site_id": site_id, "call_id": delivery.call_id,
            "event_kinds": kinds, "changed": delivery.changed,
            "published": list(delivery.published),
        }},
    )
