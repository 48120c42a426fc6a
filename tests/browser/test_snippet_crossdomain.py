"""Cross-domain: links to the site's other domains carry the visitor and the
touch, and the snippet there picks them up; other links stay as they are."""

from __future__ import annotations

import json
import time
from urllib.parse import quote

import pytest

from tests.browser.harness import PARTNER, SHOP

pytestmark = pytest.mark.browser

PAID = "?utm_source=google&utm_medium=cpc&utm_campaign=brand&gclid=G-42"


@pytest.fixture
def two_sites(site):
    """shop.example.test links to shop.partner.test; both name each other."""
    partner = site.pages.url(PARTNER, "/x/partner?ref=menu#top")
    links = (
        f"<a id='partner' href='{partner}'>Partner</a>"
        "<a id='elsewhere' href='https://elsewhere.test/'>Elsewhere</a>"
    )
    body = "<p id='main'>8 (495) 123-00-00</p>" + links
    site.serve("/x/shop", body, domains="partner.test", consent="granted")
    site.serve("/x/partner", body, domains="example.test", consent="granted")
    return site


def test_a_link_to_another_domain_carries_the_visitor_and_touch(two_sites, open_tab):
    url = two_sites.pages.url
    tab = open_tab(url(SHOP, "/x/shop" + PAID), referer="https://www.google.com/")
    on_shop = tab.number()

    tab.page.click("#partner")
    tab.page.wait_for_url(lambda u: u.startswith(url(PARTNER, "/x/partner")))
    on_partner = tab.number()

    shop_body, partner_body = tab.assigns()
    assert on_partner["visitor_id"] == on_shop["visitor_id"]
    assert partner_body["visitor_id"] == shop_body["visitor_id"]
    assert partner_body["session_id"] == shop_body["session_id"]
    assert partner_body["last_touch"] == shop_body["last_touch"]
    assert partner_body["first_touch"] == shop_body["last_touch"]
    assert partner_body["last_non_direct_touch"]["gclid"] == "G-42"
    # The parameter is gone from the address bar and from the page URL sent.
    assert tab.page.url == url(PARTNER, "/x/partner?ref=menu#top")
    assert "_ct" not in partner_body["page_url"]
    assert tab.page.get_attribute("#elsewhere", "href") == "https://elsewhere.test/"
    assert tab.problems() == []


def test_an_old_decorated_link_is_not_honoured(two_sites, open_tab):
    """A decorated URL shared later (here 5 minutes old) adopts nobody."""
    url = two_sites.pages.url
    stale = json.dumps(
        [
            "Visitor_old_1",
            "Session_old_1",
            {"utm_source": "x"},
            int(time.time() * 1000) - 5 * 60_000,
        ]
    )
    tab = open_tab(url(PARTNER, "/x/partner?_ct=" + quote(stale)))
    tab.number()

    body = tab.assigns()[0]
    assert body["visitor_id"] != "Visitor_old_1"
    assert body["session_id"] != "Session_old_1"
    assert "_ct" not in tab.page.url
