"""HTTP function ``recording``: a call's recording, for configured readers only.

- ``GET /link/{site_id}/{call_id}`` with ``Authorization: Bearer <Google ID
  token>``: a reader (``CALLTRACK_RECORDING_READERS``) gets a link that works
  for ``CALLTRACK_RECORDING_LINK_S`` seconds: ``{"url", "expires_at"}``.
- ``GET /play/{link}``: the audio, fetched from the provider and streamed.

Answers 401 without a valid ID token, 403 to anyone not a reader and for a
forged or expired link, 404 when the call has no recording or the provider
lost it, 501 for a provider the product does not know, 503 when BigQuery,
Google's keys or the provider are away. Every link given (``recording_link``)
and every play (``recording_played``) is logged with the reader and the call.
Nothing is written, so any request may be repeated.
"""

from __future__ import annotations

import datetime as dt
import logging
from urllib.parse import urlsplit

import flask
import functions_framework

from shared import recordings, settings, web
from shared.errors import NotFound
from shared.sites import SITE_ID

logger = logging.getLogger("functions.recording")


@functions_framework.http
@web.endpoint
def recording(request: flask.Request):
    parts = request.path.strip("/").split("/")
    if request.method != "GET":
        raise NotFound("Expected GET /link/{site}/{call} or GET /play/{link}.",
                       code="route")
    if len(parts) == 3 and parts[0] == "link" and SITE_ID.match(parts[1]):
        return _link(request, parts[1], parts[2])
    if len(parts) == 2 and parts[0] == "play":
        return _play(parts[1])
    raise NotFound("Expected GET /link/{site}/{call} or GET /play/{link}.",
                   code="route")


def _link(request: flask.Request, site_id: str, call_id: str):
    conf = settings.get()
    now = dt.datetime.now(dt.UTC)
    claims = recordings.verify_id_token(
        recordings.bearer(request.headers.get("Authorization")),
        conf.recording_audience,
        conf.google_certs_url,
    )
    reader = recordings.reader_of(claims, conf.recording_readers)

    # No link to nothing: a missing or unfetchable recording answers now.
    provider, ref = recordings.find(site_id, call_id)
    recordings.source(provider, ref, conf.provider_secrets.get(site_id, {}),
                      conf.emulated, conf.recording_apis)
    expires = now + dt.timedelta(seconds=conf.recording_link_s)
    token = recordings.make_link(
        conf.recording_link_secret,
        recordings.Link(site_id, call_id, reader, expires),
    )
    logger.info(
        "Recording link of call %s given to %s", call_id, reader,
        extra={"fields": {"event": "recording_link", "site_id": site_id,
                          "call_id": call_id, "reader": reader,
                          "expires_at": expires.isoformat()}},
    )
    base = urlsplit(web.public_url(request))
    url = f"{base.scheme}://{base.netloc}/play/{token}"
    return web.json_response({"url": url, "expires_at": expires.isoformat()},
                             headers={"Cache-Control": "no-store"})


def _play(token: str):
    conf = settings.get()
    link = recordings.open_link(conf.recording_link_secret, token,
                                dt.datetime.now(dt.UTC))
    provider, ref = recordings.find(link.site_id, link.call_id)
    src = recordings.source(provider, ref, conf.provider_secrets.get(link.site_id, {}),
                            conf.emulated, conf.recording_apis)
    upstream = recordings.fetch(provider, src)

    logger.info(
        "Recording of call %s played by %s", link.call_id, link.reader,
        extra={"fields": {"event": "recording_played", "site_id": link.site_id,
                          "call_id": link.call_id, "reader": link.reader,
                          "provider": provider}},
    )
    headers = {"Cache-Control": "private, no-store",
               "Content-Disposition": f'inline; filename="{link.call_id}.mp3"'}
    return flask.Response(
        upstream.iter_content(recordings.CHUNK),
        status=200,
        mimetype=upstream.headers.get("Content-Type", "audio/mpeg"),
        headers=headers,
    )
