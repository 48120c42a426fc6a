"""The number's life on a page: heartbeat while visible, release on pagehide, a
new view after a bfcache restore; and failures that leave the default number."""

from __future__ import annotations

import json
import socket

import pytest

from tests.browser.conftest import Site
from tests.browser.harness import DEFAULT, NUMBER, SHOP, page, snippet_tag
from tests.conftest import wait_for

pytestmark = pytest.mark.browser

BODY = "<p id='main'>8 (495) 123-00-00</p>"
SWAPPED = "8 (495) 765-43-21"

HIDE = """(hidden) => {
  Object.defineProperty(document, 'hidden', {value: hidden, configurable: true});
  Object.defineProperty(document, 'visibilityState',
                        {value: hidden ? 'hidden' : 'visible', configurable: true});
  document.dispatchEvent(new Event('visibilitychange'));
}"""


def hold_of(fs, session_id: str) -> dict:
    holds = [
        d.to_dict()
        for d in fs.collection("holds").stream()
        if d.get("session_id") == session_id
    ]
    assert len(holds) == 1, holds
    return holds[0]


def test_the_heartbeat_renews_while_visible_and_pauses_while_hidden(site, open_tab, fs):
    site.configure(renew_s=1)
    path = site.serve("/l/heartbeat", BODY)
    tab = open_tab(site.pages.url(SHOP, path))
    answer = tab.number()
    assert answer["renew_in_s"] == 1
    first_until = hold_of(fs, answer["session_id"])["until"]

    with tab.page.expect_response(lambda r: "/renew?" in r.url) as renewed:
        pass
    assert renewed.value.status == 200
    assert tab.renews()[0] == {
        "visitor_id": answer["visitor_id"],
        "session_id": answer["session_id"],
    }
    assert hold_of(fs, answer["session_id"])["until"] > first_until

    tab.page.evaluate(HIDE, True)
    tab.page.wait_for_timeout(300)
    paused_at = len(tab.renews())
    tab.page.wait_for_timeout(2500)
    assert len(tab.renews()) == paused_at

    with tab.page.expect_response(lambda r: "/renew?" in r.url, timeout=900):
        tab.page.evaluate(HIDE, False)  # renews at once on becoming visible
    assert tab.text("#main") == SWAPPED
    assert tab.problems() == []


def test_leaving_the_page_releases_the_number(site, open_tab, fs):
    path = site.serve("/l/release", BODY)
    site.pages.add("/l/next", "<p>A page without the snippet</p>")
    tab = open_tab(site.pages.url(SHOP, path))
    answer = tab.number()
    assert hold_of(fs, answer["session_id"])["released"] is False

    tab.page.goto(site.pages.url(SHOP, "/l/next"))  # pagehide: sendBeacon

    wait_for(lambda: hold_of(fs, answer["session_id"])["released"], timeout=10)
    number = fs.collection("numbers").document(NUMBER).get().to_dict()
    assert number["lease"]["released"] is True


def test_a_page_restored_from_the_bfcache_is_a_new_view(site, open_tab, fs):
    path = site.serve("/l/bfcache", BODY)
    tab = open_tab(site.pages.url(SHOP, path))
    answer = tab.number()

    tab.page.evaluate("""() => window.dispatchEvent(
      new PageTransitionEvent('pagehide', {persisted: true}))""")
    wait_for(lambda: hold_of(fs, answer["session_id"])["released"], timeout=10)
    tab.page.evaluate("""() => window.dispatchEvent(
      new PageTransitionEvent('pageshow', {persisted: true}))""")
    tab.wait_until("calltrack('number').then(n => n && n.number)")

    releases = [u for u, _ in tab.posts if "/release?" in u]
    assert len(releases) == 1
    assert len(tab.assigns()) == 2
    assert tab.assigns()[1]["session_id"] == answer["session_id"]
    assert tab.text("#main") == SWAPPED
    holds = [d.to_dict() for d in fs.collection("holds").stream()]
    assert sorted(h["released"] for h in holds) == [False, True]


def assert_default_kept(tab) -> None:
    tab.page.wait_for_timeout(2500)  # past the snippet's 1.5 s patience
    assert tab.text("#main") == "8 (495) 123-00-00"
    assert tab.page.get_attribute("#link", "href") == "tel:" + DEFAULT
    assert tab.page.evaluate("calltrack('number')") is None
    assert tab.script_problems() == []
    assert any(line.startswith("calltrack:") for line in tab.debug_lines())


FAILING = BODY + f"<a id='link' href='tel:{DEFAULT}'>call</a>"


def test_a_timeout_leaves_the_default_number(site, open_tab):
    hang = site.pages.origin(SHOP) + "/hang"  # answers after 4 s
    path = site.serve("/l/timeout", FAILING, endpoint=hang)
    tab = open_tab(site.pages.url(SHOP, path))

    assert_default_kept(tab)
    assert tab.problems() == []
    assert any("TimeoutError" in line for line in tab.debug_lines())


def closed_port() -> int:
    """A local port that nothing listens on: a function that is down."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("failure", ["down", "500"])
def test_an_endpoint_that_is_down_or_failing_leaves_the_default_number(
    site, open_tab, failure
):
    if failure == "down":
        endpoint = f"http://127.0.0.1:{closed_port()}"
    else:
        endpoint = site.pages.origin(SHOP) + "/fail"
    path = site.serve(f"/l/{failure}", FAILING, endpoint=endpoint)
    tab = open_tab(site.pages.url(SHOP, path))

    assert_default_kept(tab)
    expected = "calltrack: TypeError" if failure == "down" else "calltrack: 500"
    assert any(line.startswith(expected) for line in tab.debug_lines())


def test_an_unknown_site_leaves_the_default_number(site, open_tab):
    tag = snippet_tag("no-such-site", site.endpoint)
    path = site.pages.add("/l/unknown", page(FAILING, tag))
    tab = open_tab(site.pages.url(SHOP, path))

    assert_default_kept(tab)
    assert tab.assigns()  # it did ask


def test_a_refused_origin_leaves_the_default_number(site, open_tab):
    site.configure(allowed_origins=["https://elsewhere.test"])
    path = site.serve("/l/refused", FAILING)
    tab = open_tab(site.pages.url(SHOP, path))

    assert_default_kept(tab)


def test_a_rejected_request_leaves_the_default_number_once(site, open_tab, context):
    """A 400 that the page may read (its origin is allowed), here for stored ids
    that the server refuses: the default number stays, the stored state is
    dropped, and the next page view starts afresh."""
    bad = json.dumps({"v": "not an id!", "s": "no", "t": 0})
    context.add_cookies(
        [{"name": "_ct", "value": bad, "domain": ".example.test", "path": "/"}]
    )
    path = site.serve("/l/rejected", FAILING, consent="granted")
    tab = open_tab(site.pages.url(SHOP, path))

    assert_default_kept(tab)
    assert tab.statuses == [400]
    assert "calltrack: 400" in tab.debug_lines()

    tab.page.reload()
    tab.wait_text("#main", SWAPPED)
    assert tab.statuses == [400, 200]
    assert tab.assigns()[1]["visitor_id"] != "not an id!"


def test_a_lost_lease_brings_a_new_number_that_replaces_the_old_one(
    site, make_site, open_tab, fs
):
    """The page slept past its lease and someone else took the number: the
    next renewal claims another, and the page shows it instead of the old one."""
    pool = {"+74993330001": "8 (499) 333-00-01", "+74993330002": "8 (499) 333-00-02"}
    relay = Site(
        "relay",
        site.endpoint,
        site.pages,
        make_site,
        {**site.config, "dynamic_numbers": list(pool), "renew_s": 1},
    )
    relay.configure()
    path = relay.serve("/l/relay", FAILING)
    tab = open_tab(site.pages.url(SHOP, path))
    first = tab.number()["number"]
    tab.wait_text("#main", pool[first])
    tab.page.evaluate(HIDE, True)  # no heartbeat: the lease may lapse
    tab.page.wait_for_timeout(300)

    taken = {"lease.hold_id": "someone-else", "lease.visitor_id": "someone-else"}
    fs.collection("numbers").document(first).update(taken)
    tab.page.evaluate(HIDE, False)

    (other,) = set(pool) - {first}
    tab.wait_text("#main", pool[other])
    assert tab.page.get_attribute("#link", "href") == "tel:" + other
    assert tab.number()["number"] == other
    assert tab.problems() == []
