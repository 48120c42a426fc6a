"""HTTP to a CRM, with one rule for what is worth retrying.

408, 429 and 5xx, timeouts and refused connections raise ``TransientError``
(the Pub/Sub delivery or the CRM's webhook retry comes back later); any other
4xx raises ``PermanentError`` (our request or configuration is wrong). URLs
never reach a message: Bitrix24 and amoCRM put secrets in them. An error body
is quoted short and with phone-like digits masked, since a CRM may echo the
caller's number back.
"""

from __future__ import annotations

import json
import logging

from shared.errors import PermanentError, TransientError
from shared.phones import mask_text

logger = logging.getLogger(__name__)

TIMEOUT_S = 10.0
RETRY_STATUSES = (408, 429)


class Http:
    def __init__(self, crm: str, timeout_s: float = TIMEOUT_S, session=None) -> None:
        import requests

        self.crm = crm
        self.timeout_s = timeout_s
        self.session = session or requests.Session()

    def call(
        self,
        method: str,
        url: str,
        *,
        json_body=None,
        form=None,
        headers: dict | None = None,
        ok_missing: bool = False,
        what: str = "request",
    ):
        """The response's JSON (None when empty); ``ok_missing``: 404 -> None."""
        import requests

        data = None
        sent = dict(headers or {})
        if json_body is not None:
            data = json.dumps(json_body, separators=(",", ":"), ensure_ascii=False)
            data = data.encode()
            sent["Content-Type"] = "application/json"
        elif form is not None:
            data = form
        try:
            resp = self.session.request(
                method, url, data=data, headers=sent, timeout=self.timeout_s
            )
        except requests.RequestException as exc:
            msg = (
                f"Expected {self.crm} to answer the {what}, found {type(exc).__name__}."
            )
            raise TransientError(msg, code="crm_unavailable") from None

        status = resp.status_code
        if status == 404 and ok_missing:
            return None
        if status >= 500 or status in RETRY_STATUSES:
            msg = f"Expected {self.crm} to take the {what}, found HTTP {status}."
            raise TransientError(msg, code="crm_unavailable")
        if status >= 400:
            excerpt = mask_text(resp.text[:300])
            code = "crm_auth" if status in (401, 403) else "crm_refused"
            msg = (
                f"Expected {self.crm} to take the {what}, found HTTP {status}: "
                f"{excerpt}"
            )
            raise PermanentError(msg, code=code)
        if not resp.content:
            return None
        try:
            return resp.json()
        except ValueError:
            msg = f"Expected JSON from {self.crm} for the {what}, found other."
            raise TransientError(msg, code="crm_unavailable") from None
