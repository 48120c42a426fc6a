"""Access to call recordings: who may listen, short-lived links, and fetching.

The product keeps only a recording's reference (the provider's URL or id, in
BigQuery ``calls.recording_ref``), never the audio. A listener proves who they
are with a Google ID token; a configured reader (``user:`` or ``domain:``
member) gets a link that works for ``recording_link_s`` seconds and names the
call and the reader. Following the link fetches the audio from the provider
and streams it through; every link given and every play is logged.

A link is ``{payload}.{mac}``: the payload is base64url JSON ``{"s": site,
"c": call, "e": expiry (unix s), "p": reader}`` and the MAC HMAC-SHA256 of it
under ``CALLTRACK_RECORDING_LINK_KEY``. Rotating the key ends every link.

Note: Mango Office keeps recordings behind its own API (a recording id) and
Zadarma behind a signed request (``call_id_with_rec``); neither API is in the
contracts the product follows yet, so their references are answered 501 with
that reason. Twilio, UIS and the generic hook reference a URL.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
import logging
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from shared import clients
from shared.errors import CallTrackError, Forbidden, NotFound
from shared.errors import TransientError, Unauthorized

logger = logging.getLogger(__name__)

GOOGLE_ISSUERS = ("accounts.google.com", "https://accounts.google.com")
# Twilio recording URLs name the account, whose SID is the basic-auth user.
TWILIO_ACCOUNT = re.compile(r"/Accounts/(AC[0-9a-fA-F]{32})/Recordings/")
URL_PROVIDERS = ("twilio", "uis", "generic")
# A link key shorter than this is no key: Terraform's first secret version is
# the placeholder "{}", which anyone could sign links with.
MIN_KEY_CHARS = 32


class NotSupported(CallTrackError):
    """The reference exists, but the product cannot fetch it from its provider."""

    status = 501
    code = "recording_unsupported"


@dataclass(frozen=True)
class Link:
    site_id: str
    call_id: str
    reader: str
    expires_at: dt.datetime


# -- who may listen ------------------------------------------------------------


def allowed(email: str, readers: tuple[str, ...]) -> bool:
    email = email.lower()
    domain = email.rsplit("@", 1)[-1]
    return f"user:{email}" in readers or f"domain:{domain}" in readers


def reader_of(claims: dict, readers: tuple[str, ...]) -> str:
    """The reader's email from verified ID token claims, or Forbidden."""
    if claims.get("iss") not in GOOGLE_ISSUERS:
        raise Unauthorized("Expected a Google ID token, found another issuer.",
                           code="token")
    email = claims.get("email")
    if not isinstance(email, str) or claims.get("email_verified") is not True:
        raise Unauthorized("Expected an ID token with a verified email.",
                           code="token")
    if not allowed(email, readers):
        msg = f"Expected a configured recording reader, found {email}."
        raise Forbidden(msg, code="not_a_reader")
    return email.lower()


def verify_id_token(token: str, audience: str, certs_url: str) -> dict:
    """Verify a Google ID token's signature, expiry and audience; its claims."""
    import google.auth.exceptions
    import google.auth.transport.requests
    from google.oauth2 import id_token

    if not audience:
        raise Unauthorized("Recording access is not configured: no audience.",
                           code="not_configured")
    request = google.auth.transport.requests.Request()
    try:
        return id_token.verify_token(token, request, audience=audience,
                                     certs_url=certs_url, clock_skew_in_seconds=10)
    except google.auth.exceptions.TransportError as exc:
        raise TransientError(f"Google's keys could not be fetched: {exc}") from exc
    except (ValueError, google.auth.exceptions.GoogleAuthError) as exc:
        # The reason names the failed check, never the token.
        reason = str(exc).split(":")[0][:120]
        raise Unauthorized(f"Expected a valid ID token: {reason}.",
                           code="token") from None


def bearer(header: str | None) -> str:
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Expected Authorization: Bearer <Google ID token>.",
                           code="token")
    return token.strip()


# -- links ---------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: str, payload: str) -> str:
    return _b64(hmac.new(key.encode(), payload.encode(), hashlib.sha256).digest())


def _check_key(key: str) -> None:
    if len(key) < MIN_KEY_CHARS:
        msg = (f"Recording access is not configured: the link key needs at least "
               f"{MIN_KEY_CHARS} characters.")
        raise Unauthorized(msg, code="not_configured")


def make_link(key: str, link: Link) -> str:
    _check_key(key)
    body = {"s": link.site_id, "c": link.call_id, "p": link.reader,
            "e": int(link.expires_at.timestamp())}
    payload = _b64(json.dumps(body, separators=(",", ":")).encode())
    return f"{payload}.{_mac(key, payload)}"


def open_link(key: str, token: str, now: dt.datetime) -> Link:
    """The link's content if its MAC is right and it has not expired."""
    _check_key(key)
    payload, _, mac = token.partition(".")
    if not payload or not hmac.compare_digest(mac, _mac(key, payload)):
        raise Forbidden("Expected a recording link this product gave.", code="link")
    try:
        body = json.loads(_unb64(payload))
        link = Link(body["s"], body["c"], body["p"],
                    dt.datetime.fromtimestamp(int(body["e"]), dt.UTC))
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise Forbidden("Expected a recording link this product gave.",
                        code="link") from None
    if link.expires_at <= now:
        raise Forbidden("The recording link has expired; ask for a new one.",
                        code="link_expired")
    return link


# -- fetching ------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """Where the audio is and how to ask for it."""

    url: str
    auth: tuple[str, str] | None = None


def source(provider: str, ref: str, secrets: dict, allow_http: bool) -> Source:
    """The request that fetches a recording reference from its provider."""
    if provider not in URL_PROVIDERS:
        msg = (f"Recordings of {provider} are kept behind its own API, which "
               "the product does not call yet.")
        raise NotSupported(msg)

    parts = urlsplit(ref)
    schemes = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in schemes or not parts.netloc:
        msg = f"Expected the recording of this call at an {schemes[0]} URL."
        raise NotFound(msg, code="recording_ref")
    if provider != "twilio":
        return Source(ref)

    account = TWILIO_ACCOUNT.search(parts.path)
    token = secrets.get("twilio_auth_token")
    if account is None or not token:
        msg = "Expected a Twilio recording URL and the site's Twilio auth token."
        raise NotFound(msg, code="recording_ref")
    # The bare recording URL answers its metadata; ".mp3" is the audio.
    url = ref if parts.path.endswith((".mp3", ".wav")) else f"{ref}.mp3"
    return Source(url, (account.group(1), token))


def find(site_id: str, call_id: str) -> tuple[str, str]:
    """The provider and the latest recording reference of a stitched call."""
    from google.api_core import exceptions
    from google.cloud import bigquery

    sql = (
        f"SELECT provider, recording_ref FROM `{clients.table_id('calls')}` "
        "WHERE site_id = @site AND call_id = @call AND recording_ref IS NOT NULL "
        "ORDER BY version DESC LIMIT 1"
    )
    config = bigquery.QueryJobConfig(query_parameters=[
        bigquery.ScalarQueryParameter("site", "STRING", site_id),
        bigquery.ScalarQueryParameter("call", "STRING", call_id),
    ])
    try:
        rows = list(clients.bigquery().query(sql, job_config=config).result())
    except (exceptions.GoogleAPICallError, OSError) as exc:
        raise TransientError(f"BigQuery did not answer: {exc}") from exc
    if not rows:
        msg = f"Expected a recording of call {call_id} of site {site_id}, found none."
        raise NotFound(msg, code="no_recording")
    return rows[0]["provider"], rows[0]["recording_ref"]
