"""The ``recording`` function: only configured readers get a short-lived link,
the link plays the provider's audio, and every access is logged.

Google's ID tokens and the providers' media are the local fakes of
``tests.fakes.recordings``; the call rows come from the real webhook and
stitch path, or are written into ``calls`` as stitch writes them.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request

import pytest

from devstack.stack import DATASET, PROJECT
from shared import recordings
from shared.errors import Forbidden, NotFound, TransientError, Unauthorized
from tests import test_end_to_end as e2e
from tests import warehouse_fixtures as wf
from tests.conftest import wait_for
from tests.fakes import recordings as fake

READER = "analyst@shop.example.test"
NOW = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC)
KEY = "unit-test-link-key-0123456789abcdef"


def _get(url: str, token: str | None = None) -> tuple[int, dict, bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def _link(stack, call_id: str, email: str = READER, **token) -> tuple[int, dict]:
    status, _, body = _get(
        f"{stack.urls['recording']}/link/demo/{call_id}",
        fake.SERVER.id_token(email, **token),
    )
    return status, json.loads(body)


def _row(stack, call_id: str, provider: str, ref: str) -> None:
    row = wf.call("demo", call_id, wf.at("2026-12-01"), recording=ref)
    wf.load(stack, f"{PROJECT}.{DATASET}", "calls", [{**row, "provider": provider}])


def _logged(stack, event: str, call_id: str) -> list[dict]:
    lines = [json.loads(x) for x in stack.log_text("recording").splitlines()
             if x.startswith("{")]
    return [x for x in lines if x.get("event") == event and x.get("call_id") == call_id]


# -- pure rules ----------------------------------------------------------------


def test_readers_are_matched_by_email_or_by_domain():
    readers = ("user:analyst@shop.example.test", "domain:support.example.test")

    assert recordings.allowed("Analyst@Shop.Example.Test", readers)
    assert recordings.allowed("anyone@support.example.test", readers)
    assert not recordings.allowed("other@shop.example.test", readers)
    assert not recordings.allowed("x@evil-support.example.test", readers)


def test_a_link_opens_until_it_expires_and_never_when_altered():
    link = recordings.Link("demo", "c1", READER, NOW + dt.timedelta(minutes=5))
    token = recordings.make_link(KEY, link)

    assert recordings.open_link(KEY, token, NOW) == link
    with pytest.raises(Forbidden, match="expired"):
        recordings.open_link(KEY, token, NOW + dt.timedelta(minutes=5))
    with pytest.raises(Forbidden, match="gave"):
        recordings.open_link(KEY[::-1], token, NOW)
    payload, mac = token.split(".")
    with pytest.raises(Forbidden, match="gave"):
        recordings.open_link(KEY, payload[:-2] + "xx." + mac, NOW)


def test_the_placeholder_secret_signs_and_opens_nothing():
    link = recordings.Link("demo", "c1", READER, NOW + dt.timedelta(minutes=5))

    with pytest.raises(Unauthorized, match="at least 32"):
        recordings.make_link("{}", link)
    with pytest.raises(Unauthorized, match="at least 32"):
        recordings.open_link("{}", "e30.x", NOW)


def test_twilio_media_is_fetched_as_mp3_with_the_account_sid_and_token():
    ref = f"https://api.twilio.com/2010-04-01/Accounts/{fake.TWILIO_ACCOUNT}/Recordings/RE1"

    src = recordings.source("twilio", ref, {"twilio_auth_token": "t"}, False)

    assert src == recordings.Source(ref + ".mp3", (fake.TWILIO_ACCOUNT, "t"))


def test_plain_http_references_are_refused_outside_the_emulators():
    with pytest.raises(NotFound, match="https"):
        recordings.source("generic", "http://pbx.example.test/r.mp3", {}, False)
    with pytest.raises(recordings.NotSupported, match="sipuni"):
        recordings.source("sipuni", "rec-123", {}, True)


APIS = {"mango": "https://app.mango-office.ru/vpbx",
        "zadarma": "https://api.zadarma.com"}


def test_a_mango_recording_is_asked_for_by_id_with_a_signed_query():
    secrets = {"mango_api_key": "k", "mango_api_salt": "s"}

    src = recordings.source("mango", "MToxMDA1", secrets, False, APIS)

    payload = '{"recording_id":"MToxMDA1","action":"download"}'
    assert src.url == "https://app.mango-office.ru/vpbx/queries/recording/post"
    assert (src.method, src.answer) == ("POST", "redirect")
    assert src.form == {"vpbx_api_key": "k", "json": payload,
                        "sign": hashlib.sha256(f"k{payload}s".encode()).hexdigest()}


def test_zadarma_signs_the_query_php_writes_with_key_and_secret():
    secrets = {"zadarma_api_key": "key", "zadarma_secret": "secret"}

    src = recordings.source("zadarma", "1458832388.1585217", secrets, False, APIS)

    query = "call_id=1458832388.1585217&format=json&lifetime=180"
    assert src.url == f"https://api.zadarma.com/v1/pbx/record/request/?{query}"
    signed = "/v1/pbx/record/request/" + query + hashlib.md5(query.encode()).hexdigest()
    mac = hmac.new(b"secret", signed.encode(), hashlib.sha1).hexdigest()
    assert src.headers == {
        "Authorization": "key:" + base64.b64encode(mac.encode()).decode()}
    assert src.answer == "link"


def test_php_query_sorts_and_escapes_as_http_build_query_does():
    assert recordings.php_query({"b": "a b~c", "a": "é/&"}) == (
        "a=%C3%A9%2F%26&b=a+b%7Ec")


@pytest.mark.parametrize(("provider", "secrets", "missing"), [
    ("mango", {"mango_api_key": "k"}, "mango_api_salt"),
    ("zadarma", {"zadarma_secret": "s"}, "zadarma_api_key"),
])
def test_an_api_recording_needs_the_sites_credentials(provider, secrets, missing):
    with pytest.raises(NotFound, match=missing):
        recordings.source(provider, "rec-1", secrets, False, APIS)


# -- the function --------------------------------------------------------------


def test_a_reader_gets_a_short_lived_link_that_plays_the_recording(
    stack, make_site
):
    make_site(dynamic_numbers=e2e.numbers(2, start=7700))
    visit = e2e._visit(stack, consent=True)
    call_id = e2e._call(stack, visit["number"], "+79165550161")
    provider_id = call_id.split(":", 2)[2]
    url = f"{fake.SERVER.url}/rec/{provider_id}.mp3"
    recording = {"call_id": provider_id, "event": "recording", "recording_url": url,
                 "occurred_at": dt.datetime.now(dt.UTC).isoformat()}
    assert e2e._hook(stack, recording) == 200
    wait_for(lambda: stack.query(
        f"select 1 from `{{dataset}}.calls` where call_id = '{call_id}' "
        "and recording_ref is not null"))
    before = time.time()

    status, answer = _link(stack, call_id)

    assert status == 200
    expires = dt.datetime.fromisoformat(answer["expires_at"]).timestamp()
    assert 295 <= expires - before <= 305
    assert answer["url"].startswith(f"{stack.urls['recording']}/play/")
    played, headers, audio = _get(answer["url"])
    assert played == 200 and audio == fake.audio(provider_id)
    assert headers["Content-Type"] == "audio/mpeg"
    assert "no-store" in headers["Cache-Control"]
    (given,) = _logged(stack, "recording_link", call_id)
    (heard,) = _logged(stack, "recording_played", call_id)
    assert given["reader"] == heard["reader"] == READER
    # The link is the reader's key; the provider's URL never reaches them.
    assert url not in json.dumps(answer)


def test_a_domain_reader_is_let_in_and_anyone_else_is_refused(stack):
    _row(stack, "rec-domain-1", "generic", f"{fake.SERVER.url}/rec/d1.mp3")

    ok, _ = _link(stack, "rec-domain-1", "night.shift@support.example.test")
    refused, body = _link(stack, "rec-domain-1", "intern@shop.example.test")

    assert ok == 200
    assert refused == 403 and body["error"]["code"] == "not_a_reader"
    assert _logged(stack, "recording_link", "rec-domain-1")[0]["reader"] == (
        "night.shift@support.example.test")
    assert len(_logged(stack, "recording_link", "rec-domain-1")) == 1


@pytest.mark.parametrize("token", [
    {"forged": True},
    {"audience": "someone-else.apps.googleusercontent.com"},
    {"expires_in_s": -120},
    {"verified": False},
    {"issuer": "https://evil.example.test"},
])
def test_a_bad_id_token_gets_401_and_no_link(stack, token):
    _row(stack, "rec-token-1", "generic", f"{fake.SERVER.url}/rec/t1.mp3")

    status, body = _link(stack, "rec-token-1", **token)

    assert status == 401 and "url" not in body
    assert body["error"]["code"] == "token"


def test_no_token_gets_401(stack):
    status, _, body = _get(f"{stack.urls['recording']}/link/demo/rec-token-1")

    assert status == 401
    assert json.loads(body)["error"]["message"] == (
        "Expected Authorization: Bearer <Google ID token>.")


def test_an_expired_or_forged_link_plays_nothing(stack):
    _row(stack, "rec-link-1", "generic", f"{fake.SERVER.url}/rec/l1.mp3")
    base = f"{stack.urls['recording']}/play/"
    past = recordings.Link("demo", "rec-link-1", READER,
                           dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
    forged = recordings.Link("demo", "rec-link-1", READER,
                             dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5))
    fetched = len(fake.SERVER.fetches)

    expired = _get(base + recordings.make_link(fake.LINK_SECRET, past))
    wrong = _get(base + recordings.make_link(KEY, forged))

    assert expired[0] == 403 and json.loads(expired[2])["error"]["code"] == (
        "link_expired")
    assert wrong[0] == 403 and json.loads(wrong[2])["error"]["code"] == "link"
    assert len(fake.SERVER.fetches) == fetched
    assert _logged(stack, "recording_played", "rec-link-1") == []


def test_a_twilio_recording_is_fetched_with_the_sites_credentials(stack):
    ref = (f"{fake.SERVER.url}/2010-04-01/Accounts/{fake.TWILIO_ACCOUNT}"
           "/Recordings/RE0001")
    _row(stack, "rec-twilio-1", "twilio", ref)

    _, answer = _link(stack, "rec-twilio-1")
    status, _, audio = _get(answer["url"])

    assert status == 200 and audio == fake.audio("RE0001")


@pytest.mark.parametrize(("provider", "ref"), [
    ("mango", "MToxMDA1NzU5Mzo0ODE6NjI0MzQ2"),
    ("zadarma", "1458832388.1585217"),
])
def test_an_api_recording_is_fetched_through_a_one_time_url_never_shown(
    stack, provider, ref
):
    call_id = f"rec-{provider}-1"
    _row(stack, call_id, provider, ref)
    _, answer = _link(stack, call_id)
    handed = len(fake.SERVER.one_time)
    fetched = len(fake.SERVER.fetches)

    first = _get(answer["url"])
    again = _get(answer["url"])

    assert first[0] == again[0] == 200
    assert first[2] == again[2] == fake.audio(ref)
    assert first[1]["Content-Type"] == "audio/mpeg"
    # Each play asked the API for a fresh one-time URL and used it up.
    paths = [x["path"] for x in fake.SERVER.fetches[fetched:]]
    assert len([x for x in paths if x.startswith("/media/")]) == 2
    assert len(fake.SERVER.one_time) == handed
    assert "/media/" not in json.dumps(answer)
    assert len(_logged(stack, "recording_played", call_id)) == 2


@pytest.mark.parametrize(("provider", "secrets"), [
    ("mango", {"mango_api_key": fake.MANGO_KEY, "mango_api_salt": "wrong"}),
    ("zadarma", {"zadarma_api_key": fake.ZADARMA_KEY, "zadarma_secret": "wrong"}),
])
def test_credentials_the_provider_refuses_are_an_outage_not_a_lost_recording(
    provider, secrets
):
    apis = {"mango": f"{fake.SERVER.url}/vpbx", "zadarma": fake.SERVER.url}
    src = recordings.source(provider, "rec-1", secrets, True, apis)

    with pytest.raises(TransientError, match=r"answered (401|403)"):
        recordings.fetch(provider, src)


def test_a_recording_of_an_unknown_provider_gets_no_link(stack):
    _row(stack, "rec-sipuni-1", "sipuni", "rec-id-1")

    status, body = _link(stack, "rec-sipuni-1")

    assert (status, body["error"]["code"]) == (501, "recording_unsupported")
    assert _logged(stack, "recording_link", "rec-sipuni-1") == []


@pytest.mark.parametrize(("call_id", "provider", "ref", "status", "code"), [
    ("rec-gone-1", "generic", "/rec/gone.mp3", 404, "recording_gone"),
    ("rec-broken-1", "uis", "/rec/broken.mp3", 503, "provider_unavailable"),
    ("rec-mango-gone", "mango", "gone-1", 404, "recording_gone"),
    ("rec-mango-broken", "mango", "broken-1", 503, "provider_unavailable"),
    ("rec-zadarma-gone", "zadarma", "gone-2", 404, "recording_gone"),
    ("rec-zadarma-broken", "zadarma", "broken-2", 503, "provider_unavailable"),
])
def test_what_cannot_be_played_says_why(stack, call_id, provider, ref, status,
                                        code):
    url_ref = ref if provider in recordings.API_PROVIDERS else fake.SERVER.url + ref
    _row(stack, call_id, provider, url_ref)

    _, answer = _link(stack, call_id)
    played, _, body = _get(answer["url"])

    assert (played, json.loads(body)["error"]["code"]) == (status, code)


def test_a_call_without_a_recording_gets_no_link(stack):
    _row(stack, "rec-none-1", "generic", None)

    status, body = _link(stack, "rec-none-1")

    assert status == 404 and body["error"]["code"] == "no_recording"
