"""Each provider's published signing recipe, written again from its documentation.

Nothing here imports the product: a test that signs with the code under test
proves only that the code agrees with itself. These helpers play the provider.

- Twilio: base64(HMAC-SHA1(auth token, URL + each POST name and value, names
  sorted)); a JSON body goes in the URL as bodySHA256 = hex SHA-256 instead.
- Mango Office: hex SHA-256 of api key + json text + api salt.
- Zadarma: base64 of PHP's hash_hmac('sha1', S, secret), which is hex text.
- Generic hook: "sha256=" + hex HMAC-SHA256(secret, timestamp + "." + body).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import urlencode


def form_body(fields: dict[str, str] | list[tuple[str, str]]) -> bytes:
    """A form-encoded body, the way providers post one."""
    return urlencode(fields).encode()


def twilio_signature(auth_token: str, url: str, params: dict[str, str]) -> str:
    data = url + "".join(name + params[name] for name in sorted(params))
    mac = hmac.new(auth_token.encode("utf-8"), data.encode("utf-8"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode("ascii")


def twilio_body_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def mango_sign(api_key: str, json_text: str, api_salt: str) -> str:
    return hashlib.sha256(f"{api_key}{json_text}{api_salt}".encode()).hexdigest()


def mango_form(api_key: str, json_text: str, api_salt: str) -> bytes:
    sign = mango_sign(api_key, json_text, api_salt)
    return form_body({"vpbx_api_key": api_key, "sign": sign, "json": json_text})


def zadarma_signature(secret: str, signed: str) -> str:
    hex_text = hmac.new(secret.encode(), signed.encode(), hashlib.sha1).hexdigest()
    return base64.b64encode(hex_text.encode("ascii")).decode("ascii")


def zadarma_signature_of_raw_digest(secret: str, signed: str) -> str:
    """The tempting mistake: base64 of the 20-byte digest, not of its hex text."""
    digest = hmac.new(secret.encode(), signed.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def generic_signature(secret: str, timestamp: str, body: bytes) -> str:
    message = timestamp.encode("ascii") + b"." + body
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
