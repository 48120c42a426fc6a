"""The call_webhook function over HTTP, against the Firestore and Pub/Sub emulators.

Each request is signed with tests/signers.py (the providers' recipes written
again from their documentation) and sent as the provider sends it; effects are
read back from Firestore and from a pull subscription on ``call-events``.
"""

from __future__ import annotations

import base64
import concurrent.futures
import datetime as dt
import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl

import pytest

import signers
from devstack.stack import PROJECT
from shared import callmessages
from shared.phones import phone_hash
from tests.conftest import STACK_ENV, Client

DATA = Path(__file__).parent / "data" / "webhooks"
SECRETS = json.loads(STACK_ENV["CALLTRACK_PROVIDER_SECRETS"])["demo"]
HOST = "hooks.calltrack.example"
FORM = "application/x-www-form-urlencoded"
CALLER = "+79161234567"
TWILIO_CALLER = "+14155550199"
ZADARMA_SIGNED = {
    "NOTIFY_START": ("caller_id", "called_did", "call_start"),
    "NOTIFY_END": ("caller_id", "called_did", "call_start"),
    "NOTIFY_RECORD": ("pbx_call_id", "call_id_with_rec"),
}


# -- provider requests ---------------------------------------------------------


@dataclass(frozen=True)
class Hook:
    """One provider request, ready to send."""

    path: str
    body: bytes
    headers: dict
    method: str = "POST"


def sample(provider: str, name: str) -> bytes:
    return (DATA / provider / name).read_text().strip().encode()


def tampered(body: bytes, change: tuple[bytes, bytes] | None) -> bytes:
    if change is None:
        return body
    old, new = change
    assert old in body, f"{old!r} is not in the sample"
    return body.replace(old, new, 1)


def generic_hook(name, *, secret=SECRETS["generic_secret"], unsigned=False,
                 tamper=None, stamp=None, body=None) -> Hook:
    body = body or json.dumps(json.loads(sample("generic", name))).encode()
    stamp = stamp or str(int(time.time()))
    headers = {"Content-Type": "application/json"}
    if not unsigned:
        headers["X-Calltrack-Timestamp"] = stamp
        signature = signers.generic_signature(secret, stamp, body)
        headers["X-Calltrack-Signature"] = signature
    return Hook("/generic/demo", tampered(body, tamper), headers)


def twilio_hook(name, *, secret=SECRETS["twilio_auth_token"], unsigned=False,
                tamper=None, body=None) -> Hook:
    body = body or sample("twilio", name)
    url = f"https://{HOST}/twilio/demo"
    params = dict(parse_qsl(body.decode(), keep_blank_values=True))
    # Cloud Run forwards plain HTTP; the function rebuilds the signed URL.
    headers = {"Content-Type": FORM, "Host": HOST, "X-Forwarded-Proto": "https"}
    if not unsigned:
        headers["X-Twilio-Signature"] = signers.twilio_signature(secret, url, params)
    return Hook("/twilio/demo", tampered(body, tamper), headers)


def mango_hook(name, *, secret=SECRETS["mango_api_salt"],
               api_key=SECRETS["mango_api_key"], unsigned=False, tamper=None,
               json_text=None) -> Hook:
    json_text = json_text or json.dumps(json.loads(sample("mango", name)))
    kind = {"call": "call", "summary": "summary", "recording": "recording"}[
        name.split("_")[0]]
    if unsigned:
        body = signers.form_body({"vpbx_api_key": api_key, "json": json_text})
    else:
        body = signers.mango_form(api_key, json_text, secret)
    return Hook(f"/mango/demo/events/{kind}", tampered(body, tamper),
                {"Content-Type": FORM})


def zadarma_hook(name, *, secret=SECRETS["zadarma_secret"], unsigned=False,
                 tamper=None, body=None) -> Hook:
    body = body or sample("zadarma", name)
    fields = dict(parse_qsl(body.decode(), keep_blank_values=True))
    signed = "".join(fields.get(n, "") for n in ZADARMA_SIGNED[fields["event"]])
    headers = {"Content-Type": FORM}
    if not unsigned:
        headers["Signature"] = signers.zadarma_signature(secret, signed)
    return Hook("/zadarma/demo", tampered(body, tamper), headers)


def uis_hook(name, *, secret=SECRETS["uis_secret"], unsigned=False, tamper=None,
             data=None) -> Hook:
    data = dict(data or json.loads(sample("uis", name)))
    if not unsigned:
        data["secret"] = secret
    body = json.dumps(data, ensure_ascii=False).encode()
    headers = {"Content-Type": "application/json"}
    return Hook("/uis/demo", tampered(body, tamper), headers)


@dataclass(frozen=True)
class Provider:
    """A provider's sample call and what the function must make of it."""

    name: str
    hook: Callable[..., Hook]
    samples: dict  # event kind -> sample file
    call_id: str
    provider_call_id: str
    tracking_number: str
    caller: str
    recording_ref: str
    completed: dict  # the call.completed body after start and end
    refused: dict  # case -> (status, code)
    tamper: tuple[bytes, bytes] | None  # a signed byte changed after signing
    malformed: Callable[[], Hook]  # signed, but not a readable event
    malformed_code: str
    end_started_at: str | None = None  # started_at known from the end alone
    receipt_completed_at: bool = False  # the end carries no time of its own
    wrong_key: dict = field(default_factory=dict)

    def send(self, client: Client, kind: str, **options):
        return send(client, self.hook(self.samples[kind], **options))

    def completed_body(self, *, recording_ref=None, end_first=False) -> dict:
        body = dict(self.completed, recording_ref=recording_ref)
        if end_first and self.end_started_at:
            body["started_at"] = self.end_started_at
        return body


def _completed(provider, call_id, provider_call_id, tracking, caller, *, ring_s,
               talk_s, completed_at="2026-03-12T07:15:42+00:00") -> dict:
    return {
        "call_id": call_id, "site_id": "demo", "provider": provider,
        "provider_call_id": provider_call_id, "tracking_number": tracking,
        "caller": caller, "caller_hash": phone_hash(caller),
        "caller_mask": caller[:2] + "*" * (len(caller) - 4) + caller[-2:],
        "started_at": "2026-03-12T07:14:50+00:00", "answered": True,
        "ring_s": ring_s, "talk_s": talk_s, "status": "answered",
        "recording_ref": None, "raw_ref": f"calls/{call_id}/raw",
        "completed_at": completed_at,
    }


TWILIO_SID = "CA9a1c6f0e2b7d4c3e8f5a6b9c0d1e2f3a"
MANGO_ENTRY = "MToxMDA1NzU5MzozNTc6NjQ2MzE4NDUxOjE="
ZADARMA_ID = "in_3f6b1f2a9c8d4e7fa1b2c3d4e5f60718"
GENERIC_ID = "1773299690.1187"
UIS_ID = "3618947215"
SIGNATURE = (401, "signature")

PROVIDERS = {
    "generic": Provider(
        name="generic", hook=generic_hook,
        samples={"start": "start.json", "answer": "answer.json", "end": "end.json",
                 "recording": "recording.json"},
        call_id=f"generic:demo:{GENERIC_ID}", provider_call_id=GENERIC_ID,
        tracking_number="+74951234567", caller=CALLER,
        recording_ref="https://pbx.example.ru/recordings/2026/03/12/"
                      "1773299690.1187.mp3",
        completed=_completed("generic", f"generic:demo:{GENERIC_ID}", GENERIC_ID,
                             "+74951234567", CALLER, ring_s=12, talk_s=40),
        refused={"missing": (401, "signature_missing"), "wrong_key": SIGNATURE,
                 "tampered": SIGNATURE},
        tamper=(b"+74951234567", b"+74951234568"),
        malformed=lambda: generic_hook("", body=b'{"event": "start"}'),
        malformed_code="generic_field",
        wrong_key={"secret": "test-generic-secret-WRONG"},
    ),
    "twilio": Provider(
        name="twilio", hook=twilio_hook,
        samples={"start": "status_ringing.txt", "end": "status_completed.txt",
                 "recording": "recording_completed.txt"},
        call_id=f"twilio:demo:{TWILIO_SID}", provider_call_id=TWILIO_SID,
        tracking_number="+14155550123", caller=TWILIO_CALLER,
        recording_ref="https://api.twilio.com/2010-04-01/Accounts/"
                      "AC3f1d2b6c9e8a7f0b1c2d3e4f5a6b7c8d/Recordings/"
                      "RE5d7f9b1c3e5a7c9e1b3d5f7a9c1e3b5d",
        completed=_completed("twilio", f"twilio:demo:{TWILIO_SID}", TWILIO_SID,
                             "+14155550123", TWILIO_CALLER, ring_s=None, talk_s=47),
        refused={"missing": (401, "signature_missing"), "wrong_key": SIGNATURE,
                 "tampered": SIGNATURE},
        tamper=(b"To=%2B14155550123", b"To=%2B14155550124"),
        malformed=lambda: twilio_hook("", body=b"CallStatus=ringing&To=%2B14155550123"),
        malformed_code="twilio_field",
        # Twilio's end says only Timestamp - CallDuration; the start is earlier.
        end_started_at="2026-03-12T07:14:55+00:00",
        wrong_key={"secret": "test-twilio-token-WRONG"},
    ),
    "mango": Provider(
        name="mango", hook=mango_hook,
        samples={"start": "call_appeared.json", "answer": "call_connected.json",
                 "end": "summary_answered.json",
                 "recording": "recording_completed.json"},
        call_id="mango:demo:MToxMDA1NzU5MzozNTc6NjQ2MzE4NDUxOjE%3D",
        provider_call_id=MANGO_ENTRY, tracking_number="+74951234567", caller=CALLER,
        recording_ref="MToxMDA1NzU5Mzo2NDYzMTg0NTI6MTAwMTU3Nzg4MA==",
        completed=_completed("mango",
                             "mango:demo:MToxMDA1NzU5MzozNTc6NjQ2MzE4NDUxOjE%3D",
                             MANGO_ENTRY, "+74951234567", CALLER, ring_s=12,
                             talk_s=40),
        # Another account's key is refused before its sign is even checked.
        refused={"missing": (401, "signature_missing"), "wrong_key": (403, "api_key"),
                 "tampered": SIGNATURE},
        tamper=(b"74951234567", b"74951234568"),
        malformed=lambda: mango_hook("call_appeared.json", json_text=json.dumps(
            {"entry_id": "e1", "call_state": "Exploded", "timestamp": 1773299690})),
        malformed_code="mango_field",
        wrong_key={"api_key": "test-mango-key-OTHER",
                   "secret": "test-mango-salt-OTHER"},
    ),
    "zadarma": Provider(
        name="zadarma", hook=zadarma_hook,
        samples={"start": "notify_start.txt", "end": "notify_end.txt",
                 "recording": "notify_record.txt"},
        call_id=f"zadarma:demo:{ZADARMA_ID}", provider_call_id=ZADARMA_ID,
        tracking_number="+74951234567", caller=CALLER,
        recording_ref="1773299690.4452791",
        completed=_completed("zadarma", f"zadarma:demo:{ZADARMA_ID}", ZADARMA_ID,
                             "+74951234567", CALLER, ring_s=None, talk_s=40),
        refused={"missing": (401, "signature_missing"), "wrong_key": SIGNATURE,
                 "tampered": SIGNATURE},
        # Zadarma signs caller_id, called_did and call_start only.
        tamper=(b"called_did=74951234567", b"called_did=74951234568"),
        malformed=lambda: zadarma_hook("", body=(
            b"event=NOTIFY_START&call_start=yesterday&pbx_call_id=in_1"
            b"&caller_id=89161234567&called_did=74951234567")),
        malformed_code="zadarma_time",
        receipt_completed_at=True,
        wrong_key={"secret": "test-zadarma-secret-WRONG"},
    ),
    "uis": Provider(
        name="uis", hook=uis_hook,
        samples={"start": "call_start.json", "answer": "call_answer.json",
                 "end": "call_end.json", "recording": "recording.json"},
        call_id=f"uis:demo:{UIS_ID}", provider_call_id=UIS_ID,
        tracking_number="+74993720692", caller=CALLER,
        recording_ref="https://app.uiscom.ru/system/media/talk/3618947215/"
                      "8e1f3c2a9b7d4e6f/",
        completed=_completed("uis", f"uis:demo:{UIS_ID}", UIS_ID, "+74993720692",
                             CALLER, ring_s=12, talk_s=40),
        refused={"missing": (401, "secret_missing"), "wrong_key": (401, "secret")},
        # UIS signs nothing: a body changed by someone holding the secret is
        # indistinguishable from the real one (docs/webhooks.md says so).
        tamper=None,
        malformed=lambda: uis_hook("", data={"event": "hangup",
                                             "call_session_id": 1}),
        malformed_code="uis_event",
        wrong_key={"secret": "test-uis-secret-WRONG"},
    ),
}
SIGNED = [name for name, p in PROVIDERS.items() if p.tamper is not None]


# -- HTTP, Pub/Sub and Firestore helpers ---------------------------------------


def send(client: Client, hook: Hook):
    return client.call(hook.method, hook.path, raw=hook.body,
                       content_type=hook.headers.get("Content-Type", FORM),
                       headers={k: v for k, v in hook.headers.items()
                                if k != "Content-Type"})


def rest(method: str, url: str, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, {}


class CallEvents:
    """A pull subscription on call-events, created before the test sends."""

    def __init__(self, stack) -> None:
        self.base = f"http://{stack.pubsub_host}/v1/projects/{PROJECT}"
        self.names: list[str] = []
        self.subscribe()

    def subscribe(self) -> None:
        name = f"test-call-events-{uuid.uuid4().hex[:12]}"
        status, _ = rest("PUT", f"{self.base}/subscriptions/{name}", {
            "topic": f"projects/{PROJECT}/topics/call-events",
            "ackDeadlineSeconds": 60,
        })
        assert status == 200
        self.names.append(name)

    def drain(self, settle_s: float = 0.5) -> list[tuple[str, dict]]:
        """Every message so far, in publish order; waits until none arrive."""
        url = f"{self.base}/subscriptions/{self.names[-1]}"
        received = []
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < settle_s:
            _, out = rest("POST", f"{url}:pull",
                          {"maxMessages": 100, "returnImmediately": True})
            got = out.get("receivedMessages") or []
            if not got:
                time.sleep(0.05)
                continue
            received += got
            quiet_since = time.monotonic()
            rest("POST", f"{url}:acknowledge",
                 {"ackIds": [m["ackId"] for m in got]})
        received.sort(key=lambda m: m["message"]["publishTime"])
        return [(m["message"]["attributes"]["type"],
                 json.loads(base64.b64decode(m["message"]["data"])))
                for m in received]

    def close(self) -> None:
        for name in self.names:
            rest("DELETE", f"{self.base}/subscriptions/{name}")


@pytest.fixture
def call_events(stack):
    topic = CallEvents(stack)
    yield topic
    topic.close()


@pytest.fixture
def hooks(stack, make_site):
    make_site()
    return Client(stack.urls["call_webhook"], origin=None)


def call_doc(fs, call_id: str) -> dict | None:
    snap = fs.collection("calls").document(call_id).get()
    return snap.to_dict() if snap.exists else None


def raw_docs(fs, call_id: str) -> list[dict]:
    ref = fs.collection("calls").document(call_id).collection("raw")
    return [d.to_dict() for d in ref.stream()]


def assert_schema(messages: list[tuple[str, dict]]) -> None:
    for kind, body in messages:
        callmessages.validate(kind, body)


class Between:
    """An ISO time within [low, high]: for times the server takes from its clock."""

    def __init__(self, low: dt.datetime, high: dt.datetime) -> None:
        self.low, self.high = low, high

    def __eq__(self, other) -> bool:
        return isinstance(other, str) and (
            self.low <= dt.datetime.fromisoformat(other) <= self.high)

    def __repr__(self) -> str:
        return f"Between({self.low.isoformat()}, {self.high.isoformat()})"


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


# -- signatures ------------------------------------------------------------------


@pytest.mark.parametrize("name", PROVIDERS)
def test_signed_start_is_recorded_without_the_raw_caller(name, hooks, fs,
                                                          call_events):
    """A valid start answers 200 and leaves a call record with hash and mask only."""
    provider = PROVIDERS[name]
    resp = provider.send(hooks, "start")

    assert resp.status == 200
    assert resp.json() == {"events": 1, "calls": [
        {"call_id": provider.call_id, "published": []}]}
    record = call_doc(fs, provider.call_id)
    assert (record["site_id"], record["provider"], record["provider_call_id"]) == (
        "demo", name, provider.provider_call_id)
    assert record["tracking_number"] == provider.tracking_number
    assert record["caller_hash"] == phone_hash(provider.caller)
    assert record["caller_mask"] == provider.completed["caller_mask"]
    assert (record["completed"], record["status"]) == (False, "ringing")
    assert record["expires_at"] - record["updated_at"] == dt.timedelta(days=35)
    assert len(raw_docs(fs, provider.call_id)) == 1
    assert call_events.drain() == []


@pytest.mark.parametrize("name", SIGNED)
def test_body_changed_after_signing_is_refused_and_not_recorded(name, hooks, fs,
                                                                call_events):
    provider = PROVIDERS[name]
    resp = provider.send(hooks, "start", tamper=provider.tamper)

    assert (resp.status, resp.json()["error"]["code"]) == provider.refused["tampered"]
    assert list(fs.collection("calls").stream()) == []
    assert call_events.drain() == []


@pytest.mark.parametrize("name", PROVIDERS)
def test_request_without_signature_is_refused_with_401(name, hooks, fs, call_events):
    provider = PROVIDERS[name]
    resp = provider.send(hooks, "end", unsigned=True)

    assert (resp.status, resp.json()["error"]["code"]) == provider.refused["missing"]
    assert list(fs.collection("calls").stream()) == []
    assert call_events.drain() == []


@pytest.mark.parametrize("name", PROVIDERS)
def test_request_signed_with_another_key_is_refused(name, hooks, fs, call_events):
    provider = PROVIDERS[name]
    resp = provider.send(hooks, "end", **provider.wrong_key)

    assert (resp.status, resp.json()["error"]["code"]) == provider.refused["wrong_key"]
    assert list(fs.collection("calls").stream()) == []
    assert call_events.drain() == []


@pytest.mark.parametrize("age_s", [600, -600])
def test_generic_request_signed_outside_the_window_is_a_403_replay(age_s, hooks, fs,
                                                                   call_events):
    """Only the generic hook signs a time; 10 min either way is a replay."""
    stamp = str(int(time.time()) - age_s)
    resp = send(hooks, generic_hook("end.json", stamp=stamp))

    assert (resp.status, resp.json()["error"]["code"]) == (403, "replay")
    assert list(fs.collection("calls").stream()) == []
    assert call_events.drain() == []


@pytest.mark.parametrize("name", PROVIDERS)
def test_signed_but_malformed_payload_is_a_400_and_not_recorded(name, hooks, fs,
                                                                call_events):
    provider = PROVIDERS[name]
    resp = send(hooks, provider.malformed())

    assert (resp.status, resp.json()["error"]["code"]) == (400,
                                                           provider.malformed_code)
    assert list(fs.collection("calls").stream()) == []
    assert call_events.drain() == []


# -- merging and publishing -----------------------------------------------------


@pytest.mark.parametrize("name", PROVIDERS)
def test_repeated_and_reordered_events_publish_one_completed_call(name, hooks, fs,
                                                                  call_events):
    """End first, then everything again: one call.completed, then the recording."""
    provider = PROVIDERS[name]
    kinds = ["end", "start", "end", "recording", "start", "recording", "end"]
    kinds += ["answer", "answer"] if "answer" in provider.samples else []
    low = now_utc()
    statuses = [provider.send(hooks, kind).status for kind in kinds]
    high = now_utc() + dt.timedelta(seconds=1)

    messages = call_events.drain()
    expected = provider.completed_body(end_first=True)
    if provider.receipt_completed_at:
        expected["completed_at"] = Between(low, high)
    assert statuses == [200] * len(kinds)
    assert messages == [
        ("call.completed", expected),
        ("call.recording", {"call_id": provider.call_id, "site_id": "demo",
                            "provider": name,
                            "provider_call_id": provider.provider_call_id,
                            "recording_ref": provider.recording_ref}),
    ]
    assert_schema(messages)
    record = call_doc(fs, provider.call_id)
    assert (record["completed_published"], record["published_recordings"]) == (
        True, [provider.recording_ref])
    assert "publishing" not in record


@pytest.mark.parametrize("name", PROVIDERS)
def test_recording_before_the_end_rides_in_the_completed_message(name, hooks,
                                                                 call_events):
    provider = PROVIDERS[name]
    low = now_utc()
    for kind in ("recording", "start", "end"):
        assert provider.send(hooks, kind).status == 200
    high = now_utc() + dt.timedelta(seconds=1)

    expected = provider.completed_body(recording_ref=provider.recording_ref)
    if provider.receipt_completed_at:
        expected["completed_at"] = Between(low, high)
    assert call_events.drain() == [("call.completed", expected)]


@pytest.mark.parametrize("name", PROVIDERS)
def test_late_recording_updates_the_call_without_a_second_completed_call(
        name, hooks, fs, call_events):
    provider = PROVIDERS[name]
    for kind in ("start", "end"):
        assert provider.send(hooks, kind).status == 200
    first = call_events.drain()
    late = [provider.send(hooks, kind) for kind in ("recording", "recording", "end")]

    assert [kind for kind, _ in first] == ["call.completed"]
    assert first[0][1]["recording_ref"] is None
    assert [r.status for r in late] == [200, 200, 200]
    assert [r.json()["calls"][0]["published"] for r in late] == [
        ["call.recording"], [], []]
    assert call_events.drain() == [("call.recording", {
        "call_id": provider.call_id, "site_id": "demo", "provider": name,
        "provider_call_id": provider.provider_call_id,
        "recording_ref": provider.recording_ref})]
    assert call_doc(fs, provider.call_id)["recording_refs"] == [provider.recording_ref]


def test_concurrent_deliveries_of_one_call_publish_one_completed_message(
        hooks, call_events):
    """Racing repeats of the end and the recording still send one completed call."""
    provider = PROVIDERS["generic"]
    kinds = ["end", "recording", "end", "start", "recording", "end", "answer", "end"]
    with concurrent.futures.ThreadPoolExecutor(len(kinds)) as pool:
        statuses = list(pool.map(lambda k: provider.send(hooks, k).status, kinds))

    messages = call_events.drain()
    # The recording rides in the completed message or follows it, once.
    refs = [body["recording_ref"] for _, body in messages if body["recording_ref"]]
    assert statuses == [200] * len(kinds)
    assert sorted(kind for kind, _ in messages) in (
        ["call.completed"], ["call.completed", "call.recording"])
    assert refs == [provider.recording_ref]
    assert_schema(messages)


# -- dependencies down ---------------------------------------------------------------


def _reattach_subscriptions(stack) -> None:
    """Recreate what deleting call-events detached, for the tests that follow."""
    base = f"http://{stack.pubsub_host}/v1/projects/{PROJECT}"
    _, listing = rest("GET", f"{base}/subscriptions")
    for sub in listing.get("subscriptions", []):
        if sub.get("topic") == "_deleted-topic_":
            rest("DELETE", f"http://{stack.pubsub_host}/v1/{sub['name']}")
    stack.create_topics()


@pytest.mark.parametrize("name", ["generic", "twilio"])
def test_pubsub_down_answers_503_and_the_retry_publishes_once(name, stack, hooks, fs,
                                                              call_events):
    provider = PROVIDERS[name]
    topic = f"http://{stack.pubsub_host}/v1/projects/{PROJECT}/topics/call-events"
    assert provider.send(hooks, "start").status == 200
    assert rest("DELETE", topic)[0] == 200
    try:
        down = provider.send(hooks, "end")
        record = call_doc(fs, provider.call_id)
    finally:
        _reattach_subscriptions(stack)
    call_events.subscribe()
    retried = provider.send(hooks, "end")

    assert (down.status, down.json()["error"]["code"]) == (503, "unavailable")
    assert (record["completed"], record["completed_published"]) == (True, False)
    assert "publishing" not in record
    assert retried.status == 200
    assert retried.json()["calls"][0]["published"] == ["call.completed"]
    assert call_events.drain() == [("call.completed", provider.completed_body())]
    assert call_doc(fs, provider.call_id)["completed_published"] is True


# -- routing -----------------------------------------------------------------------


def test_zadarma_url_check_echoes_the_token(hooks):
    resp = hooks.call("GET", "/zadarma/demo?zd_echo=8d3f0b5c1e7a")

    assert (resp.status, resp.body) == (200, b"8d3f0b5c1e7a")
    assert resp.headers["content-type"].startswith("text/plain")


@pytest.mark.parametrize(("path", "status", "code"), [
    ("/generic/nosuchsite", 404, "unknown_site"),
    ("/skype/demo", 404, "provider"),
    ("/generic", 404, "route"),
    ("/generic/demo/extra", 404, "route"),
])
def test_unknown_site_provider_or_path_is_a_404(path, status, code, hooks, fs):
    hook = generic_hook("start.json")
    resp = send(hooks, Hook(path, hook.body, hook.headers))

    assert (resp.status, resp.json()["error"]["code"]) == (status, code)
    assert list(fs.collection("calls").stream()) == []


def test_provider_the_site_does_not_list_is_a_404(stack, make_site, fs):
    make_site(extra={"providers": ["twilio"]})
    client = Client(stack.urls["call_webhook"], origin=None)
    resp = send(client, generic_hook("start.json"))

    assert (resp.status, resp.json()["error"]["code"]) == (404, "provider_disabled")
    assert list(fs.collection("calls").stream()) == []


def test_site_without_secrets_answers_500_so_the_provider_retries(stack, make_site,
                                                                  fs):
    """A missing secret is our configuration to fix, not a bad request."""
    make_site(site_id="nosecrets")
    client = Client(stack.urls["call_webhook"], origin=None)
    hook = generic_hook("start.json")
    resp = send(client, Hook("/generic/nosecrets", hook.body, hook.headers))

    assert (resp.status, resp.json()["error"]["code"]) == (500, "secret_missing")
    assert list(fs.collection("calls").stream()) == []


def test_get_callback_is_refused_so_the_caller_stays_out_of_request_logs(hooks):
    resp = hooks.call("GET", "/twilio/demo?CallSid=CA1&From=%2B79161234567")

    assert (resp.status, resp.json()["error"]["code"]) == (400, "method")


# -- personal data ---------------------------------------------------------------


def test_raw_payload_is_stored_without_credentials_or_the_caller(hooks, fs):
    provider = PROVIDERS["mango"]
    assert provider.send(hooks, "start").status == 200

    [raw] = raw_docs(fs, provider.call_id)
    pairs = json.loads(raw["body"])
    assert raw["format"] == "form"
    assert raw["event_kinds"] == ["start"]
    assert [name for name, _ in pairs] == ["json"]
    event = pairs[0][1]
    assert event["from"] == {"number": "*********67"}
    assert event["to"]["line_number"] == "74951234567"
    assert event["entry_id"] == MANGO_ENTRY


def test_raw_caller_number_never_reaches_logs_or_firestore(stack, hooks, fs):
    """Full calls of every provider leave the caller only as hash and mask."""
    for provider in PROVIDERS.values():
        for kind in ("start", "end", "recording"):
            assert provider.send(hooks, kind).status == 200
        # A refused request with the caller in it is logged too.
        assert provider.send(hooks, "end", unsigned=True).status == 401

    stored = [d.to_dict() for d in fs.collection("calls").stream()]
    stored += [d.to_dict() for d in fs.collection_group("raw").stream()]
    text = json.dumps(stored, default=str) + stack.log_text("call_webhook")
    assert len(stored) == 4 * len(PROVIDERS)  # a call and its three payloads
    assert f'"call_id": "{PROVIDERS["uis"].call_id}"' in text
    for number in ("9161234567", "4155550199"):
        assert number not in text
