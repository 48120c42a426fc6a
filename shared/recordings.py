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

Twilio, UIS and the generic hook reference a URL. Mango Office and Zadarma
reference an id that their APIs turn into a one-time URL, so fetching one is
two requests: Mango's ``POST /queries/recording/post`` (signed like its
webhooks) answers 302 to the file; Zadarma's ``GET /v1/pbx/record/request/``
(``Authorization: key:signature``) answers JSON with a ``link``. Neither
one-time URL is ever shown to the reader or stored.
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
from dataclasses import dataclass, field
from urllib.parse import quote_plus, urljoin, urlsplit

import requests

from shared import queries
from shared.errors import CallTrackError, Forbidden, NotFound
from shared.errors import TransientError, Unauthorized
from shared.providers import mango, zadarma

logger = logging.getLogger(__name__)

GOOGLE_ISSUERS = ("accounts.google.com", "https://accounts.google.com")
# Twilio recording URLs name the account, whose SID is the basic-auth user.
TWILIO_ACCOUNT = re.compile(r"/Accounts/(AC[0-9a-fA-F]{32})/Recordings/")
URL_PROVIDERS = ("twilio", "uis", "generic")
API_PROVIDERS = ("mango", "zadarma")
MANGO_RECORDING = "/queries/recording/post"
ZADARMA_RECORD_REQUEST = "/v1/pbx/record/request/"
# Zadarma's shortest link lifetime: the audio is fetched the moment it is given.
ZADARMA_LINK_LIFETIME_S = 180
CHUNK = 64 * 1024
# Connect within 5 s; a recording of an hour streams in well under 60 s.
FETCH_TIMEOUT_S = (5, 60)
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
    """The first request towards a recording's audio.

    ``answer`` says what that request gives: ``media`` the audio itself,
    ``redirect`` a 302 to a one-time URL of it (Mango Office), ``link`` JSON
    naming one (Zadarma).
    """

    url: str
    auth: tuple[str, str] | None = None
    method: str = "GET"
    form: dict | None = None
    headers: dict = field(default_factory=dict)
    answer: str = "media"


def source(provider: str, ref: str, secrets: dict, allow_http: bool,
           apis: dict | None = None) -> Source:
    """The request that fetches a recording reference from its provider.

    ``apis`` holds the base URLs of the providers' APIs (``mango``,
    ``zadarma``); the settings give the real ones.
    """
    if provider in API_PROVIDERS:
        base = (apis or {}).get(provider, "").rstrip("/")
        if not base:
            raise NotSupported(f"No API URL is configured for {provider}.")
        builder = _mango if provider == "mango" else _zadarma
        return builder(base, ref, secrets)
    if provider not in URL_PROVIDERS:
        msg = f"Recordings of {provider} are not known to the product."
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


def _needs(secrets: dict, *names: str) -> list[str]:
    missing = [name for name in names if not secrets.get(name)]
    if missing:
        msg = f"Expected the site's {' and '.join(missing)} to fetch its recordings."
        raise NotFound(msg, code="recording_ref")
    return [secrets[name] for name in names]


def _mango(base: str, recording_id: str, secrets: dict) -> Source:
    key, salt = _needs(secrets, "mango_api_key", "mango_api_salt")
    payload = json.dumps({"recording_id": recording_id, "action": "download"},
                         separators=(",", ":"))
    form = {"vpbx_api_key": key, "sign": mango.sign(key, payload, salt),
            "json": payload}
    return Source(base + MANGO_RECORDING, method="POST", form=form,
                  answer="redirect")


def php_query(params: dict) -> str:
    """``http_build_query`` of sorted params as PHP writes it (RFC 1738).

    Zadarma signs this exact text, so it must match byte for byte: spaces are
    ``+`` and ``~`` is escaped, where Python's quoting leaves ``~`` alone.
    """
    return "&".join(
        f"{quote_plus(str(k), safe='')}={quote_plus(str(v), safe='')}"
        .replace("~", "%7E")
        for k, v in sorted(params.items())
    )


def zadarma_auth(key: str, secret: str, method: str, query: str) -> str:
    """Zadarma's ``Authorization`` value for an API call with this query."""
    digest = hashlib.md5(query.encode()).hexdigest()  # noqa: S324 (their recipe)
    return f"{key}:{zadarma.sign(secret, method + query + digest)}"


def _zadarma(base: str, call_id: str, secrets: dict) -> Source:
    key, secret = _needs(secrets, "zadarma_api_key", "zadarma_secret")
    query = php_query({"call_id": call_id, "format": "json",
                       "lifetime": ZADARMA_LINK_LIFETIME_S})
    auth = zadarma_auth(key, secret, ZADARMA_RECORD_REQUEST, query)
    return Source(f"{base}{ZADARMA_RECORD_REQUEST}?{query}",
                  headers={"Authorization": auth}, answer="link")


def fetch(provider: str, src: Source) -> requests.Response:
    """The provider's answer streaming the audio, or why there is none.

    Raises NotFound when the provider no longer has the recording and
    TransientError when it is away or refuses the site's credentials (a
    reader can do nothing about either; the log says which).
    """
    # Mango's 302 is read here, not followed: its target is the audio.
    answer = _request(provider, src.method, src.url, auth=src.auth,
                      data=src.form, headers=src.headers,
                      allow_redirects=src.answer != "redirect")
    where = answer.headers.get("Location", "")
    if src.answer == "redirect" and answer.status_code in (301, 302, 303, 307):
        answer.close()
        if not where:
            raise _refusal(provider, answer.status_code)
        return _media(provider, _request(provider, "GET", urljoin(src.url, where)))
    if src.answer in ("media", "redirect"):
        # Mango may also answer with the audio itself, or 404 for none.
        return _media(provider, answer)

    try:
        body = answer.json()
    except ValueError:
        body = {}
    finally:
        answer.close()
    if not isinstance(body, dict):
        body = {}
    link = body.get("link")
    if answer.status_code == 200 and body.get("status") == "success" and link:
        return _media(provider, _request(provider, "GET", link))
    if answer.status_code in (401, 403, 429) or answer.status_code >= 500:
        raise _refusal(provider, answer.status_code)
    # Zadarma answers an error status for a call it has no recording of.
    reason = str(body.get("message", ""))[:120]
    raise NotFound(f"{provider} has no such recording: {reason or 'no link'}.",
                   code="recording_gone")


def _request(provider: str, method: str, url: str,
             **kwargs) -> requests.Response:
    # Media hosts may redirect (Twilio hands out storage URLs); requests drops
    # the credentials when the host changes.
    kwargs.setdefault("allow_redirects", True)
    try:
        return requests.request(method, url, stream=True, timeout=FETCH_TIMEOUT_S,
                                **kwargs)
    except requests.RequestException as exc:
        msg = f"The {provider} recording could not be fetched: {type(exc).__name__}."
        raise TransientError(msg, code="provider_unavailable") from None


def _media(provider: str, answer: requests.Response) -> requests.Response:
    if answer.status_code == 200:
        return answer
    answer.close()
    if answer.status_code in (404, 410):
        raise NotFound(f"{provider} no longer has this recording.",
                       code="recording_gone")
    raise _refusal(provider, answer.status_code)


def _refusal(provider: str, status: int) -> TransientError:
    msg = f"{provider} answered {status} for the recording."
    return TransientError(msg, code="provider_unavailable")


def find(site_id: str, call_id: str) -> tuple[str, str]:
    """The provider and the latest recording reference of a stitched call."""
    from google.api_core import exceptions

    sql = (
        "SELECT provider, recording_ref FROM `{dataset}.calls` "
        "WHERE site_id = @site AND call_id = @call AND recording_ref IS NOT NULL "
        "ORDER BY version DESC LIMIT 1"
    )
    try:
        rows = queries.rows(sql, site=site_id, call=call_id)
    except (exceptions.GoogleAPICallError, OSError) as exc:
        raise TransientError(f"BigQuery did not answer: {exc}") from exc
    if not rows:
        msg = f"Expected a recording of call {call_id} of site {site_id}, found none."
        raise NotFound(msg, code="no_recording")
    return rows[0]["provider"], rows[0]["recording_ref"]
