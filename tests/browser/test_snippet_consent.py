"""Consent: what is stored and sent with it and without it, from Google Consent
Mode, from the API, and from a consent banner that updates Consent Mode."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.browser.harness import NUMBER, SHOP

pytestmark = pytest.mark.browser

GS1 = "GS1.1.1712345678.3.1.1712345999.0.0.0"
GS2 = "GS2.1.s1712345678$o3$g1$t1712345999$j60$l0$h0"
BODY = "<p id='main'>8 (495) 123-00-00</p>"
CONSENT_MODE = """<script>
  window.dataLayer = window.dataLayer || [];
  function gtag() { dataLayer.push(arguments); }
  gtag('consent', 'default', {ad_storage: 'denied', analytics_storage: 'denied'});
  gtag('consent', 'update', {ad_storage: '%s', analytics_storage: '%s'});
</script>"""
BANNER = """<button id="accept" onclick="gtag('consent', 'update',
  {ad_storage: 'granted', analytics_storage: 'granted'})">OK</button>"""
LANDING = "?utm_source=facebook&utm_medium=paid_social&fbclid=FbClick-1"


def analytics_cookies(context, session_cookie: str) -> None:
    """Cookies that GA4, Metrica and the Meta pixel would have set."""
    values = {
        "_ga": "GA1.1.123456789.1700000000",
        "_ga_ABC123XYZ": session_cookie,
        "_ym_uid": "1700000000123456789",
        "_fbp": "fb.1.1700000000000.987654321",
    }
    context.add_cookies(
        [
            {"name": k, "value": v, "domain": ".example.test", "path": "/"}
            for k, v in values.items()
        ]
    )


def stored(tab) -> dict:
    """Where the snippet kept its state: cookie, localStorage, sessionStorage."""
    cookies = {c["name"]: c for c in tab.page.context.cookies()}
    return {
        "cookie": cookies.get("_ct"),
        "local": tab.page.evaluate("localStorage.getItem('_ct')"),
        "session": tab.page.evaluate("sessionStorage.getItem('_ct')"),
    }


def test_without_consent_nothing_long_lived_is_stored_or_sent(
    site, open_tab, context, fs
):
    analytics_cookies(context, GS2)
    path = site.serve("/c/none", BODY)
    tab = open_tab(site.pages.url(SHOP, path + LANDING))

    tab.wait_text("#main", "8 (495) 765-43-21")
    body = tab.assigns()[0]
    assert body["consent"] == {"analytics": False, "ads": False}
    for key in ("ga_client_id", "ga_session_id", "ym_client_id", "fbp", "fbc"):
        assert body[key] is None, key
    assert body["last_touch"]["fbclid"] == "FbClick-1"  # the session's own attribution
    kept = stored(tab)
    assert kept["cookie"] is None
    assert kept["local"] is None
    assert kept["session"] is not None
    session = fs.collection("sessions").document(body["session_id"]).get().to_dict()
    assert session["consent"] == {"analytics": False, "ads": False}
    assert session["ids"] == {}


@pytest.mark.parametrize("session_cookie", [GS1, GS2], ids=["GS1", "GS2"])
def test_consent_mode_granted_sends_the_analytics_and_ad_ids(
    site, open_tab, context, fs, session_cookie
):
    analytics_cookies(context, session_cookie)
    path = site.serve("/c/granted", BODY, head=CONSENT_MODE % ("granted", "granted"))
    tab = open_tab(site.pages.url(SHOP, path + LANDING))

    tab.wait_text("#main", "8 (495) 765-43-21")
    body = tab.assigns()[0]
    touched = dt.datetime.fromisoformat(body["last_touch"]["at"])
    touch_ms = int(touched.timestamp() * 1000)
    assert body["consent"] == {"analytics": True, "ads": True}
    assert body["ga_client_id"] == "123456789.1700000000"
    assert body["ga_session_id"] == "1712345678"
    assert body["ym_client_id"] == "1700000000123456789"
    assert body["fbp"] == "fb.1.1700000000000.987654321"
    assert body["fbc"] == f"fb.1.{touch_ms}.FbClick-1"
    kept = stored(tab)
    assert kept["cookie"]["domain"] == ".example.test"
    assert kept["local"] is not None
    session = fs.collection("sessions").document(body["session_id"]).get().to_dict()
    assert session["consent"] == {"analytics": True, "ads": True}
    assert session["ids"]["ga_client_id"] == "123456789.1700000000"


def test_analytics_without_ads_consent_sends_no_ad_ids(site, open_tab, context):
    analytics_cookies(context, GS2)
    context.add_cookies(
        [
            {
                "name": "_fbc",
                "value": "fb.1.1700000000000.Old",
                "domain": ".example.test",
                "path": "/",
            }
        ]
    )
    path = site.serve("/c/analytics", BODY, head=CONSENT_MODE % ("denied", "granted"))
    tab = open_tab(site.pages.url(SHOP, path + LANDING))

    body = tab.assigns()[0] if tab.number() else None
    assert body["consent"] == {"analytics": True, "ads": False}
    assert body["ga_client_id"] == "123456789.1700000000"
    assert body["fbp"] is None
    assert body["fbc"] is None


def test_consent_given_through_the_api_is_stored_and_sent(site, open_tab, context):
    analytics_cookies(context, GS2)
    path = site.serve("/c/api", BODY)
    tab = open_tab(site.pages.url(SHOP, path))
    tab.wait_text("#main", "8 (495) 765-43-21")
    assert stored(tab)["cookie"] is None

    answer = tab.page.evaluate("calltrack('consent', {analytics: true, ads: false})")

    assert answer == {"analytics": True, "ads": False}
    first, second = tab.assigns()
    assert second["consent"] == {"analytics": True, "ads": False}
    assert second["session_id"] == first["session_id"]
    assert second["ga_client_id"] == "123456789.1700000000"
    assert second["fbp"] is None
    assert stored(tab)["cookie"] is not None
    assert tab.text("#main") == "8 (495) 765-43-21"

    # The next page remembers the answer; withdrawing it removes the cookie.
    tab.page.goto(site.pages.url(SHOP, path))
    tab.number()
    assert tab.assigns()[-1]["consent"] == {"analytics": True, "ads": False}
    tab.page.evaluate("calltrack('consent', {analytics: false, ads: false})")
    kept = stored(tab)
    assert kept["cookie"] is None
    assert kept["local"] is None
    assert tab.problems() == []


def test_a_banner_that_updates_consent_mode_is_noticed(site, open_tab, context):
    analytics_cookies(context, GS2)
    path = site.serve(
        "/c/banner", BODY + BANNER, head=CONSENT_MODE % ("denied", "denied")
    )
    tab = open_tab(site.pages.url(SHOP, path))
    tab.wait_text("#main", "8 (495) 765-43-21")

    tab.page.click("#accept")
    tab.wait_until("calltrack('ids').then(i => i.consent.ads)")
    tab.number()

    assert [b["consent"]["ads"] for b in tab.assigns()] == [False, True]
    assert tab.assigns()[1]["fbp"] == "fb.1.1700000000000.987654321"
    assert stored(tab)["cookie"] is not None
    assert tab.page.evaluate("calltrack('number')")["number"] == NUMBER


def test_an_existing_fbc_cookie_is_sent_as_it_is(site, open_tab, context):
    """Meta's own _fbc wins over one built from the fbclid."""
    analytics_cookies(context, GS1)
    fbc = {"name": "_fbc", "value": "fb.1.1700000000000.Old", "path": "/"}
    context.add_cookies([{**fbc, "domain": ".example.test"}])
    path = site.serve("/c/fbc", BODY, head=CONSENT_MODE % ("granted", "granted"))
    tab = open_tab(site.pages.url(SHOP, path + LANDING))
    tab.number()

    assert tab.assigns()[0]["fbc"] == "fb.1.1700000000000.Old"
