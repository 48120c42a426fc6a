"""Fakes for recordings: Google's ID token keys and a provider's media host.

- ``/oauth2/v1/certs``: Google's key list in its v1 form, ``{kid: PEM
  certificate}``, for a key made here; ``id_token(...)`` signs RS256 ID tokens
  with it the way Google does (``iss``, ``aud``, ``email``, ``email_verified``,
  ``iat``, ``exp``). Tokens signed by another key (``forged=True``) fail.
- ``/rec/{name}.mp3``: a generic PBX's recording URL (``gone.mp3`` answers 404,
  ``broken.mp3`` 500).
- ``/2010-04-01/Accounts/{AC...}/Recordings/{RE...}.mp3``: Twilio's media URL,
  which wants basic auth of the account SID and its auth token (401 else).

Started on import on a free port, like the other fakes (``stack_env()``).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

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
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                fake._get(self)

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

    def _get(self, handler: BaseHTTPRequestHandler) -> None:
        path = handler.path.split("?")[0]
        with self.lock:
            self.fetches.append({"path": path,
                                 "auth": handler.headers.get("Authorization")})
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
    }
