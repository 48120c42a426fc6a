"""Touches and sessions across page views: first, last and last non-direct
touch, the 30-minute session, same-site referrers."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.browser.harness import BLOG, SHOP

pytestmark = pytest.mark.browser

PAID = "/t/landing?utm_source=Google&utm_medium=CPC&utm_campaign=Spring&gclid=Gc-1_x"
AUTUMN = "/t/landing?utm_source=Yandex&utm_medium=cpc&utm_campaign=Autumn&yclid=777"
BODY = "<p id='main'>8 (495) 123-00-00</p><a id='blog' href='{blog}'>Блог</a>"


@pytest.fixture
def touch_pages(site):
    """Landing, about and blog pages of a site whose visitors gave consent."""
    body = BODY.format(blog=site.pages.url(BLOG, "/t/post"))
    for path in ("/t/landing", "/t/about", "/t/post"):
        site.serve(path, body, consent="granted")
    return site


def visit(open_tab, url, referer=None, at=None, context=None):
    """One page view; returns the assign body it sent and the tab."""
    if at is not None:
        context.clock.set_system_time(at)
    tab = open_tab(url, referer=referer)
    tab.number()
    assigns = tab.assigns()
    tab.page.close()
    return (assigns[-1] if assigns else None), tab


def campaign(touch: dict) -> dict:
    return {k: v for k, v in touch.items() if k not in ("at", "landing_page")}


def test_paid_then_direct_then_new_campaign_keeps_the_right_touches(
    touch_pages, open_tab, context, fs
):
    url = touch_pages.pages.url
    start = dt.datetime.now(dt.UTC)

    google = "https://www.google.com/"
    paid, _ = visit(open_tab, url(SHOP, PAID), google, start, context)
    expected_paid = {
        "utm_source": "google",
        "utm_medium": "cpc",
        "utm_campaign": "spring",
        "gclid": "Gc-1_x",
        "referrer": "https://www.google.com/",
    }
    assert campaign(paid["first_touch"]) == expected_paid
    assert paid["first_touch"]["landing_page"] == url(SHOP, PAID)
    assert paid["last_touch"] == paid["first_touch"]
    assert paid["last_non_direct_touch"] == paid["first_touch"]

    # A direct return after 31 minutes: a new session whose last touch is
    # direct, while the paid touch stays first and last non-direct.
    back, _ = visit(
        open_tab, url(SHOP, "/t/about"), None, start + dt.timedelta(minutes=31), context
    )
    assert back["visitor_id"] == paid["visitor_id"]
    assert back["session_id"] != paid["session_id"]
    assert campaign(back["last_touch"]) == {}
    assert back["last_touch"]["landing_page"] == url(SHOP, "/t/about")
    assert back["first_touch"] == paid["first_touch"]
    assert back["last_non_direct_touch"] == paid["first_touch"]

    # A new campaign within the session replaces the last touches at once.
    autumn, _ = visit(
        open_tab,
        url(SHOP, AUTUMN),
        "https://yandex.ru/",
        start + dt.timedelta(minutes=33),
        context,
    )
    assert autumn["session_id"] not in (paid["session_id"], back["session_id"])
    assert campaign(autumn["last_touch"]) == {
        "utm_source": "yandex",
        "utm_medium": "cpc",
        "utm_campaign": "autumn",
        "yclid": "777",
        "referrer": "https://yandex.ru/",
    }
    assert autumn["last_non_direct_touch"] == autumn["last_touch"]
    assert autumn["first_touch"] == paid["first_touch"]

    stored = fs.collection("sessions").document(autumn["session_id"]).get().to_dict()
    assert stored["visitor_id"] == paid["visitor_id"]
    assert stored["first_touch"]["utm_source"] == "google"
    assert stored["last_touch"]["utm_campaign"] == "autumn"
    assert stored["last_non_direct_touch"]["yclid"] == "777"


def test_a_session_ends_after_30_minutes_without_a_page_view(
    touch_pages, open_tab, context
):
    url = touch_pages.pages.url
    start = dt.datetime.now(dt.UTC)

    first, _ = visit(open_tab, url(SHOP, PAID), None, start, context)
    later, _ = visit(
        open_tab, url(SHOP, "/t/about"), None, start + dt.timedelta(minutes=29), context
    )
    much_later, _ = visit(
        open_tab,
        url(SHOP, "/t/about"),
        None,
        start + dt.timedelta(minutes=29 + 31),
        context,
    )

    assert later["session_id"] == first["session_id"]
    assert much_later["session_id"] != first["session_id"]
    assert much_later["visitor_id"] == first["visitor_id"]


def test_a_same_site_referrer_and_a_reload_are_no_new_touch(touch_pages, open_tab, fs):
    url = touch_pages.pages.url
    tab = open_tab(url(SHOP, PAID), referer="https://www.google.com/")
    landing = tab.number()

    # A reload keeps the campaign in the URL and the referrer: the same touch.
    tab.page.reload()
    tab.number()
    # Another host of the same site: the cookie on example.test carries the
    # visitor and the session; the touches stay with the server.
    tab.page.click("#blog")
    tab.page.wait_for_url(url(BLOG, "/t/post"))
    on_blog = tab.number()

    bodies = tab.assigns()
    assert len(bodies) == 3
    assert {b["session_id"] for b in bodies} == {landing["session_id"]}
    assert on_blog["visitor_id"] == landing["visitor_id"]
    assert bodies[1]["last_touch"] == bodies[0]["last_touch"]
    assert bodies[2]["referrer"] == url(SHOP, "/")  # the origin, by referrer policy
    assert "first_touch" not in bodies[2]  # nothing new to tell
    assert "last_touch" not in bodies[2]
    session = fs.collection("sessions").document(landing["session_id"]).get().to_dict()
    assert session["last_touch"]["gclid"] == "Gc-1_x"
    assert tab.problems() == []


def test_over_long_values_are_cut_so_the_request_is_not_refused(touch_pages, open_tab):
    url = touch_pages.pages.url
    long_query = f"?utm_source=google&utm_campaign={'x' * 600}&junk={'j' * 3000}"
    tab = open_tab(
        url(SHOP, "/t/landing" + long_query), referer="https://ya.ru/?" + "q" * 3000
    )

    tab.wait_text("#main", "8 (495) 765-43-21")
    body = tab.assigns()[0]
    assert tab.statuses == [200]
    assert len(body["page_url"]) == 2048
    assert len(body["referrer"]) <= 2048
    assert body["last_touch"]["utm_campaign"] == "x" * 200
    assert len(body["last_touch"]["landing_page"]) == 200


def test_every_click_id_is_kept_as_sent_and_utm_values_lower_cased(
    touch_pages, open_tab
):
    url = touch_pages.pages.url
    query = (
        "?UTM_SOURCE=ignored&utm_source=Google&utm_medium=CPC&utm_campaign=Brand"
        "&utm_content=Ad-B&utm_term=Plastic+Windows&gclid=Gc-A&gbraid=Gb-B"
        "&wbraid=Wb-C&yclid=Yc-D&fbclid=Fb-E"
    )
    tab = open_tab(url(SHOP, "/t/landing" + query))
    tab.number()

    assert campaign(tab.assigns()[0]["last_touch"]) == {
        "utm_source": "google",
        "utm_medium": "cpc",
        "utm_campaign": "brand",
        "utm_content": "ad-b",
        "utm_term": "plastic windows",
        "gclid": "Gc-A",
        "gbraid": "Gb-B",
        "wbraid": "Wb-C",
        "yclid": "Yc-D",
        "fbclid": "Fb-E",
    }


def test_ids_survive_a_lost_cookie_through_local_storage(touch_pages, open_tab, fs):
    """Browsers that cap or clear first-party cookies: the localStorage copy
    keeps the visitor, the session and its touches."""
    url = touch_pages.pages.url
    tab = open_tab(url(SHOP, PAID), referer="https://www.google.com/")
    landing = tab.number()
    assert "_ct" in {c["name"] for c in tab.page.context.cookies()}

    tab.page.context.clear_cookies()
    tab.page.close()  # a new tab: no sessionStorage copy either
    tab = open_tab(url(SHOP, "/t/about"))
    again = tab.number()

    body = tab.assigns()[-1]
    assert again["visitor_id"] == landing["visitor_id"]
    assert again["session_id"] == landing["session_id"]
    assert body["last_non_direct_touch"]["gclid"] == "Gc-1_x"
    # And the cookie is written again from it.
    cookies = {c["name"]: c for c in tab.page.context.cookies()}
    assert cookies["_ct"]["domain"] == ".example.test"
    assert landing["visitor_id"] in cookies["_ct"]["value"]
