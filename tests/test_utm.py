"""The UTM standard: findings on links, normalisation, the dictionary, the builder
and the operator commands."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest

from ops import utm as ops_utm
from shared import utm
from shared.errors import BadRequest, CallTrackError, ConfigError

ROOT = Path(__file__).parent.parent
DATA = ROOT / "tests" / "data" / "utm"
GOOD = (
    "https://kuhni.example/?utm_source=google&utm_medium=cpc"
    "&utm_campaign=kitchen_msk_leads_202511"
)


def brief(findings: list[utm.Finding]) -> list[tuple[str, str, str, str | None]]:
    """(severity, code, field, suggestion) of each finding, in order."""
    return [(f.severity, f.code, f.field, f.suggestion) for f in findings]


def run_ops(argv: list[str]) -> int:
    """Run a subcommand the way ``python -m ops`` does once ops.utm is listed."""
    parser = argparse.ArgumentParser(prog="python -m ops")
    sub = parser.add_subparsers(dest="command", required=True)
    ops_utm.register(sub)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CallTrackError:
        return 2


# --- Transliteration and normal form ---------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Кухни Москва", "kukhni_moskva"),
        ("Йошкар-Ола", "yoshkar_ola"),
        ("Щёлково", "shchelkovo"),
        ("Объявление №1", "obyavlenie_no1"),
        ("Подъезд", "podezd"),
        ("купить кухню +в москве", "kupit_kukhnyu_v_moskve"),
        ("Київ", "kiiv"),
        ("  CPC  ", "cpc"),
        ("Sitelink 1", "sitelink_1"),
        ("50% скидка!", "50_skidka"),
        ("a__b--c", "a_b_c"),
        ("!!!", ""),
    ],
)
def test_normal_form_transliterates_lowers_and_joins_words(raw, expected):
    assert utm.normal_form(raw) == expected


def test_normal_form_keeps_macros_verbatim_and_separates_them():
    google = utm.default_dictionary().platforms["google"].macro_re

    assert utm.normal_form("KW {keyword}", google) == "kw_{keyword}"
    assert utm.normal_form("{campaignid}{adgroupid}", google) == (
        "{campaignid}_{adgroupid}"
    )
    assert utm.normal_form("{ifmobile:mob}", google) == "{ifmobile:mob}"


def test_normal_form_cuts_the_input_then_the_result_never_inside_a_macro():
    google = utm.default_dictionary().platforms["google"].macro_re

    # The input is cut at 200 characters before anything else.
    assert utm.normal_form("a" * 300) == "a" * 200
    assert utm.normal_form("b" * 195 + " {keyword}", google) == "b" * 195 + "_key"
    # Transliteration lengthens text: the result is cut again, between tokens.
    assert utm.normal_form("щ" * 48 + " {keyword}", google) == "shch" * 48
    assert utm.normal_form("щ" * 49 + " д") == "shch" * 49 + "_d"
    assert utm.normal_form("щ" * 49 + " домик") == "shch" * 49 + "_dom"


# --- A table of links and their exact findings -----------------------------

LINKS = [
    pytest.param(
        GOOD + "&utm_content=a1_red_1200x1200&utm_term={keyword}",
        [],
        id="clean-google-link",
    ),
    pytest.param(
        GOOD.replace("google", "yandex") + "&utm_content={ad_id}&utm_term={keyword}",
        [],
        id="clean-yandex-link-with-macros",
    ),
    pytest.param(
        "https://kuhni.example/?utm_source=vk&utm_medium=cpm"
        "&utm_campaign=kitchen_spb_reach_202512&utm_content={{banner_id}}_v2",
        [],
        id="clean-vk-link-with-macro-and-text",
    ),
    pytest.param(
        "https://kuhni.example/?utm_source=Google&utm_medium=CPC"
        "&utm_campaign=Кухни Москва&utm_term={keyword}",
        [
            ("error", "not_lowercase", "utm_source", "google"),
            ("error", "not_lowercase", "utm_medium", "cpc"),
            ("error", "non_latin", "utm_campaign", "kukhni_moskva"),
            ("error", "whitespace", "utm_campaign", "kukhni_moskva"),
            ("error", "campaign_format", "utm_campaign", None),
        ],
        id="upper-case-cyrillic-and-spaces",
    ),
    pytest.param(
        "https://kuhni.example/?utm_source=google&utm_medium=cpc"
        "&utm_campaign=kitchen-msk-leads-202511",
        [("error", "bad_character", "utm_campaign", "kitchen_msk_leads_202511")],
        id="hyphens-instead-of-underscores",
    ),
    pytest.param(
        "https://kuhni.example/?utm_source=google_&utm_medium=cpc"
        "&utm_campaign=kitchen__msk_leads_202511",
        [
            ("error", "bad_separator", "utm_source", "google"),
            ("error", "bad_separator", "utm_campaign", "kitchen_msk_leads_202511"),
        ],
        id="stray-and-doubled-separators",
    ),
    pytest.param(
        "https://kuhni.example/?utm_source=fb&utm_medium=ppc"
        "&utm_campaign=kitchen_moskva_lead_202511&utm_content={{ad.id}}",
        [
            ("warning", "alias", "utm_source", "meta"),
            ("warning", "alias", "utm_medium", "cpc"),
            ("warning", "alias", "utm_campaign", "kitchen_msk_leads_202511"),
            ("warning", "alias", "utm_campaign", "kitchen_msk_leads_202511"),
        ],
        id="aliases-are-warnings-with-the-standard-value",
    ),
    pytest.param(
        "https://kuhni.example/?utm_source=unisender&utm_medium=emial"
        "&utm_campaign=kitchen_mars_leeds_202513",
        [
            ("warning", "unknown_value", "utm_source", None),
            ("error", "unknown_value", "utm_medium", "email"),
            ("error", "campaign_part_unknown", "utm_campaign", None),
            (
                "error",
                "campaign_part_unknown",
                "utm_campaign",
                "kitchen_mars_leads_202513",
            ),
            ("error", "campaign_month", "utm_campaign", None),
        ],
        id="unlisted-values-and-a-month-that-does-not-exist",
    ),
    pytest.param(
        "https://kuhni.example/?utm_source=google&utm_medium=cpc"
        "&utm_campaign={campaignid}&utm_term={{campaign_id}}&utm_content={creativ}",
        [
            ("error", "macro_not_allowed", "utm_campaign", None),
            ("error", "campaign_format", "utm_campaign", None),
            ("error", "macro_unknown", "utm_content", "{creative}"),
            ("error", "macro_unknown", "utm_term", "{campaignid}"),
        ],
        id="macros-misplaced-misspelt-or-from-another-platform",
    ),
    pytest.param(
        "https://kuhni.example/?UTM_Source=google&utm_medium=cpc&utm_medium=cpm"
        "&utm_id=17&utm_content=%7Bcreative%7D&gclid=x",
        [
            ("error", "parameter_case", "utm_source", "utm_source"),
            ("error", "duplicate", "utm_medium", None),
            ("warning", "unknown_parameter", "utm_id", None),
            ("error", "macro_encoded", "utm_content", "{creative}"),
            ("error", "missing", "utm_campaign", None),
        ],
        id="parameter-names-repeats-extras-encoded-macros-and-a-gap",
    ),
    pytest.param(
        "https://kuhni.example/?utm_source=google&utm_medium=cpc"
        "&utm_campaign=kitchen_msk_leads_202511&utm_term=%E2%80%94%E2%80%94",
        [
            ("error", "non_latin", "utm_term", None),
            ("error", "unusable", "utm_term", None),
        ],
        id="a-value-with-nothing-usable",
    ),
    pytest.param(
        GOOD + "&utm_content=" + "a" * 250,
        [("warning", "too_long", "utm_content", "a" * 200)],
        id="a-value-over-the-limit",
    ),
    pytest.param(
        "kuhni.example/?utm_source=google",
        [("error", "url_invalid", "url", None)],
        id="no-scheme",
    ),
    pytest.param(
        "https://kuhni.example/",
        [
            ("error", "missing", "utm_source", None),
            ("error", "missing", "utm_medium", None),
            ("error", "missing", "utm_campaign", None),
        ],
        id="untagged-link",
    ),
]


@pytest.mark.parametrize(("url", "expected"), LINKS)
def test_validate_url_reports_exactly_the_expected_findings(url, expected):
    assert brief(utm.validate_url(url)) == expected


def test_findings_say_what_was_expected_and_what_was_found():
    url = (
        "https://kuhni.example/?utm_source=google&utm_medium=CPC"
        "&utm_campaign=kitchen_msk_leads_202513"
    )

    findings = utm.validate_url(url)

    assert [f.to_dict() for f in findings] == [
        {
            "code": "not_lowercase",
            "field": "utm_medium",
            "value": "CPC",
            "message": "Expected utm_medium in lower case, found 'CPC'.",
            "suggestion": "cpc",
            "severity": "error",
        },
        {
            "code": "campaign_month",
            "field": "utm_campaign",
            "value": "kitchen_msk_leads_202513",
            "message": (
                "Expected the month part of utm_campaign as a real month yyyymm, "
                "found '202513'."
            ),
            "suggestion": None,
            "severity": "error",
        },
    ]


def test_the_docs_list_exactly_the_finding_codes_the_checks_produce():
    docs = (ROOT / "docs" / "utm.md").read_text(encoding="utf-8")
    table = docs.split("## Findings")[1].split("## The dictionary")[0]
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", table, re.MULTILINE))

    produced = {f.code for case in LINKS for f in utm.validate_url(case.values[0])}
    _, built = utm.compose_link("https://k.example/?utm_term=x", "vk", CAMPAIGN)
    produced |= {f.code for f in built}

    assert documented == produced


def test_an_unknown_macro_is_named_with_the_closest_one_of_that_platform():
    url = GOOD.replace("google", "yandex") + "&utm_term={keywords}"

    [finding] = utm.validate_url(url)

    assert finding.message == "Expected a yandex macro in utm_term, found '{keywords}'."
    assert finding.suggestion == "{keyword}"


# --- The assign path -------------------------------------------------------


def test_touch_values_are_stored_normal_with_the_raw_values_beside_them():
    params = {
        "utm_source": "Яндекс",
        "utm_medium": " CPC ",
        "utm_campaign": "Кухни_Москва_лиды_202511",
        "utm_term": "купить кухню",
    }

    normal, raw, findings = utm.normalise_touch_utm(params)

    assert normal == {
        "utm_source": "yandex",
        "utm_medium": "cpc",
        "utm_campaign": "kukhni_msk_leads_202511",
        "utm_content": None,
        "utm_term": "kupit_kukhnyu",
    }
    assert raw == {**params, "utm_content": None}
    assert brief(findings) == [
        ("error", "non_latin", "utm_source", "yandex"),
        ("warning", "alias", "utm_source", "yandex"),
        ("error", "not_lowercase", "utm_medium", "cpc"),
        ("error", "whitespace", "utm_medium", "cpc"),
        ("error", "non_latin", "utm_campaign", "kukhni_msk_leads_202511"),
        ("warning", "alias", "utm_campaign", "kukhni_msk_leads_202511"),
        ("warning", "alias", "utm_campaign", "kukhni_msk_leads_202511"),
        ("error", "non_latin", "utm_term", "kupit_kukhnyu"),
        ("error", "whitespace", "utm_term", "kupit_kukhnyu"),
    ]


def test_a_touch_without_utm_values_has_no_findings():
    normal, raw, findings = utm.normalise_touch_utm(
        {"utm_source": None, "utm_medium": "", "utm_term": "   ", "gclid": "x"}
    )

    assert normal == dict.fromkeys(utm.UTM_FIELDS)
    assert raw == {
        "utm_source": None,
        "utm_medium": "",
        "utm_campaign": None,
        "utm_content": None,
        "utm_term": "   ",
    }
    assert findings == []


def test_a_touch_value_over_the_limit_is_cut_and_reported():
    normal, raw, findings = utm.normalise_touch_utm({"utm_content": "x" * 5000})

    assert normal["utm_content"] == "x" * 200
    assert raw["utm_content"] == "x" * 200
    assert brief(findings) == [("warning", "too_long", "utm_content", "x" * 200)]
    assert findings[0].message == (
        "Expected utm_content of at most 200 characters, found 5000."
    )


def test_a_touch_keeps_its_platforms_unsubstituted_macros():
    normal, _, findings = utm.normalise_touch_utm(
        {
            "utm_source": "google",
            "utm_term": "{keyword}",
            "utm_content": "{{banner_id}}",
        }
    )

    assert normal["utm_term"] == "{keyword}"
    assert normal["utm_content"] == "banner_id"
    assert brief(findings) == [("error", "macro_unknown", "utm_content", None)]


# --- The dictionary --------------------------------------------------------


def test_a_site_dictionary_extends_the_default():
    site = utm.load_dictionary(DATA / "site_dictionary.toml")
    url = (
        "https://kuhni.example/?utm_source=2gis&utm_medium=paid_social"
        "&utm_campaign=kukhni_tula_leads_202511"
    )

    assert brief(utm.validate_url(url, site)) == [
        ("warning", "alias", "utm_campaign", "kitchen_tula_leads_202511"),
    ]
    assert brief(utm.validate_url(url)) == [
        ("warning", "unknown_value", "utm_source", None),
        ("error", "unknown_value", "utm_medium", None),
        ("error", "campaign_part_unknown", "utm_campaign", None),
    ]


def test_a_site_dictionary_can_close_a_set_the_default_leaves_open():
    site = utm.load_dictionary(DATA / "site_dictionary.toml")
    url = (
        "https://kuhni.example/?utm_source=unisender&utm_medium=email"
        "&utm_campaign=bathroom_msk_leads_202511"
    )

    assert brief(utm.validate_url(url, site)) == [
        ("error", "unknown_value", "utm_source", None),
        ("error", "campaign_part_unknown", "utm_campaign", None),
    ]
    assert utm.validate_url(url) == [
        utm.Finding(
            "unknown_value",
            "utm_source",
            "unisender",
            "Expected a listed utm_source value, found 'unisender'.",
            None,
            "warning",
        )
    ]


def test_a_dictionary_that_is_not_toml_is_a_config_error():
    path = DATA / "broken_dictionary.toml"

    with pytest.raises(ConfigError) as caught:
        utm.load_dictionary(path)

    assert caught.value.message.startswith(
        f"Expected TOML in the UTM dictionary {str(path)!r}, found: "
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            {"medium": {"aliases": {"paid": "ppc_paid"}}},
            "Expected medium.aliases.paid in the UTM dictionary to be an unlisted "
            "key naming a listed value, found 'ppc_paid'.",
        ),
        (
            {"campaign": {"region": {"values": ["Moscow"]}}},
            "Expected campaign.region.values in the UTM dictionary to be normal "
            "values (lower case Latin, digits, '_'), found 'Moscow'.",
        ),
        (
            {"campaign": {"goal": {"values": ["lead_gen"]}}},
            "Expected campaign.goal.values in the UTM dictionary to be single words "
            "(a campaign part has no '_'), found 'lead_gen'.",
        ),
        (
            {"platforms": {"google": {"macros": ["keyword"]}}},
            "Expected platforms.google.macros in the UTM dictionary to be macros "
            "such as '{keyword}' or '__CID__', found 'keyword'.",
        ),
        (
            {"platforms": {"google": {"template": {"utm_term": "{kw}"}}}},
            "Expected platforms.google.template.utm_term in the UTM dictionary to "
            "be macros of google, found '{kw}'.",
        ),
        (
            {"sources": {"values": ["x"]}},
            "Expected the top level in the UTM dictionary to be a table of "
            "campaign, medium, platforms, source, found 'sources'.",
        ),
    ],
)
def test_a_dictionary_that_breaks_the_format_names_the_key(extra, message):
    with pytest.raises(ConfigError) as caught:
        utm.extend_dictionary(extra)

    assert caught.value.message == message


def test_the_default_dictionary_is_read_once():
    assert utm.default_dictionary() is utm.default_dictionary()
    assert utm.load_dictionary() is utm.default_dictionary()


# --- The link builder ------------------------------------------------------

CAMPAIGN = {"vertical": "kitchen", "region": "msk", "goal": "leads", "month": "202511"}
TAGS = "utm_source={}&utm_medium=cpc&utm_campaign=kitchen_msk_leads_202511"


@pytest.mark.parametrize(
    ("platform", "auto"),
    [
        ("google", "&utm_content={creative}&utm_term={keyword}"),
        ("yandex", "&utm_content={ad_id}&utm_term={keyword}"),
        ("vk", "&utm_content={{banner_id}}"),
        ("meta", "&utm_content={{ad.id}}&utm_term={{adset.id}}"),
        ("tiktok", "&utm_content=__CID__&utm_term=__AID__"),
    ],
)
def test_a_built_link_carries_the_platforms_auto_parameters(platform, auto):
    link = utm.build_link("https://kuhni.example/catalog", platform, CAMPAIGN)

    expected = "https://kuhni.example/catalog?" + TAGS.format(platform) + auto
    assert link == expected
    assert utm.validate_url(link) == []


def test_the_builder_normalises_parts_and_keeps_other_parameters_and_fragment():
    campaign = {**CAMPAIGN, "vertical": "Kitchen", "region": "Москва"}

    link, findings = utm.compose_link(
        "https://kuhni.example?ref=1&utm_source=old#form",
        "google",
        campaign,
        content="Sitelink 1",
    )

    assert link == (
        "https://kuhni.example/?ref=1&"
        + TAGS.format("google")
        + "&utm_content=sitelink_1&utm_term={keyword}#form"
    )
    assert brief(findings) == [
        ("warning", "not_lowercase", "utm_campaign", "kitchen_msk_leads_202511"),
        ("warning", "non_latin", "utm_campaign", "kitchen_msk_leads_202511"),
        ("warning", "alias", "utm_campaign", "kitchen_msk_leads_202511"),
        ("warning", "not_lowercase", "utm_content", "sitelink_1"),
        ("warning", "whitespace", "utm_content", "sitelink_1"),
        ("warning", "replaced", "utm_source", None),
    ]


def test_the_builder_refuses_a_campaign_that_breaks_the_standard():
    campaign = {**CAMPAIGN, "month": "202513"}

    with pytest.raises(BadRequest) as caught:
        utm.build_link("https://kuhni.example/", "google", campaign)

    assert caught.value.code == "utm_campaign_month"
    assert caught.value.message == (
        "Expected the month part of utm_campaign as a real month yyyymm, "
        "found '202513'."
    )


def test_the_builder_refuses_an_unknown_platform():
    with pytest.raises(BadRequest) as caught:
        utm.build_link("https://kuhni.example/", "myspace", CAMPAIGN)

    assert caught.value.message == (
        "Expected a platform from the dictionary (google, meta, tiktok, vk, yandex), "
        "found 'myspace'."
    )


# --- The operator commands -------------------------------------------------


def test_lint_of_clean_links_exits_0(capsys):
    assert run_ops(["utm-lint", str(DATA / "clean_links.txt")]) == 0

    assert capsys.readouterr().out == "6 links checked: 0 errors, 0 warnings.\n"


def test_lint_with_only_warnings_exits_0(capsys):
    assert run_ops(["utm-lint", str(DATA / "warnings_only.txt")]) == 0

    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "2 links checked: 0 errors, 3 warnings."


def test_lint_of_a_csv_with_errors_exits_1_and_names_each_line(capsys):
    path = str(DATA / "bad_links.csv")

    assert run_ops(["utm-lint", path]) == 1

    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"{path}:3: error not_lowercase utm_source: Expected utm_source in lower "
        "case, found 'Yandex'. Suggestion: yandex",
        f"{path}:3: error not_lowercase utm_medium: Expected utm_medium in lower "
        "case, found 'CPC'. Suggestion: cpc",
        f"{path}:3: error non_latin utm_campaign: Expected utm_campaign in Latin "
        "letters, found 'Кухни Москва'. Suggestion: kukhni_moskva",
        f"{path}:3: error whitespace utm_campaign: Expected utm_campaign without "
        "spaces (words joined by '_'), found 'Кухни Москва'. Suggestion: "
        "kukhni_moskva",
        f"{path}:3: error campaign_format utm_campaign: Expected utm_campaign as "
        "vertical_region_goal_month (4 parts joined by '_'), found 'kukhni_moskva' "
        "with 2.",
        f"{path}:5: error campaign_month utm_campaign: Expected the month part of "
        "utm_campaign as a real month yyyymm, found '202513'.",
        "3 links checked: 6 errors, 0 warnings.",
    ]


def test_lint_json_output_is_one_finding_per_line(capsys):
    path = str(DATA / "bad_links.csv")

    assert run_ops(["utm-lint", path, "--format", "json"]) == 1

    captured = capsys.readouterr()
    records = [json.loads(line) for line in captured.out.splitlines()]
    assert [(r["line"], r["code"]) for r in records] == [
        (3, "not_lowercase"),
        (3, "not_lowercase"),
        (3, "non_latin"),
        (3, "whitespace"),
        (3, "campaign_format"),
        (5, "campaign_month"),
    ]
    assert captured.err == "3 links checked: 6 errors, 0 warnings.\n"


def test_lint_uses_a_site_dictionary(tmp_path, capsys):
    links = tmp_path / "links.txt"
    links.write_text(
        "https://kuhni.example/?utm_source=2gis&utm_medium=paid_social"
        "&utm_campaign=sofa_tula_leads_202511\n"
    )

    assert run_ops(["utm-lint", str(links)]) == 1
    site = ["--dictionary", str(DATA / "site_dictionary.toml")]
    assert run_ops(["utm-lint", str(links), *site]) == 0


@pytest.mark.parametrize(
    "argv",
    [
        ["utm-lint", str(DATA / "missing.txt")],
        ["utm-lint", str(DATA / "no_links.txt")],
        ["utm-lint", str(DATA / "clean_links.txt"), "--dictionary", "/nonexistent"],
        [
            "utm-lint",
            str(DATA / "clean_links.txt"),
            "--dictionary",
            str(DATA / "broken_dictionary.toml"),
        ],
    ],
    ids=["missing-file", "no-links", "missing-dictionary", "broken-dictionary"],
)
def test_lint_exits_2_when_input_cannot_be_read(argv):
    assert run_ops(argv) == 2


def test_lint_exits_2_on_a_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "links.csv"
    path.write_bytes("url\nhttps://kuhni.example/?utm_source=Гугл\n".encode("cp1251"))

    assert run_ops(["utm-lint", str(path)]) == 2


def test_build_prints_the_tagged_link(capsys):
    argv = ["utm-build", "--platform", "yandex", "--vertical", "kitchen"]
    argv += ["--region", "spb", "--goal", "calls", "--month", "202511"]

    assert run_ops([*argv, "https://kuhni.example/"]) == 0

    assert capsys.readouterr().out == (
        "https://kuhni.example/?utm_source=yandex&utm_medium=cpc"
        "&utm_campaign=kitchen_spb_calls_202511&utm_content={ad_id}"
        "&utm_term={keyword}\n"
    )


def test_build_with_a_part_outside_the_dictionary_exits_1_and_prints_no_link(capsys):
    argv = ["utm-build", "--platform", "google", "--vertical", "kitchen"]
    argv += ["--region", "mars", "--goal", "leads", "--month", "202511"]

    assert run_ops([*argv, "https://kuhni.example/"]) == 1

    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "error campaign_part_unknown utm_campaign: Expected a listed region in "
        "utm_campaign, found 'mars'.\n"
    )


def test_build_without_every_campaign_part_exits_2():
    argv = ["utm-build", "--platform", "google", "--vertical", "kitchen"]

    assert run_ops([*argv, "https://kuhni.example/"]) == 2
