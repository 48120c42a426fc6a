"""Fakes for recordings: Google's ID token keys and a provider's media host.

- ``/oauth2/v1/certs``: Google's key list in its v1 form, ``{kid: PEM
  certificate}``, for a key made here; ``id_token(...)`` signs RS256 ID tokens
  with it the way Google does (``iss``, ``aud``, ``email``, ``email_verified``,
  ``iat``, ``exp``). Tokens signed by another key (``forged=True``) fail.
- ``/rec/{name}.mp3``: a generic PBX's recording URL (``gone.mp3`` answers 404,
  ``broken.mp3`` 500).
- ``/2010-04-01/Accounts/{AC...}/Recordings/{RE...}.mp3``: Twilio's media URL,
  which wants basic auth of the account SID and its auth token (401 else).
- ``POST /vpbx/queries/recording/post``: Mango Office's recording query, form
  fields ``vpbx_api_key``, ``sign`` (hex SHA-256 of key + json + salt) and
  ``json`` ``{"recording_id", "action": "download"|"play"}``; answers 302 to a
  one-time media URL (a second GET of it is a 404), 403 for a wrong key or
  sign, 400 for a malformed query.
- ``GET /v1/pbx/record/request/``: Zadarma's recording link, ``call_id`` or
  ``pbx_call_id``, ``lifetime`` 180..5184000 s, ``Authorization: key:sig``
  with sig = base64(hex HMAC-SHA1(secret, method + sorted query + md5 hex of
  it)); answers ``{"status": "success", "link", "lifetime_till"}``, or 401 /
  400 with ``{"status": "error", "message"}``.

Recording ids starting ``gone`` are unknown to the provider (Mango 404,
Zadarma an error), ``broken`` ones make it fail with 500.

Started on import on a free port, like the other fakes (``stack_env()``).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, quote, urlsplit

import google.auth.crypt
import google.auth.jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

AUDIENCE = "1234567890-calltrack-test.apps.googleusercontent.com"
READERS = ["user:analyst@shop.example.test", "domain:support.example.test"]
LINK_SECRET = "test-recording-link-secret-3f9a1c"
TWILIO_ACCOUNT = "AC" + "0123456789abcdef" * 2
TWILIO_TOKEN = "test-twilio-token-0f6c2a9d8e7b4c1a"  # site demo's, in conftest
KID = "fake-google-key-1"
# Site demo's provider API credentials, as in conftest.
MANGO_KEY = "test-mango-key-4b8e1d2c"
MANGO_SALT = "test-mango-salt-9a7c5e3f"
ZADARMA_KEY = "test-zadarma-key-7f3e2d1c"
ZADARMA_SECRET = "test-zadarma-secret-1c2d3e4f"
ZADARMA_METHOD = "/v1/pbx/record/request/"
TWILIO_MEDIA = re.compile(r"^/2010-04-01/Accounts/(AC\w{32})/Recordings/(RE\w+)\.mp3$")


def _key_and_cert():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake-google")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    pem = key.private_bytes(serialization.Encoding.PEM,
                            serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    return pem, cert.public_bytes(serialization.Encoding.PEM).decode()


def audio(name: str) -> bytes:
    return b"ID3\x04\x00fake-audio:" + name.encode() * 64


class FakeRecordings:
    def __init__(self) -> None:
        self.key_pem, self.cert_pem = _key_and_cert()
        self.other_key_pem, _ = _key_and_cert()
        self.fetches: list[dict] = []
        # One-time media URLs handed out by the Mango and Zadarma APIs.
        self.one_time: dict[str, str] = {}
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                fake._get(self)

            def do_POST(self):  # noqa: N802
                fake._post(self)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"

    def start(self) -> FakeRecordings:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def id_token(self, email: str, *, audience: str = AUDIENCE,
                 verified: bool = True, issuer: str = "https://accounts.google.com",
                 expires_in_s: int = 3600, forged: bool = False) -> str:
        now = int(time.time())
        claims = {"iss": issuer, "aud": audience, "sub": "1" + str(abs(hash(email))),
                  "email": email, "email_verified": verified,
                  "iat": now, "exp": now + expires_in_s}
        pem = self.other_key_pem if forged else self.key_pem
        signer = google.auth.crypt.RSASigner.from_string(pem, KID)
        return google.auth.jwt.encode(signer, claims).decode()

    def _answer(self, handler, status: int, body: bytes, kind: str) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", kind)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def _json(self, handler, status: int, body: dict) -> None:
        self._answer(handler, status, json.dumps(body).encode(), "application/json")

    def _hand_out(self, name: str) -> str:
        token = secrets.token_urlsafe(12)
        with self.lock:
            self.one_time[token] = name
        return f"{self.url}/media/{token}.mp3"

    def _post(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length).decode()
        with self.lock:
            self.fetches.append({"path": handler.path, "form": raw})
        if handler.path != "/vpbx/queries/recording/post":
            return self._answer(handler, 404, b"no such path", "text/plain")
        if not handler.headers.get("Content-Type", "").startswith(
                "application/x-www-form-urlencoded"):
            return self._json(handler, 400, {"result": 3100})
        form = dict(parse_qsl(raw, keep_blank_values=True))
        expected = hashlib.sha256(
            (MANGO_KEY + form.get("json", "") + MANGO_SALT).encode()).hexdigest()
        if form.get("vpbx_api_key") != MANGO_KEY or form.get("sign") != expected:
            return self._json(handler, 403, {"result": 3102})
        try:
            query = json.loads(form["json"])
            recording_id = query["recording_id"]
        except (KeyError, ValueError, TypeError):
            return self._json(handler, 400, {"result": 3100})
        if not isinstance(recording_id, str) or query.get("action") not in (
                "download", "play"):
            return self._json(handler, 400, {"result": 3100})
        if recording_id.startswith("gone"):
            return self._json(handler, 404, {"result": 3105})
        if recording_id.startswith("broken"):
            return self._answer(handler, 500, b"oops", "text/plain")
        handler.send_response(302)
        handler.send_header("Location", self._hand_out(recording_id))
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    def _zadarma(self, handler: BaseHTTPRequestHandler) -> None:
        query = urlsplit(handler.path).query
        params = dict(parse_qsl(query, keep_blank_values=True))
        # Zadarma re-encodes the sorted params as PHP's http_build_query does.
        text = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}".replace("%20", "+")
                        .replace("~", "%7E") for k, v in sorted(params.items()))
        digest = hashlib.md5(text.encode()).hexdigest()  # noqa: S324
        mac = hmac.new(ZADARMA_SECRET.encode(), (ZADARMA_METHOD + text + digest)
                       .encode(), hashlib.sha1).hexdigest()
        expected = f"{ZADARMA_KEY}:{base64.b64encode(mac.encode()).decode()}"
        if handler.headers.get("Authorization") != expected:
            return self._json(handler, 401, {"status": "error",
                                             "message": "Not authorized"})
        call_id = params.get("call_id") or params.get("pbx_call_id")
        lifetime = params.get("lifetime", "1800")
        if not call_id or not lifetime.isdigit() or not (
                180 <= int(lifetime) <= 5184000):
            return self._json(handler, 400, {"status": "error",
                                             "message": "Wrong parameters"})
        if call_id.startswith("gone"):
            return self._json(handler, 400, {"status": "error",
                                             "message": "Record not found"})
        if call_id.startswith("broken"):
            return self._answer(handler, 500, b"oops", "text/plain")
        till = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=int(lifetime))
        return self._json(handler, 200, {
            "status": "success", "link": self._hand_out(call_id),
            "lifetime_till": till.strftime("%Y-%m-%d %H:%M:%S")})

    def _get(self, handler: BaseHTTPRequestHandler) -> None:
        path = handler.path.split("?")[0]
        with self.lock:
            self.fetches.append({"path": path,
                                 "auth": handler.headers.get("Authorization")})
        if path == ZADARMA_METHOD:
            return self._zadarma(handler)
        if path.startswith("/media/") and path.endswith(".mp3"):
            with self.lock:
                name = self.one_time.pop(path[7:-4], None)
            if name is None:
                return self._answer(handler, 404, b"link used or unknown",
                                    "text/plain")
            return self._answer(handler, 200, audio(name), "audio/mpeg")
        if path == "/oauth2/v1/certs":
            body = json.dumps({KID: self.cert_pem}).encode()
            return self._answer(handler, 200, body, "application/json")

        twilio = TWILIO_MEDIA.match(path)
        if twilio:
            expected = base64.b64encode(
                f"{twilio.group(1)}:{TWILIO_TOKEN}".encode()).decode()
            if handler.headers.get("Authorization") != f"Basic {expected}":
                return self._answer(handler, 401, b'{"code": 20003}',
                                    "application/json")
            return self._answer(handler, 200, audio(twilio.group(2)), "audio/mpeg")

        if path == "/rec/gone.mp3":
            return self._answer(handler, 404, b"not found", "text/plain")
        if path == "/rec/broken.mp3":
            return self._answer(handler, 500, b"oops", "text/plain")
        if path.startswith("/rec/") and path.endswith(".mp3"):
            return self._answer(handler, 200, audio(path[5:-4]), "audio/mpeg")
        return self._answer(handler, 404, b"no such path", "text/plain")


SERVER = FakeRecordings().start()


def stack_env() -> dict:
    return {
        "CALLTRACK_GOOGLE_CERTS_URL": f"{SERVER.url}/oauth2/v1/certs",
        "CALLTRACK_RECORDING_AUDIENCE": AUDIENCE,
        "CALLTRACK_RECORDING_READERS": json.dumps(READERS),
        "CALLTRACK_RECORDING_LINK_SECRET": LINK_SECRET,
        "CALLTRACK_MANGO_API_URL": f"{SERVER.url}/vpbx",
        "CALLTRACK_ZADARMA_API_URL": SERVER.url,
    }
