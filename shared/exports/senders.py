"""One sender per platform: plan requests, send them, read the answers.

``plan`` gives the exact requests (without credentials) for the dry run;
``send`` performs them and turns each answer into a ledger ``Result`` per
conversion; ``poll`` reads an asynchronous upload's status; ``in_doubt``
settles conversions whose earlier send ended without a ledger write.

Credentials come from ``Settings.export_secrets`` ({site_id: {name: text}}):
``google_client_id``, ``google_client_secret``, ``google_refresh_token``,
``google_developer_token`` (legacy API), ``yandex_oauth_token``,
``meta_access_token``. They travel in headers (or, for Meta, in the query
string, which is why no URL is ever logged) and never reach a log or error.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from dataclasses import dataclass, field

from shared.errors import CallTrackError, ConfigError, PermanentError
from shared.exports import payloads as pl
from shared.exports.http import Http, InDoubt
from shared.exports.model import (
    ACCEPTED,
    EXPIRED,
    REJECTED,
    RETRY_AFTER,
    SENT,
    Conversion,
    ExportConfig,
)

logger = logging.getLogger(__name__)

# Legacy Google Ads error codes: already there (an earlier send that the
# ledger missed), retry later (hours), outside the window.
DUPLICATE_CODES = frozenset(
    {
        "ORDER_ID_ALREADY_IN_USE",
        "DUPLICATE_ORDER_ID",
        "CLICK_CONVERSION_ALREADY_EXISTS",
        "CALL_CONVERSION_ALREADY_EXISTS",
        "DUPLICATE_CLICK_CONVERSION_IN_REQUEST",
    }
)
TOO_RECENT = {
    "TOO_RECENT_EVENT": dt.timedelta(hours=6),
    "TOO_RECENT_CALL": dt.timedelta(hours=12),
}
EXPIRED_CODES = frozenset({"EXPIRED_EVENT"})
LEGACY_VERSION = "v26"
# Metrica upload states: linked (done), failed to link, or still working.
YANDEX_DONE = frozenset({"MATCHED", "PROCESSED"})
YANDEX_FAILED = frozenset({"LINKAGE_FAILURE", "FAILED"})
# Meta deduplicates by event_id for 48 h; an in-doubt send older than this
# is not repeated.
META_DEDUP = dt.timedelta(hours=47)


@dataclass(frozen=True)
class Result:
    conversion_id: str
    state: str
    reason: str = ""
    request_id: str | None = None
    retry_at: dt.datetime | None = None


@dataclass(frozen=True)
class Planned:
    """A request as it would be sent, credentials left out."""

    platform: str
    method: str
    url: str
    body: dict | str | None
    conversion_ids: list[str]
    params: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "platform": self.platform,
            "method": self.method,
            "url": self.url,
            "params": self.params,
            "body": self.body,
            "conversions": len(self.conversion_ids),
        }


@dataclass(frozen=True)
class Upload:
    """An accepted asynchronous upload whose outcome is polled later."""

    request_id: str
    kind: str  # datamanager | yandex_calls | yandex_basic
    refs: dict  # conversion_id -> destination reference (Data Manager)


def _secret(secrets: dict, name: str, site_id: str) -> str:
    value = secrets.get(name)
    if not value:
        msg = (
            f"Expected {name} for site {site_id} in CALLTRACK_EXPORT_SECRETS, "
            "found none."
        )
        raise ConfigError(msg)
    return value


def _error_text(resp) -> str:
    """A short reason from an error answer; bodies echo no secrets we sent."""
    try:
        body = resp.json()
    except ValueError:
        return f"HTTP {resp.status_code}"
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        return f"HTTP {resp.status_code}: {err.get('message') or err}"[:300]
    if isinstance(body, dict) and body.get("message"):
        return f"HTTP {resp.status_code}: {body['message']}"[:300]
    return f"HTTP {resp.status_code}: {json.dumps(body)[:250]}"


def _refuse_auth(resp, platform: str) -> None:
    if resp.status_code in (401, 403):
        msg = (
            f"Expected {platform} to accept our credentials, found {_error_text(resp)}"
        )
        raise PermanentError(msg, code="export_auth")


def _guarded(part: list[Conversion], results: list[Result], send) -> None:
    """Run one request; a retryable failure or a refused credential becomes
    retry_after for its conversions alone, so the requests that did pass
    keep their results. InDoubt leaves them without a result (in doubt)."""
    try:
        send()
    except InDoubt:
        logger.warning(
            "An export request's outcome is unknown; %d conversions "
            "stay pending for the in-doubt check",
            len(part),
        )
    except (CallTrackError, ValueError, KeyError) as exc:
        reason = failure_reason(exc)
        results += [Result(c.conversion_id, RETRY_AFTER, reason) for c in part]


def failure_reason(exc: Exception) -> str:
    """A retry reason; ``auth:`` and ``config:`` mark what an operator must fix
    (they are logged as ``export_rejected``). Never holds a secret: messages
    name settings and statuses only."""
    if isinstance(exc, ConfigError):
        return f"config: {exc.message}"[:300]
    if isinstance(exc, CallTrackError) and exc.code == "export_auth":
        return f"auth: {exc.message}"[:300]
    text = exc.message if isinstance(exc, CallTrackError) else repr(exc)
    return text[:300]


class GoogleAuth:
    """OAuth access tokens from a site's refresh token, cached until expiry."""

    def __init__(self, http: Http, token_url: str, clock=time.monotonic) -> None:
        self.http = http
        self.token_url = token_url
        self.clock = clock
        self._tokens: dict[str, tuple[float, str]] = {}

    def token(self, site_id: str, secrets: dict) -> str:
        hit = self._tokens.get(site_id)
        if hit and hit[0] > self.clock():
            return hit[1]
        resp = self.http.call(
            "POST",
            self.token_url,
            idempotent=True,
            data={
                "grant_type": "refresh_token",
                "client_id": _secret(secrets, "google_client_id", site_id),
                "client_secret": _secret(secrets, "google_client_secret", site_id),
                "refresh_token": _secret(secrets, "google_refresh_token", site_id),
            },
        )
        if resp.status_code != 200:
            msg = f"Expected a Google access token, found HTTP {resp.status_code}."
            raise PermanentError(msg, code="export_auth")
        body = resp.json()
        ttl = float(body.get("expires_in", 3600)) - 60
        self._tokens[site_id] = (self.clock() + ttl, body["access_token"])
        return body["access_token"]


class Sender:
    platform = ""

    def __init__(self, http: Http, endpoint: str) -> None:
        self.http = http
        self.endpoint = endpoint.rstrip("/")

    @staticmethod
    def _in_chunks(
        convs: list[Conversion], size: int, results: list[Result], send
    ) -> None:
        """``send(part)`` per chunk, each guarded alone: one failed request
        leaves the others' results standing."""
        for part in pl.chunks(convs, size):
            _guarded(part, results, lambda part=part: send(part))

    @staticmethod
    def _reject(resp, part: list[Conversion], results: list[Result]) -> None:
        """An error answer refuses the whole request, so all of ``part``."""
        reason = _error_text(resp)
        results += [Result(c.conversion_id, REJECTED, reason) for c in part]

    def plan(
        self,
        conf: ExportConfig,
        convs: list[Conversion],
        now: dt.datetime,
        batch_id: str,
        validate_only: bool = False,
    ) -> list[Planned]:
        raise NotImplementedError

    def send(
        self,
        conf: ExportConfig,
        secrets: dict,
        convs: list[Conversion],
        now: dt.datetime,
        batch_id: str,
    ) -> tuple[list[Result], list[Upload]]:
        raise NotImplementedError

    def poll(
        self, conf: ExportConfig, secrets: dict, upload: dict, now: dt.datetime
    ) -> list[Result] | None:
        return None

    def in_doubt(
        self,
        conf: ExportConfig,
        secrets: dict,
        convs: list[Conversion],
        claimed_at: dt.datetime,
        batch_id: str,
        now: dt.datetime,
    ) -> list[Result]:
        """Settle conversions of a send that left no ledger answer. Those
        without a result here are sent again: the platform deduplicates them
        (Google's transactionId / orderId)."""
        return []


class GoogleDataManager(Sender):
    """Data Manager ``events:ingest``: asynchronous, fast-fail per request."""

    platform = "google"

    def __init__(self, http: Http, endpoint: str, auth: GoogleAuth) -> None:
        super().__init__(http, endpoint)
        self.auth = auth

    def plan(self, conf, convs, now, batch_id, validate_only=False):
        out = []
        for part in pl.chunks(convs, pl.GOOGLE_MAX_EVENTS):
            events = [pl.datamanager_event(c, conf) for c in part]
            out.append(
                Planned(
                    "google",
                    "POST",
                    f"{self.endpoint}/v1/events:ingest",
                    pl.datamanager_request(events, conf, validate_only),
                    [c.conversion_id for c in part],
                )
            )
        return out

    def _headers(self, conf, secrets) -> dict:
        return {"Authorization": f"Bearer {self.auth.token(conf.site_id, secrets)}"}

    def send(self, conf, secrets, convs, now, batch_id):
        headers = self._headers(conf, secrets)
        results: list[Result] = []
        uploads: list[Upload] = []
        self._in_chunks(
            convs,
            pl.GOOGLE_MAX_EVENTS,
            results,
            lambda part: self._ingest(conf, headers, part, results, uploads),
        )
        return results, uploads

    def _ingest(self, conf, headers, part, results, uploads) -> None:
        events = [pl.datamanager_event(c, conf) for c in part]
        resp = self.http.call(
            "POST",
            f"{self.endpoint}/v1/events:ingest",
            idempotent=True,
            json=pl.datamanager_request(events, conf),
            headers=headers,
        )
        _refuse_auth(resp, "Google Data Manager")
        if resp.status_code == 400 and len(part) > 1:
            # Fast-fail: one bad event refuses the request; halve to find it.
            half = len(part) // 2
            self._ingest(conf, headers, part[:half], results, uploads)
            self._ingest(conf, headers, part[half:], results, uploads)
            return
        if resp.status_code >= 400:
            self._reject(resp, part, results)
            return
        request_id = resp.json()["requestId"]
        results += [Result(c.conversion_id, SENT, "", request_id) for c in part]
        uploads.append(
            Upload(request_id, "datamanager", {c.conversion_id: c.kind for c in part})
        )

    def validate(self, conf, secrets, planned: Planned) -> dict:
        """Send one planned request with validateOnly: the platform's verdict."""
        headers = self._headers(conf, secrets)
        resp = self.http.call(
            "POST",
            planned.url,
            idempotent=True,
            json=planned.body,
            headers=headers,
        )
        _refuse_auth(resp, "Google Data Manager")
        return {
            "status": resp.status_code,
            "answer": resp.json() if resp.content else None,
        }

    def poll(self, conf, secrets, upload, now):
        headers = self._headers(conf, secrets)
        resp = self.http.call(
            "GET",
            f"{self.endpoint}/v1/requestStatus:retrieve",
            idempotent=True,
            params={"requestId": upload["request_id"]},
            headers=headers,
        )
        _refuse_auth(resp, "Google Data Manager")
        if resp.status_code >= 400:
            return None
        statuses = resp.json().get("requestStatusPerDestination") or []
        by_ref = {}
        for status in statuses:
            ref = (status.get("destination") or {}).get("reference")
            by_ref[ref] = status
        if (
            any(
                s.get("requestStatus") in (None, "PROCESSING", "REQUEST_STATUS_UNKNOWN")
                for s in statuses
            )
            or not statuses
        ):
            return None
        out = []
        for conversion_id, ref in upload["refs"].items():
            status = by_ref.get(ref) or {}
            code = status.get("requestStatus")
            errors = ", ".join(
                f"{e.get('reason')} x{e.get('recordCount')}"
                for e in (status.get("errorInfo") or {}).get("errorCounts") or []
            )
            if code == "SUCCESS":
                out.append(Result(conversion_id, ACCEPTED))
            elif code == "PARTIAL_SUCCESS":
                # The status counts errors per destination, not per event.
                out.append(
                    Result(conversion_id, ACCEPTED, f"partial_success: {errors}")
                )
            else:
                out.append(Result(conversion_id, REJECTED, f"{code}: {errors}"))
        return out


class GoogleLegacy(Sender):
    """ConversionUploadService ``uploadClickConversions`` (allowlisted accounts)."""

    platform = "google"

    def __init__(self, http: Http, endpoint: str, auth: GoogleAuth) -> None:
        super().__init__(http, endpoint)
        self.auth = auth

    def _url(self, conf):
        return (
            f"{self.endpoint}/{LEGACY_VERSION}/customers/"
            f"{conf.google.customer_id}:uploadClickConversions"
        )

    def plan(self, conf, convs, now, batch_id, validate_only=False):
        return [
            Planned(
                "google",
                "POST",
                self._url(conf),
                pl.legacy_request(
                    [pl.legacy_click_conversion(c, conf) for c in part], validate_only
                ),
                [c.conversion_id for c in part],
            )
            for part in pl.chunks(convs, pl.GOOGLE_MAX_EVENTS)
        ]

    def _headers(self, conf, secrets) -> dict:
        headers = {
            "Authorization": f"Bearer {self.auth.token(conf.site_id, secrets)}",
            "developer-token": _secret(secrets, "google_developer_token", conf.site_id),
        }
        if conf.google.login_customer_id:
            headers["login-customer-id"] = conf.google.login_customer_id
        return headers

    def validate(self, conf, secrets, planned: Planned) -> dict:
        resp = self.http.call(
            "POST",
            planned.url,
            idempotent=True,
            json=planned.body,
            headers=self._headers(conf, secrets),
        )
        _refuse_auth(resp, "Google Ads")
        return {"status": resp.status_code, "answer": resp.json()}

    def send(self, conf, secrets, convs, now, batch_id):
        headers = self._headers(conf, secrets)
        results: list[Result] = []
        self._in_chunks(
            convs,
            pl.GOOGLE_MAX_EVENTS,
            results,
            lambda part: self._upload(conf, headers, part, results, now),
        )
        return results, []

    def _upload(self, conf, headers, part, results, now) -> None:
        body = pl.legacy_request([pl.legacy_click_conversion(c, conf) for c in part])
        resp = self.http.call(
            "POST", self._url(conf), idempotent=True, json=body, headers=headers
        )
        _refuse_auth(resp, "Google Ads")
        if resp.status_code >= 400:
            self._reject(resp, part, results)
            return
        results += self._partial(part, resp.json(), now)

    @staticmethod
    def _partial(part: list[Conversion], answer: dict, now) -> list[Result]:
        """Per-row results from partialFailureError's indexed errors."""
        failed: dict[int, tuple[str, str]] = {}
        for detail in (answer.get("partialFailureError") or {}).get("details") or []:
            for error in detail.get("errors") or []:
                path = (error.get("location") or {}).get("fieldPathElements") or []
                index = next(
                    (
                        p.get("index")
                        for p in path
                        if p.get("fieldName") == "conversions"
                    ),
                    None,
                )
                codes = list((error.get("errorCode") or {}).values())
                if index is not None and codes:
                    failed.setdefault(
                        int(index), (str(codes[0]), error.get("message", ""))
                    )
        out = []
        for i, conv in enumerate(part):
            if i not in failed:
                out.append(Result(conv.conversion_id, ACCEPTED))
                continue
            code, message = failed[i]
            reason = f"{code}: {message}"[:300]
            if code in DUPLICATE_CODES:
                out.append(Result(conv.conversion_id, ACCEPTED, f"duplicate: {code}"))
            elif code in TOO_RECENT:
                out.append(
                    Result(
                        conv.conversion_id,
                        RETRY_AFTER,
                        reason,
                        retry_at=now + TOO_RECENT[code],
                    )
                )
            elif code in EXPIRED_CODES:
                out.append(Result(conv.conversion_id, EXPIRED, reason))
            else:
                out.append(Result(conv.conversion_id, REJECTED, reason))
        return out


class Yandex(Sender):
    """Metrica: calls through ``upload_calls``, other goals through ``upload``.

    Metrica does not deduplicate rows, so an upload that timed out is never
    repeated blindly: its ``comment`` names the batch, and ``in_doubt`` looks
    for that comment among the counter's uploads before sending again.
    """

    platform = "yandex"

    @staticmethod
    def _auth(conf, secrets) -> dict:
        token = _secret(secrets, "yandex_oauth_token", conf.site_id)
        return {"Authorization": f"OAuth {token}"}

    def _base(self, conf):
        return (
            f"{self.endpoint}/management/v1/counter/{conf.yandex.counter_id}"
            "/offline_conversions"
        )

    def _files(self, conf, convs, now):
        """[(upload kind, path, params, csv text, conversions)]."""
        calls = [c for c in convs if c.kind in conf.yandex.calls]
        basic = [c for c in convs if c.kind not in conf.yandex.calls]
        out = []
        for kind, group, columns, row in (
            ("calls", calls, pl.CALL_COLUMNS, pl.yandex_call_row),
            ("basic", basic, pl.BASIC_COLUMNS, pl.yandex_basic_row),
        ):
            for part in pl.chunks(group, pl.YANDEX_MAX_ROWS):
                files = pl.yandex_csv([(c, row(c, conf, now)) for c in part], columns)
                for column, text in files.items():
                    members = [c for c in part if pl.yandex_id(c)[0] == column]
                    out.append((kind, column, text, members))
        return out

    def _request(self, conf, kind, column, batch_id):
        comment = f"calltrack {batch_id} {kind} {column}"
        if kind == "calls":
            return f"{self._base(conf)}/upload_calls", {"comment": comment}
        return f"{self._base(conf)}/upload", {"comment": comment, "type": "BASIC"}

    def plan(self, conf, convs, now, batch_id, validate_only=False):
        out = []
        for kind, column, text, members in self._files(conf, convs, now):
            url, params = self._request(conf, kind, column, batch_id)
            out.append(
                Planned(
                    "yandex",
                    "POST",
                    url,
                    text,
                    [c.conversion_id for c in members],
                    params,
                )
            )
        return out

    def send(self, conf, secrets, convs, now, batch_id):
        headers = self._auth(conf, secrets)
        results: list[Result] = []
        uploads: list[Upload] = []
        for kind, column, text, members in self._files(conf, convs, now):
            url, params = self._request(conf, kind, column, batch_id)
            _guarded(
                members,
                results,
                lambda a=(url, params, text, kind, members): self._upload(
                    headers, *a, results, uploads
                ),
            )
        return results, uploads

    def _upload(
        self, headers, url, params, text, kind, members, results, uploads
    ) -> None:
        resp = self.http.call(
            "POST",
            url,
            idempotent=False,
            params=params,
            headers=headers,
            files={"file": ("conversions.csv", text.encode(), "text/csv")},
        )
        _refuse_auth(resp, "Yandex Metrica")
        if resp.status_code >= 400:
            self._reject(resp, members, results)
            return
        upload_id = str(resp.json()["uploading"]["id"])
        results += [Result(c.conversion_id, SENT, "", upload_id) for c in members]
        uploads.append(
            Upload(
                upload_id, f"yandex_{kind}", {c.conversion_id: kind for c in members}
            )
        )

    def _uploadings(self, conf, secrets, kind: str) -> list[dict]:
        headers = self._auth(conf, secrets)
        path = "calls_uploadings" if kind == "calls" else "uploadings"
        resp = self.http.call(
            "GET", f"{self._base(conf)}/{path}", idempotent=True, headers=headers
        )
        _refuse_auth(resp, "Yandex Metrica")
        if resp.status_code >= 400:
            return []
        return resp.json().get("uploadings") or []

    def poll(self, conf, secrets, upload, now):
        kind = upload["kind"].removeprefix("yandex_")
        if kind == "calls":
            headers = self._auth(conf, secrets)
            resp = self.http.call(
                "GET",
                f"{self._base(conf)}/calls_uploading/{upload['request_id']}",
                idempotent=True,
                headers=headers,
            )
            _refuse_auth(resp, "Yandex Metrica")
            found = resp.json().get("uploading") if resp.status_code == 200 else None
        else:
            found = next(
                (
                    u
                    for u in self._uploadings(conf, secrets, kind)
                    if str(u.get("id")) == upload["request_id"]
                ),
                None,
            )
        status = (found or {}).get("status")
        if status in YANDEX_DONE:
            return [Result(cid, ACCEPTED) for cid in upload["refs"]]
        if status in YANDEX_FAILED:
            return [
                Result(cid, REJECTED, f"metrica: {status}") for cid in upload["refs"]
            ]
        return None

    def in_doubt(self, conf, secrets, convs, claimed_at, batch_id, now):
        # Conversions whose file is not among the uploads are sent again.
        found: dict[str, str] = {}
        for kind in ("calls", "basic"):
            for upload in self._uploadings(conf, secrets, kind):
                comment = upload.get("comment") or ""
                if comment.startswith(f"calltrack {batch_id} {kind} "):
                    found[comment.rsplit(" ", 1)[1] + kind] = str(upload["id"])
        out = []
        for conv in convs:
            kind = "calls" if conv.kind in conf.yandex.calls else "basic"
            column = (pl.yandex_id(conv) or ("", ""))[0]
            upload_id = found.get(column + kind)
            if upload_id is None:
                continue
            out.append(
                Result(conv.conversion_id, SENT, "in_doubt: found upload", upload_id)
            )
        return out


class Meta(Sender):
    """Conversions API: one invalid event refuses the batch, so halve on 400."""

    platform = "meta"

    def _url(self, conf):
        return f"{self.endpoint}/{conf.meta.api_version}/{conf.meta.pixel_id}/events"

    def plan(self, conf, convs, now, batch_id, validate_only=False):
        return [
            Planned(
                "meta",
                "POST",
                self._url(conf),
                {"data": [pl.meta_event(c, conf) for c in part]},
                [c.conversion_id for c in part],
            )
            for part in pl.chunks(convs, pl.META_MAX_EVENTS)
        ]

    def send(self, conf, secrets, convs, now, batch_id):
        token = _secret(secrets, "meta_access_token", conf.site_id)
        results: list[Result] = []
        self._in_chunks(
            convs,
            pl.META_MAX_EVENTS,
            results,
            lambda part: self._post(conf, token, part, results),
        )
        return results, []

    def _post(self, conf, token, part, results) -> None:
        resp = self.http.call(
            "POST",
            self._url(conf),
            idempotent=True,
            params={"access_token": token},
            json={"data": [pl.meta_event(c, conf) for c in part]},
        )
        _refuse_auth(resp, "Meta")
        if resp.status_code == 400 and len(part) > 1:
            half = len(part) // 2
            self._post(conf, token, part[:half], results)
            self._post(conf, token, part[half:], results)
            return
        if resp.status_code >= 400:
            self._reject(resp, part, results)
            return
        results += [Result(c.conversion_id, ACCEPTED) for c in part]

    def in_doubt(self, conf, secrets, convs, claimed_at, batch_id, now):
        if now - claimed_at < META_DEDUP:
            return []
        return [
            Result(c.conversion_id, SENT, "in_doubt: beyond Meta's dedup window")
            for c in convs
        ]


class Vk(Sender):
    """VK Ads tracker pixel: a GET per conversion, no deduplication."""

    platform = "vk"

    def plan(self, conf, convs, now, batch_id, validate_only=False):
        return [
            Planned(
                "vk",
                "GET",
                f"{self.endpoint}/tracker?" + pl.vk_query(c, conf),
                None,
                [c.conversion_id],
            )
            for c in convs
        ]

    def send(self, conf, secrets, convs, now, batch_id):
        results = []
        for conv in convs:
            url = f"{self.endpoint}/tracker?" + pl.vk_query(conv, conf)
            try:
                resp = self.http.call("GET", url, idempotent=False)
            except InDoubt:
                # No dedup at VK: at most once, so a timed-out hit counts as sent.
                results.append(Result(conv.conversion_id, SENT, "in_doubt: timeout"))
                continue
            except CallTrackError as exc:
                results.append(Result(conv.conversion_id, RETRY_AFTER, exc.message))
                continue
            if resp.status_code >= 400:
                results.append(Result(conv.conversion_id, REJECTED, _error_text(resp)))
            else:
                results.append(Result(conv.conversion_id, ACCEPTED))
        return results, []

    def in_doubt(self, conf, secrets, convs, claimed_at, batch_id, now):
        return [
            Result(
                c.conversion_id,
                SENT,
                "in_doubt: not repeated (VK has no deduplication)",
            )
            for c in convs
        ]
