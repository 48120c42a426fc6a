"""The product's exceptions.

Every error the product raises on purpose derives from ``CallTrackError``. The
HTTP edge turns one into a JSON response with ``status`` and the machine-readable
``code``; anything else is a bug and becomes a 500. Errors about bad input derive
from ``ValueError`` too, so library callers can catch them the ordinary way.
"""

from __future__ import annotations


class CallTrackError(Exception):
    """Base class of every deliberate error in the product."""

    status = 500
    code = "internal"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.code


class ConfigError(CallTrackError):
    """The deployment's configuration is missing or wrong."""

    code = "config"


class BadRequest(CallTrackError, ValueError):
    """The caller sent something the product cannot accept."""

    status = 400
    code = "bad_request"


class PayloadTooLarge(BadRequest):
    status = 413
    code = "too_large"


class UnsupportedMediaType(BadRequest):
    status = 415
    code = "unsupported_media_type"


class Unauthorized(CallTrackError):
    """A signature or secret is missing or wrong."""

    status = 401
    code = "unauthorized"


class Forbidden(CallTrackError):
    """The caller is known but not allowed to do this (an origin, a replay)."""

    status = 403
    code = "forbidden"


class NotFound(CallTrackError):
    status = 404
    code = "not_found"


class RateLimited(CallTrackError):
    status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class TransientError(CallTrackError):
    """A dependency is unavailable; the same request may succeed later.

    At the HTTP edge this is a 503 so that a provider or Pub/Sub retries.
    """

    status = 503
    code = "unavailable"


class PermanentError(CallTrackError):
    """Work that can never succeed as it is; retrying it is pointless."""

    code = "permanent"
