"""The HTTP edge of the exports: retries with backoff, no secret in any log.

``Http.call`` retries what may pass later (connection refused, 429, 5xx)
with exponential backoff, honouring a short ``Retry-After``. A timeout is
different: the platform may have taken the request, so it is retried only
where the platform deduplicates (``idempotent=True``: Google's transaction
and order ids, Meta's event_id); elsewhere it raises ``InDoubt`` and the
ledger's in-doubt recovery decides (docs/exports.md, "The crash window").
Errors name the host and status only: URLs and headers can hold tokens.
"""

from __future__ import annotations

import logging
import time
from urllib.parse import urlsplit

from shared.errors import TransientError

logger = logging.getLogger(__name__)

TIMEOUT_S = 20.0
ATTEMPTS = 3
BACKOFF_S = 0.5
MAX_RETRY_AFTER_S = 5.0
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class InDoubt(TransientError):
    """The request may or may not have reached the platform."""

    code = "in_doubt"


class Http:
    def __init__(
        self,
        session=None,
        timeout_s: float = TIMEOUT_S,
        attempts: int = ATTEMPTS,
        backoff_s: float = BACKOFF_S,
        sleep=time.sleep,
    ) -> None:
        import requests

        self.session = session or requests.Session()
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.sleep = sleep

    def call(self, method: str, url: str, *, idempotent: bool, **kwargs):
        """The response of a request that got an answer other than a retryable
        status; raises TransientError when every attempt failed."""
        import requests

        host = urlsplit(url).netloc
        last = ""
        # Per call, not on self: one Http serves every sender (and thread).
        retry_after: str | None = None
        for attempt in range(self.attempts):
            if attempt:
                self.sleep(self._wait(attempt, last, retry_after))
            try:
                resp = self.session.request(
                    method, url, timeout=self.timeout_s, **kwargs
                )
            except requests.ConnectionError as exc:
                # A read timeout surfaces as ConnectionError in some versions.
                if isinstance(exc, requests.ReadTimeout) or "timed out" in str(exc):
                    if not idempotent:
                        raise InDoubt(f"{host} did not answer in time.") from None
                last = type(exc).__name__
                continue
            except requests.Timeout:
                if not idempotent:
                    raise InDoubt(f"{host} did not answer in time.") from None
                last = "timeout"
                continue
            except requests.RequestException as exc:
                last = type(exc).__name__
                continue
            if resp.status_code in RETRY_STATUSES:
                last = str(resp.status_code)
                retry_after = resp.headers.get("Retry-After")
                continue
            return resp
        msg = f"Expected {host} to answer, found {last} after {self.attempts} tries."
        raise TransientError(msg)

    def _wait(self, attempt: int, last: str, retry_after: str | None) -> float:
        wait = self.backoff_s * 2 ** (attempt - 1)
        if last == "429" and retry_after and retry_after.isdigit():
            wait = max(wait, min(float(retry_after), MAX_RETRY_AFTER_S))
        return wait
