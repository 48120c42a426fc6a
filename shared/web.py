"""The HTTP edge shared by every HTTP function.

``endpoint`` wraps a functions-framework handler: it binds the request's trace id
to the log records, turns a ``CallTrackError`` into a JSON error with its status
and reason, and turns anything unexpected into a logged 500 that leaks nothing.
"""

from __future__ import annotations

import functools
import json
import logging

import flask

from shared import log, settings
from shared.errors import BadRequest, CallTrackError, PayloadTooLarge
from shared.errors import RateLimited, UnsupportedMediaType

logger = logging.getLogger(__name__)

JSON_TYPES = ("application/json", "text/plain")
# Deeper nesting than this is never legitimate in any payload the product reads,
# and refusing it keeps a hostile body from exhausting the parser.
MAX_JSON_DEPTH = 8


def json_response(body, status: int = 200, headers: dict | None = None):
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    response = flask.Response(text, status=status, mimetype="application/json")
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def error_response(exc: CallTrackError, headers: dict | None = None):
    body = {"error": {"code": exc.code, "message": exc.message}}
    merged = dict(headers or {})
    if isinstance(exc, RateLimited):
        merged["Retry-After"] = str(exc.retry_after_s)
    return json_response(body, exc.status, merged)


def endpoint(handler):
    """Decorate an HTTP handler with trace binding and error translation."""

    @functools.wraps(handler)
    def wrapper(request: flask.Request):
        conf = settings.get()
        log.configure(conf.log_level, conf.project)
        token = log.set_trace(log.trace_from_headers(request.headers))
        try:
            return handler(request)
        except CallTrackError as exc:
            level = logging.ERROR if exc.status >= 500 else logging.INFO
            logger.log(
                level,
                "Request refused: %s",
                exc.message,
                extra={"fields": {"code": exc.code, "status": exc.status}},
            )
            return error_response(exc, getattr(exc, "headers", None))
        except Exception:
            logger.exception("Unhandled error in %s", handler.__name__)
            body = {"error": {"code": "internal", "message": "Internal error."}}
            return json_response(body, 500)
        finally:
            log.reset_trace(token)

    return wrapper


def read_body(request: flask.Request, max_bytes: int) -> bytes:
    """The raw body, refusing one over ``max_bytes`` before reading it all."""
    declared = request.content_length
    if declared is not None and declared > max_bytes:
        msg = f"Expected a body of at most {max_bytes} bytes, found {declared}."
        raise PayloadTooLarge(msg)

    data = request.stream.read(max_bytes + 1)
    if len(data) > max_bytes:
        msg = f"Expected a body of at most {max_bytes} bytes, found more."
        raise PayloadTooLarge(msg)
    return data


def _depth(value, limit: int, level: int = 1) -> None:
    if level > limit:
        msg = f"Expected JSON nested at most {limit} levels deep, found deeper."
        raise BadRequest(msg, code="too_deep")
    if isinstance(value, dict):
        for item in value.values():
            _depth(item, limit, level + 1)
    elif isinstance(value, list):
        for item in value:
            _depth(item, limit, level + 1)


def read_json_object(request: flask.Request, max_bytes: int | None = None) -> dict:
    """Parse the body as one JSON object, with size, type and depth limits.

    ``text/plain`` is accepted beside ``application/json`` because browsers send
    it without a CORS preflight, which saves the snippet a round trip.
    """
    mimetype = (request.mimetype or "").lower()
    if mimetype not in JSON_TYPES:
        msg = f"Expected a JSON body ({', '.join(JSON_TYPES)}), found {mimetype!r}."
        raise UnsupportedMediaType(msg)

    raw = read_body(request, max_bytes or settings.get().max_body_bytes)
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        msg = "Expected a JSON body, found malformed JSON."
        raise BadRequest(msg, code="json") from None

    if not isinstance(value, dict):
        kind = type(value).__name__
        raise BadRequest(f"Expected a JSON object, found {kind}.", code="json")
    _depth(value, MAX_JSON_DEPTH)
    return value


def client_ip(request: flask.Request) -> str:
    """The client address as Google's front end saw it.

    The front end appends the address it received the connection from to
    ``X-Forwarded-For``, so the last entry is the one a client cannot forge.
    """
    forwarded = request.headers.get("X-Forwarded-For", "")
    last = forwarded.split(",")[-1].strip()
    return last or (request.remote_addr or "")


def public_url(request: flask.Request) -> str:
    """The URL the sender called, as it signed it (HubSpot, Twilio).

    Cloud Run terminates TLS and forwards plain HTTP, so the scheme comes from
    ``X-Forwarded-Proto`` and the host from ``Host``. The path and query are
    taken as received, before any decoding, because signatures cover them.
    """
    forwarded = request.headers.get("X-Forwarded-Proto", "")
    scheme = forwarded.split(",")[0].strip().lower() or request.scheme
    host = request.headers.get("Host") or request.host
    target = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI")
    if not target or not target.startswith("/"):
        query = request.query_string.decode("latin-1")
        target = request.path + (f"?{query}" if query else "")
    return f"{scheme}://{host}{target}"
