"""Properties of UTM normalisation that must hold for any input at all."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from shared import utm

DICTIONARY = utm.default_dictionary()
GOOGLE = DICTIONARY.platforms["google"].macro_re
MACROS = sorted({m for p in DICTIONARY.platforms.values() for m in p.macros})
# Findings about how a value is written: a normal value never has any.
FORM_CODES = {
    "too_long",
    "not_lowercase",
    "non_latin",
    "whitespace",
    "bad_character",
    "bad_separator",
    "unusable",
}

# Text as it arrives: Cyrillic, separators, braces, known macros, and any code
# point at all (surrogates included, as a JSON body can carry them).
tricky = st.sampled_from(list("абвгдеёжзийклмнопрстуфхцчшщъыьэюяЁЙЪ _-{}.%+'|"))
any_char = st.characters(exclude_categories=())
fragments = st.one_of(
    st.text(alphabet=st.one_of(tricky, any_char), max_size=30),
    st.sampled_from(MACROS),
    st.sampled_from(["kitchen_msk_leads_202511", "CPC", "Google", "fb", "__"]),
)
raw_values = st.lists(fragments, max_size=12).map("".join)
long_values = st.builds(lambda text, n: text * n, raw_values, st.integers(1, 60))
maybe_values = st.one_of(st.none(), raw_values, long_values)
touches = st.fixed_dictionaries({field: maybe_values for field in utm.UTM_FIELDS})

words = st.from_regex(r"[a-z0-9]{1,12}", fullmatch=True)
normal_values = (
    st.lists(
        st.one_of(words, st.sampled_from(DICTIONARY.platforms["google"].macros)),
        min_size=1,
        max_size=20,
    )
    .map("_".join)
    .filter(lambda value: len(value) <= utm.MAX_VALUE_CHARS)
)


@settings(max_examples=400, deadline=None)
@given(raw_values, st.sampled_from([None, GOOGLE, DICTIONARY.any_macro_re]))
def test_normal_form_is_idempotent_and_conforming(text, macro_re):
    once = utm.normal_form(text, macro_re)

    assert utm.normal_form(once, macro_re) == once
    assert once == "" or utm.conforms(once, macro_re)


@settings(max_examples=300, deadline=None)
@given(normal_values)
def test_a_normal_value_is_left_as_it_is(value):
    assert utm.conforms(value, GOOGLE)
    assert utm.normal_form(value, GOOGLE) == value


@settings(max_examples=400, deadline=None)
@given(touches)
# Once cut a value one character past the limit (a negative slice).
@example(dict.fromkeys(utm.UTM_FIELDS) | {"utm_term": "{source_type}00" * 12})
def test_a_touch_never_raises_and_each_value_is_normal_or_reported(params):
    normal, raw, findings = utm.normalise_touch_utm(params)

    assert set(normal) == set(raw) == set(utm.UTM_FIELDS)
    for field in utm.UTM_FIELDS:
        value = params[field]
        assert raw[field] == (None if value is None else value[: utm.MAX_VALUE_CHARS])
        macro_re = (
            DICTIONARY.macro_re_for(normal["utm_source"])
            if field in utm.MACRO_FIELDS
            else None
        )
        if normal[field] is not None:
            assert utm.conforms(normal[field], macro_re)
        elif value is not None and value.strip():
            codes = {f.code for f in findings if f.field == field}
            assert "unusable" in codes


@settings(max_examples=400, deadline=None)
@given(touches)
def test_normalising_a_touch_twice_changes_nothing(params):
    normal, _, _ = utm.normalise_touch_utm(params)

    again, _, findings = utm.normalise_touch_utm(normal)

    assert again == normal
    assert [f for f in findings if f.code in FORM_CODES | {"alias"}] == []


@settings(max_examples=300, deadline=None)
@given(st.one_of(raw_values, raw_values.map(lambda q: "https://kuhni.example/?" + q)))
def test_validate_url_never_raises_and_every_finding_is_a_sentence(url):
    for finding in utm.validate_url(url):
        assert finding.severity in (utm.ERROR, utm.WARNING)
        assert finding.message.startswith("Expected ")
        assert finding.message.endswith(".")


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(sorted(DICTIONARY.platforms)),
    st.from_regex(r"[a-z][a-z0-9]{1,29}", fullmatch=True),
    st.sampled_from(DICTIONARY.campaign_parts[1].values.values),
    st.sampled_from(DICTIONARY.campaign_parts[2].values.values),
    st.integers(2000, 2099),
    st.integers(1, 12),
)
def test_every_built_link_passes_the_lint(
    platform, vertical, region, goal, year, month
):
    campaign = {
        "vertical": vertical,
        "region": region,
        "goal": goal,
        "month": f"{year}{month:02d}",
    }

    link = utm.build_link("https://kuhni.example/", platform, campaign)

    assert utm.validate_url(link) == []
