"""utm_check: the UTM standard over HTTP for forms and spreadsheet scripts, and a
site's own dictionary kept in Firestore."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from ops.__main__ import main as ops_main
from shared import utm
from shared.errors import BadRequest, ConfigError
from shared.utm import service
from tests.conftest import Client

DATA = Path(__file__).parent / "data" / "utm"
SITE_TOML = (DATA / "site_dictionary.toml").read_text()
GOOD = (
    "https://kuhni.example/?utm_source=google&utm_medium=cpc"
    "&utm_campaign=kitchen_msk_leads_202511"
)
MESSY = (
    "https://kuhni.example/p?x=1&UTM_Source=Google&utm_medium=PPC"
    "&utm_campaign=Кухни%20Москва&utm_term=%7Bkeyword%7D&utm_medium=cpm#top"
)
PARTS = {"vertical": "kitchen", "region": "msk", "goal": "leads", "month": "202511"}


def brief(findings: list[dict]) -> list[tuple[str, str, str, str | None]]:
    return [(f["severity"], f["code"], f["field"], f["suggestion"]) for f in findings]


@pytest.fixture
def client(stack):
    return Client(stack.urls["utm_check"], origin="https://forms.example.test")


# --- normalise_url -------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (GOOD, GOOD),
        (
            MESSY,
            "https://kuhni.example/p?x=1&utm_source=google&utm_medium=cpc"
            "&utm_campaign=kukhni_moskva&utm_term={keyword}#top",
        ),
        # Unusable values are dropped; utm_id is not ours to touch.
        (
            "http://a.example?utm_source=!!!&utm_id=7&utm_medium=Email",
            "http://a.example/?utm_id=7&utm_medium=email",
        ),
        ("not a link", None),
        ("ftp://a.example/?utm_source=google", None),
    ],
)
def test_normalise_url_rewrites_only_the_utm_values(url, expected):
    assert utm.normalise_url(url) == expected


def test_a_normalised_url_is_normal_and_normalising_it_again_changes_nothing():
    once = utm.normalise_url(MESSY)

    again = utm.normalise_url(once)
    codes = {f.code for f in utm.validate_url(once)}

    assert again == once
    # Only what normalising cannot fix is left: the campaign's shape.
    assert codes == {"campaign_format"}


# --- The service, without HTTP -------------------------------------------------


def test_check_links_reports_each_link_in_order_with_totals():
    answer = service.check_links({"urls": [GOOD, MESSY]}, utm.default_dictionary())

    good, messy = answer["results"]
    assert (answer["ok"], answer["links"]) == (False, 2)
    assert good == {
        "url": GOOD,
        "ok": True,
        "errors": 0,
        "warnings": 0,
        "findings": [],
        "normalised_url": GOOD,
    }
    assert brief(messy["findings"]) == [
        ("error", "parameter_case", "utm_source", "utm_source"),
        ("error", "macro_encoded", "utm_term", "{keyword}"),
        ("error", "duplicate", "utm_medium", None),
        ("error", "not_lowercase", "utm_source", "google"),
        ("error", "not_lowercase", "utm_medium", "cpc"),
        ("warning", "alias", "utm_medium", "cpc"),
        ("error", "non_latin", "utm_campaign", "kukhni_moskva"),
        ("error", "whitespace", "utm_campaign", "kukhni_moskva"),
        ("error", "campaign_format", "utm_campaign", None),
    ]
    assert messy["findings"] == [f.to_dict() for f in utm.validate_url(MESSY)]
    assert (messy["errors"], messy["warnings"]) == (8, 1)
    assert (answer["errors"], answer["warnings"]) == (8, 1)
    assert messy["normalised_url"] == utm.normalise_url(MESSY)


def test_an_empty_cell_is_a_finding_not_a_refused_batch():
    answer = service.check_links({"urls": ["", GOOD]}, utm.default_dictionary())

    assert [r["ok"] for r in answer["results"]] == [False, True]
    assert brief(answer["results"][0]["findings"]) == [
        ("error", "url_invalid", "url", None)
    ]
    assert answer["results"][0]["normalised_url"] is None


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, "bad_request"),
        ({"url": GOOD, "urls": [GOOD]}, "bad_request"),
        ({"urls": []}, "field"),
        ({"urls": GOOD}, "field"),
        ({"urls": [GOOD] * (service.MAX_LINKS + 1)}, "field"),
        ({"urls": [GOOD, 5]}, "field"),
        ({"url": None}, "field"),
        ({"urls": ["https://a.example/?q=" + "x" * 2048]}, "field_size"),
        ({"links": [GOOD]}, "field"),
    ],
)
def test_check_links_refuses_a_malformed_body(body, code):
    with pytest.raises(BadRequest) as caught:
        service.check_links(body, utm.default_dictionary())

    assert caught.value.code == code


def test_check_values_normalises_as_the_assign_path_stores():
    body = {"utm_source": "FB", "utm_medium": "cpc", "utm_campaign": "Кухни Москва"}

    answer = service.check_values(body, utm.default_dictionary())

    normal, _, findings = utm.normalise_touch_utm(body)
    assert (
        answer["values"]
        == normal
        == {
            "utm_source": "meta",
            "utm_medium": "cpc",
            "utm_campaign": "kukhni_moskva",
            "utm_content": None,
            "utm_term": None,
        }
    )
    assert answer["findings"] == [f.to_dict() for f in findings]
    assert answer["ok"] is False


def test_check_values_refuses_unknown_fields_and_wrong_types():
    for body in ({"utm_id": "5"}, {"utm_source": 5}, {"utm_term": "x" * 501}):
        with pytest.raises(BadRequest):
            service.check_values(body, utm.default_dictionary())


def test_build_returns_the_link_or_null_with_the_findings():
    dictionary = utm.default_dictionary()
    body = {"url": "https://kuhni.example/", "platform": "yandex", "campaign": PARTS}

    built = service.build(
        dict(body, campaign={**PARTS, "region": "Москва"}), dictionary
    )
    broken = service.build(
        dict(body, campaign={**PARTS, "month": "202513"}), dictionary
    )

    # What the builder fixes itself ("Москва" -> msk) is a warning.
    assert built["link"] == (
        "https://kuhni.example/?utm_source=yandex&utm_medium=cpc"
        "&utm_campaign=kitchen_msk_leads_202511&utm_content={ad_id}"
        "&utm_term={keyword}"
    )
    assert (built["ok"], built["errors"], built["warnings"]) == (True, 0, 2)
    assert brief(built["findings"]) == [
        ("warning", "non_latin", "utm_campaign", "kitchen_msk_leads_202511"),
        ("warning", "alias", "utm_campaign", "kitchen_msk_leads_202511"),
    ]
    assert broken["link"] is None
    assert ("error", "campaign_month", "utm_campaign", None) in brief(
        broken["findings"]
    )


def test_describe_lists_what_a_form_offers():
    described = service.describe(utm.parse_site_dictionary(SITE_TOML))

    parts = {p["name"]: p for p in described["campaign"]["parts"]}
    assert described["source"]["closed"] is True
    assert "2gis" in described["source"]["values"]
    assert parts["vertical"]["values"] == ["kitchen", "wardrobe", "sofa"]
    assert parts["vertical"]["pattern"] is None
    assert parts["month"]["kind"] == "month"
    assert described["platforms"]["google"]["template"] == {
        "utm_content": "{creative}",
        "utm_term": "{keyword}",
    }
    json.dumps(described)  # JSON-ready as it is


def test_a_site_dictionary_text_is_checked_like_a_file():
    assert "2gis" in utm.parse_site_dictionary(SITE_TOML).source.values
    for text in ("[source\n", "[medium]\nvalues = ['Paid Social']\n", "x = 1\n"):
        with pytest.raises(ConfigError):
            utm.parse_site_dictionary(text)
    with pytest.raises(ConfigError):
        utm.parse_site_dictionary("# " + "x" * utm._sites.MAX_TOML_BYTES)


# --- Site dictionaries in Firestore ---------------------------------------------


def test_site_dictionaries_are_read_once_per_ttl(fs):
    now = [0.0]
    cache = utm.SiteDictionaries(fs, ttl_s=30, clock=lambda: now[0])
    utm.put_site_dictionary(fs, "kuhni", SITE_TOML)

    own, is_own = cache.get("kuhni")
    utm.delete_site_dictionary(fs, "kuhni")
    cached, still_own = cache.get("kuhni")
    now[0] = 31.0
    fresh, fresh_own = cache.get("kuhni")

    assert is_own and still_own and cached is own
    assert "2gis" in own.source.values
    assert (fresh, fresh_own) == (utm.default_dictionary(), False)


def test_a_broken_dictionary_is_never_stored(fs):
    with pytest.raises(ConfigError):
        utm.put_site_dictionary(fs, "kuhni", "[medium]\nvalues = ['Paid Social']\n")
    with pytest.raises(BadRequest):
        utm.put_site_dictionary(fs, "Kuhni Site", SITE_TOML)

    assert list(fs.collection(utm.COLLECTION).stream()) == []


def test_the_ops_command_puts_shows_and_deletes_a_site_dictionary(
    stack, tmp_path, capsys
):
    broken = tmp_path / "broken.toml"
    broken.write_text("[medium]\nvalues = ['Paid Social']\n")

    assert ops_main(["utm-site-dictionary", "--site", "kuhni"]) == 1
    assert ops_main(["utm-site-dictionary", "--site", "kuhni", str(broken)]) == 2
    path = str(DATA / "site_dictionary.toml")
    assert ops_main(["utm-site-dictionary", "--site", "kuhni", path]) == 0
    assert ops_main(["utm-site-dictionary", "--site", "kuhni", path]) == 0
    capsys.readouterr()
    assert ops_main(["utm-site-dictionary", "--site", "kuhni"]) == 0
    shown = capsys.readouterr().out
    assert ops_main(["utm-site-dictionary", "--site", "kuhni", "--delete"]) == 0
    assert ops_main(["utm-site-dictionary", "--site", "kuhni", "--delete"]) == 0

    assert shown == SITE_TOML
    assert utm.get_site_dictionary_text(stack.firestore(), "kuhni") is None


# --- Over HTTP -----------------------------------------------------------------


def test_checking_links_over_http(client):
    resp = client.call("POST", "/", {"urls": [GOOD, MESSY]})

    body = resp.json()
    assert resp.status == 200
    assert resp.headers["access-control-allow-origin"] == "*"
    assert resp.headers["cache-control"] == "no-store"
    assert body["dictionary"] == "default"
    assert body == {
        "dictionary": "default",
        **service.check_links({"urls": [GOOD, MESSY]}, utm.default_dictionary()),
    }
    assert [r["ok"] for r in body["results"]] == [True, False]


def test_one_link_as_json(client):
    resp = client.call(
        "POST",
        "/",
        {"url": "https://a.example/?utm_source=google&utm_medium=CPC"},
        content_type="application/json",
    )

    (result,) = resp.json()["results"]
    assert resp.status == 200
    assert brief(result["findings"]) == [
        ("error", "missing", "utm_campaign", None),
        ("error", "not_lowercase", "utm_medium", "cpc"),
    ]
    assert result["normalised_url"] == (
        "https://a.example/?utm_source=google&utm_medium=cpc"
    )


def test_values_build_and_dictionary_over_http(client):
    values = client.call("POST", "/values", {"utm_source": "ВКонтакте"}).json()
    built = client.call(
        "POST",
        "/build",
        {"url": "https://kuhni.example/", "platform": "google", "campaign": PARTS},
    ).json()
    unknown = client.call(
        "POST",
        "/build",
        {"url": "https://kuhni.example/", "platform": "myspace", "campaign": PARTS},
    )
    described = client.call("GET", "/dictionary")

    assert values["values"]["utm_source"] == "vk"
    assert brief(values["findings"]) == [
        ("error", "non_latin", "utm_source", "vk"),
        ("warning", "alias", "utm_source", "vk"),
    ]
    assert built["ok"] is True
    assert built["link"] == (
        "https://kuhni.example/?utm_source=google&utm_medium=cpc"
        "&utm_campaign=kitchen_msk_leads_202511&utm_content={creative}"
        "&utm_term={keyword}"
    )
    assert unknown.status == 400
    assert unknown.json()["error"]["code"] == "utm_platform"
    assert unknown.headers["access-control-allow-origin"] == "*"
    assert described.status == 200
    assert described.json() == {
        "dictionary": "default",
        **service.describe(utm.default_dictionary()),
    }


def test_the_preflight_allows_any_origin(client):
    resp = client.call("OPTIONS", "/values")

    assert resp.status == 204
    assert resp.headers["access-control-allow-origin"] == "*"
    assert "POST" in resp.headers["access-control-allow-methods"]
    assert resp.headers["access-control-allow-headers"] == "Content-Type"


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "code"),
    [
        ("POST", "/", {"raw": b"{not json"}, 400, "json"),
        ("POST", "/", {"raw": b"[1, 2]"}, 400, "json"),
        ("POST", "/", {"body": {"urls": []}}, 400, "field"),
        ("POST", "/", {"body": {"url": GOOD, "extra": 1}}, 400, "field"),
        (
            "POST",
            "/",
            {"raw": b'{"url": "a"}', "content_type": "text/csv"},
            415,
            "unsupported_media_type",
        ),
        (
            "POST",
            "/",
            {"raw": json.dumps({"urls": ["x" * 2000] * 140}).encode()},
            413,
            "too_large",
        ),
        ("POST", "/", {"raw": b'{"a":' * 9 + b"1" + b"}" * 9}, 400, "too_deep"),
        ("GET", "/", {}, 400, "method"),
        ("POST", "/dictionary", {"body": {}}, 400, "method"),
        ("POST", "/nope", {"body": {}}, 400, "route"),
        ("POST", "/?site=Not%20A%20Site", {"body": {"url": GOOD}}, 400, "site_id"),
        ("POST", "/build", {"body": {"url": GOOD, "platform": "google"}}, 400, "field"),
        (
            "POST",
            "/build",
            {
                "body": {
                    "url": GOOD,
                    "platform": "google",
                    "campaign": {"vertical": "kitchen"},
                }
            },
            400,
            "utm_campaign_parts",
        ),
    ],
)
def test_bad_requests_are_refused_with_a_reason(
    client, method, path, kwargs, status, code
):
    resp = client.call(method, path, **kwargs)

    assert resp.status == status
    assert resp.json()["error"]["code"] == code
    assert resp.headers["access-control-allow-origin"] == "*"


def test_a_site_uses_its_own_dictionary_once_stored(client, fs):
    link = (
        "https://kuhni.example/?utm_source=2gis&utm_medium=paid_social"
        "&utm_campaign=kukhni_tula_leads_202511"
    )
    before = client.call("POST", "/?site=kuhni", {"url": link}).json()
    utm.put_site_dictionary(fs, "kuhni", SITE_TOML)
    after = client.call("POST", "/?site=kuhni", {"url": link}).json()
    other = client.call("POST", "/?site=other", {"url": link}).json()
    parts = client.call("GET", "/dictionary?site=kuhni").json()["campaign"]["parts"]

    assert before["dictionary"] == "default"
    assert brief(before["results"][0]["findings"]) == [
        ("warning", "unknown_value", "utm_source", None),
        ("error", "unknown_value", "utm_medium", None),
        ("error", "campaign_part_unknown", "utm_campaign", None),
    ]
    assert after["dictionary"] == "site"
    assert brief(after["results"][0]["findings"]) == [
        ("warning", "alias", "utm_campaign", "kitchen_tula_leads_202511")
    ]
    assert after["results"][0]["normalised_url"].endswith(
        "utm_campaign=kitchen_tula_leads_202511"
    )
    assert other["dictionary"] == "default"
    assert parts[0]["values"] == ["kitchen", "wardrobe", "sofa"]


def test_a_broken_stored_dictionary_is_a_logged_server_error(client, fs, stack):
    fs.collection(utm.COLLECTION).document("kuhni").set({"toml": "[source\n"})

    resp = client.call("POST", "/?site=kuhni", {"url": GOOD})

    assert resp.status == 500
    assert resp.json()["error"]["code"] == "utm_dictionary"
    deadline = time.monotonic() + 5
    while "utm_dictionary" not in stack.log_text("utm_check"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
