"""The provider registry and the request and secrets types every provider shares."""

from __future__ import annotations

import pytest

from shared.errors import NotFound
from shared.providers import PROVIDERS, ProviderSecrets, WebhookRequest, get
from shared.providers import generic, mango, twilio, uis, zadarma


def test_registry_hands_out_each_modules_entry_points():
    """Every provider is registered under its name with its verify and parse."""
    modules = {
        "twilio": twilio,
        "mango": mango,
        "zadarma": zadarma,
        "uis": uis,
        "generic": generic,
    }

    assert {name: (p.verify, p.parse) for name, p in PROVIDERS.items()} == {
        name: (module.verify, module.parse) for name, module in modules.items()
    }
    assert get("mango").name == "mango"


def test_unknown_provider_is_not_found():
    """A URL naming no registered provider is a 404."""
    with pytest.raises(NotFound) as caught:
        get("asterisk")
    assert str(caught.value) == (
        "Expected a call provider among twilio, mango, zadarma, uis, generic, "
        "found 'asterisk'."
    )


def test_request_headers_are_read_case_insensitively():
    """Header names are stored lower-cased, whatever the server gave."""
    req = WebhookRequest.build(
        "post", "https://h.example/x", {"X-Twilio-Signature": "s"}
    )

    assert (req.method, req.header("x-twilio-signature"), req.headers) == (
        "POST",
        "s",
        {"x-twilio-signature": "s"},
    )


def test_build_parses_query_and_form_body():
    """query comes from the URL, form only from a form-encoded body."""
    req = WebhookRequest.build(
        "POST",
        "https://h.example/x?secret=a%20b&site=1",
        {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
        b"event=NOTIFY_START&caller_id=%2B79161234567",
    )

    assert req.query == {"secret": "a b", "site": "1"}
    assert req.form == {"event": "NOTIFY_START", "caller_id": "+79161234567"}


def test_json_body_leaves_form_empty():
    """A JSON body is not read as a form."""
    req = WebhookRequest.build(
        "POST", "https://h.example/x", {"Content-Type": "application/json"}, b'{"a":1}'
    )

    assert (req.form, req.json_object()) == ({}, {"a": 1})


def test_secrets_never_appear_in_repr():
    """Logging the secrets object shows field names only."""
    secrets = ProviderSecrets(twilio_auth_token="tok123", generic_secret="gen456")

    assert repr(secrets) == "ProviderSecrets()"
