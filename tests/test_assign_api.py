"""The assign function over HTTP, against the Firestore and Pub/Sub emulators."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import itertools
import time

import pytest

from tests.conftest import DEFAULT_NUMBER, ORIGIN, Client, numbers, wait_for

PAID = {"utm_source": "google", "utm_medium": "cpc", "utm_campaign": "kitchen_msk"}
ORGANIC = {
    "referrer": "https://www.google.com/",
    "landing_page": "https://shop.example.test/",
}
_ids = itertools.count(1)


def visit(touch=PAID, visitor_id=None, session_id=None, consent=True, **extra):
    n = next(_ids)
    return {
        "visitor_id": visitor_id or f"visitor-{n:06d}",
        "session_id": session_id or f"session-{n:06d}",
        "page_url": "https://shop.example.test/landing",
        "referrer": "",
        "first_touch": touch,
        "last_touch": touch,
        "consent": {"analytics": consent, "ads": consent},
        **extra,
    }


def docs(fs, collection):
    return [d.to_dict() | {"id": d.id} for d in fs.collection(collection).stream()]


def test_paid_session_gets_a_dynamic_number_with_a_lease(make_site, assign_client, fs):
    """A cpc visit holds a pool number, and the hold is in the log."""
    make_site(dynamic_numbers=numbers(3), display_format="+7 (###) ###-##-##")
    resp = assign_client.call("POST", "/?site=demo", visit())

    body = resp.json()
    assert resp.status == 200
    assert body["kind"] == "dynamic"
    assert body["number"] in numbers(3)
    assert (
        body["display"] == f"+7 (495) 555-{body['number'][-4:-2]}-{body['number'][-2:]}"
    )
    assert body["default"] == DEFAULT_NUMBER
    assert body["renew_in_s"] == 40
    assert body["shared"] is False
    holds = docs(fs, "holds")
    assert [(h["number"], h["session_id"], h["released"]) for h in holds] == [
        (body["number"], body["session_id"], False)
    ]
    number = fs.collection("numbers").document(body["number"]).get().to_dict()
    assert number["lease"]["session_id"] == body["session_id"]
    assert number["available_at"] == number["lease"]["expires_at"] + dt.timedelta(
        seconds=900
    )


def test_organic_session_gets_default_number_without_a_hold(
    make_site, assign_client, fs
):
    make_site(dynamic_numbers=numbers(3))
    resp = assign_client.call("POST", "/?site=demo", visit(ORGANIC))

    assert resp.json()["kind"] == "default"
    assert resp.json()["number"] == DEFAULT_NUMBER
    assert resp.json()["renew_in_s"] is None
    assert docs(fs, "holds") == []
    assert [s["number_kind"] for s in docs(fs, "sessions")] == ["default"]


def test_static_route_shows_channel_number_and_static_numbers_never_go_dynamic(
    make_site, assign_client, fs
):
    """Static numbers stand for their channel; the pool never hands them out."""
    billboard = ("+74955550900", {"utm_source": "billboard", "utm_medium": "offline"})
    make_site(
        static_numbers=[billboard],
        static_routes=[{"number": "+74955550900", "medium": "(none)"}],
    )
    direct = assign_client.call("POST", "/?site=demo", visit({}))
    paid = assign_client.call("POST", "/?site=demo", visit())

    assert (direct.json()["kind"], direct.json()["number"]) == (
        "static",
        "+74955550900",
    )
    assert (paid.json()["kind"], paid.json()["number"]) == ("default", DEFAULT_NUMBER)
    assert docs(fs, "holds") == []


def test_page_views_of_one_session_keep_the_number(make_site, assign_client):
    make_site(dynamic_numbers=numbers(5))
    first = visit()
    answers = {
        assign_client.call("POST", "/?site=demo", first).json()["number"]
        for _ in range(3)
    }

    assert len(answers) == 1


def test_returning_visitor_gets_the_same_number_within_cooldown(
    make_site, assign_client
):
    """Stickiness: a new session of the same visitor reuses its released number."""
    make_site(dynamic_numbers=numbers(6))
    first = visit()
    number = assign_client.call("POST", "/?site=demo", first).json()["number"]
    assign_client.call(
        "POST", "/release?site=demo", {"session_id": first["session_id"]}
    )

    again = assign_client.call(
        "POST", "/?site=demo", visit(visitor_id=first["visitor_id"])
    ).json()

    assert again["number"] == number
    assert again["session_id"] != first["session_id"]


def test_released_number_cools_down_then_returns_to_the_pool(make_site, assign_client):
    make_site(dynamic_numbers=numbers(1), cooldown_s=2)
    first = visit()
    number = assign_client.call("POST", "/?site=demo", first).json()["number"]
    assign_client.call(
        "POST", "/release?site=demo", {"session_id": first["session_id"]}
    )

    during = assign_client.call("POST", "/?site=demo", visit()).json()
    time.sleep(2.2)
    after = assign_client.call("POST", "/?site=demo", visit()).json()

    assert (during["kind"], during["number"]) == ("default", DEFAULT_NUMBER)
    assert (after["kind"], after["number"]) == ("dynamic", number)


def test_expired_lease_is_reused_after_cooldown_without_a_sweeper(
    make_site, assign_client, fs
):
    """A page that vanished without a release frees its number lazily."""
    make_site(dynamic_numbers=numbers(1), lease_s=1, cooldown_s=1)
    first = assign_client.call("POST", "/?site=demo", visit()).json()
    time.sleep(2.2)
    second = assign_client.call("POST", "/?site=demo", visit()).json()

    assert second["number"] == first["number"]
    assert second["session_id"] != first["session_id"]
    assert len(docs(fs, "holds")) == 2


def test_least_recently_released_numbers_come_first(make_site, assign_client):
    """Of 8 free numbers, a new visit gets one of the 4 released longest ago."""
    pool = numbers(8)
    make_site(dynamic_numbers=pool, cooldown_s=0)
    sessions = {}
    for _ in pool:
        v = visit()
        sessions[assign_client.call("POST", "/?site=demo", v).json()["number"]] = v
    release_order = list(reversed(pool))
    for number in release_order:
        assign_client.call(
            "POST", "/release?site=demo", {"session_id": sessions[number]["session_id"]}
        )
        time.sleep(0.01)

    picked = assign_client.call("POST", "/?site=demo", visit()).json()["number"]

    assert picked in release_order[:4]


def test_renew_extends_the_lease_and_release_is_idempotent(
    make_site, assign_client, fs
):
    make_site(dynamic_numbers=numbers(2))
    v = visit()
    first = assign_client.call("POST", "/?site=demo", v).json()
    time.sleep(0.05)
    renewed = assign_client.call(
        "POST",
        "/renew?site=demo",
        {"session_id": v["session_id"], "visitor_id": v["visitor_id"]},
    ).json()
    releases = [
        assign_client.call(
            "POST", "/release?site=demo", {"session_id": v["session_id"]}
        ).status
        for _ in range(2)
    ]

    assert renewed["number"] == first["number"]
    assert renewed["lease_expires_at"] > first["lease_expires_at"]
    assert releases == [204, 204]
    (hold,) = docs(fs, "holds")
    assert hold["released"] is True


def test_renew_of_an_unknown_session_is_404(make_site, assign_client):
    make_site(dynamic_numbers=numbers(1))
    resp = assign_client.call(
        "POST", "/renew?site=demo", {"session_id": "nosuch-session"}
    )

    assert (resp.status, resp.json()["error"]["code"]) == (404, "unknown_session")


def test_exhausted_pool_with_default_policy_gives_default_number(
    make_site, assign_client, fs
):
    make_site(dynamic_numbers=numbers(1))
    assign_client.call("POST", "/?site=demo", visit())
    second = assign_client.call("POST", "/?site=demo", visit()).json()

    assert (second["kind"], second["number"]) == ("default", DEFAULT_NUMBER)
    exhausted = [s for s in docs(fs, "sessions") if s.get("pool_exhausted")]
    assert len(exhausted) == 1
    assert len(docs(fs, "holds")) == 1


def test_exhausted_pool_with_share_policy_shares_least_recently_used_overflow(
    make_site, assign_client, fs
):
    make_site(
        dynamic_numbers=numbers(1),
        overflow_numbers=["+74955550801", "+74955550802"],
        overflow_policy="share",
    )
    assign_client.call("POST", "/?site=demo", visit())
    shared = [
        assign_client.call("POST", "/?site=demo", visit()).json() for _ in range(3)
    ]

    assert [s["shared"] for s in shared] == [True, True, True]
    assert {s["number"] for s in shared[:2]} == {"+74955550801", "+74955550802"}
    assert shared[2]["number"] == shared[0]["number"]
    overflow_holds = [h for h in docs(fs, "holds") if h["shared"]]
    assert len(overflow_holds) == 3


def test_concurrent_sessions_never_hold_one_number_twice(make_site, stack, fs):
    """20 clients on a 5-number pool: the hold log shows no overlapping holds."""
    pool = numbers(5)
    make_site(dynamic_numbers=pool, cooldown_s=0)

    def client_loop(i):
        client = Client(stack.urls["assign"], ip=f"198.51.100.{i + 1}")
        got = []
        for _ in range(6):
            v = visit()
            body = client.call("POST", "/?site=demo", v).json()
            got.append(body["kind"])
            if body["kind"] == "dynamic":
                client.call(
                    "POST", "/release?site=demo", {"session_id": v["session_id"]}
                )
        return got

    with concurrent.futures.ThreadPoolExecutor(20) as pool_exec:
        kinds = sum(pool_exec.map(client_loop, range(20)), [])

    holds = docs(fs, "holds")
    assert kinds.count("dynamic") == len(holds) > 5
    for number in pool:
        spans = sorted((h["from"], h["until"]) for h in holds if h["number"] == number)
        for (_, prev_until), (start, _) in zip(spans, spans[1:], strict=False):
            assert start >= prev_until, f"overlapping holds on {number}"


def test_bots_get_the_default_number_and_nothing_is_written(make_site, stack, fs):
    make_site(dynamic_numbers=numbers(2))
    client = Client(stack.urls["assign"])
    resp = client.call(
        "POST",
        "/?site=demo",
        visit(),
        headers={"User-Agent": "Mozilla/5.0 (compatible; Googlebot/2.1)"},
    )

    assert (resp.json()["kind"], resp.json()["number"]) == ("default", DEFAULT_NUMBER)
    assert docs(fs, "sessions") == [] and docs(fs, "holds") == []


# -- CORS ---------------------------------------------------------------------


def test_preflight_from_an_allowed_origin_is_answered(make_site, assign_client):
    make_site()
    resp = assign_client.call("OPTIONS", "/?site=demo")

    assert resp.status == 204
    assert resp.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in resp.headers["access-control-allow-methods"]


def test_other_origins_get_403_without_cors_headers(make_site, stack):
    make_site(dynamic_numbers=numbers(1))
    evil = Client(stack.urls["assign"], origin="https://evil.example")
    for method in ("OPTIONS", "POST"):
        resp = evil.call(method, "/?site=demo", visit() if method == "POST" else None)
        assert resp.status == 403
        assert "access-control-allow-origin" not in resp.headers
        assert resp.json()["error"]["code"] == "origin"


# -- bad input ----------------------------------------------------------------


@pytest.mark.parametrize(
    "path,raw,content_type,status,code",
    [
        ("/?site=demo", b"{not json", "text/plain", 400, "json"),
        ("/?site=demo", b"[1, 2]", "application/json", 400, "json"),
        ("/?site=demo", b"{}" + b" " * 17000, "text/plain", 413, "too_large"),
        (
            "/?site=demo",
            b"{}",
            "application/x-www-form-urlencoded",
            415,
            "unsupported_media_type",
        ),
        ("/?site=nosuch", b"{}", "text/plain", 404, "unknown_site"),
        ("/?site=demo", b'{"visitor_id": "short"}', "text/plain", 400, "field"),
        (
            "/?site=demo",
            b'{"last_touch": {"utm_source": "' + b"x" * 600 + b'"}}',
            "text/plain",
            400,
            "field_size",
        ),
        (
            "/?site=demo",
            b'{"last_touch": {"utm_source": 5}}',
            "text/plain",
            400,
            "field",
        ),
        (
            "/?site=demo",
            b'{"a":' * 20 + b"1" + b"}" * 20,
            "text/plain",
            400,
            "too_deep",
        ),
        ("/nosuch?site=demo", b"{}", "text/plain", 400, "route"),
    ],
)
def test_bad_input_gets_a_reason_and_writes_nothing(
    make_site, assign_client, fs, path, raw, content_type, status, code
):
    make_site(dynamic_numbers=numbers(2))
    resp = assign_client.call("POST", path, raw=raw, content_type=content_type)

    assert resp.status == status
    assert resp.json()["error"]["code"] == code
    assert resp.json()["error"]["message"].endswith(".")
    assert docs(fs, "sessions") == [] and docs(fs, "holds") == []


def test_one_client_hammering_is_rate_limited(make_site, stack):
    make_site()
    client = Client(stack.urls["assign"], ip="192.0.2.77")
    with concurrent.futures.ThreadPoolExecutor(10) as burst:
        statuses = list(
            burst.map(
                lambda _: client.call("POST", "/?site=demo", visit(ORGANIC)), range(60)
            )
        )

    limited = [r for r in statuses if r.status == 429]
    # Burst 30 plus 10/s refill while the burst lasts (well under 2 s).
    assert 30 <= 60 - len(limited) <= 50
    assert int(limited[0].headers["retry-after"]) >= 1
    assert limited[0].json()["error"]["code"] == "rate_limited"


# -- Pub/Sub -> BigQuery --------------------------------------------------------


def test_sessions_and_holds_reach_bigquery_through_pubsub(
    make_site, assign_client, stack
):
    make_site(dynamic_numbers=numbers(2))
    v = visit(dict(PAID, gclid="Cj0KCQ-test"))
    number = assign_client.call("POST", "/?site=demo", v).json()["number"]
    assign_client.call("POST", "/release?site=demo", {"session_id": v["session_id"]})

    sid = v["session_id"]
    sessions = wait_for(
        lambda: stack.query(
            "select source, medium, campaign, click_ids.gclid as gclid, number, "
            "number_kind, first_touch.source as first_source "
            "from `{dataset}.sessions` "
            f"where session_id = '{sid}'"
        )
    )
    holds = wait_for(
        lambda: (
            (
                rows := stack.query(
                    "select event, number, released from `{dataset}.number_holds` "
                    f"where session_id = '{sid}' order by event desc"
                )
            )
            and len(rows) == 2
            and rows
        )
    )

    assert sessions == [
        {
            "source": "google",
            "medium": "cpc",
            "campaign": "kitchen_msk",
            "gclid": "Cj0KCQ-test",
            "number": number,
            "number_kind": "dynamic",
            "first_source": "google",
        }
    ]
    assert holds == [
        {"event": "start", "number": number, "released": False},
        {"event": "release", "number": number, "released": True},
    ]


def test_next_page_of_a_session_after_release_starts_a_new_hold(
    make_site, assign_client, fs
):
    """Navigation releases on pagehide; the next page takes the number back."""
    make_site(dynamic_numbers=numbers(4))
    v = visit()
    first = assign_client.call("POST", "/?site=demo", v).json()
    assign_client.call("POST", "/release?site=demo", {"session_id": v["session_id"]})
    second = assign_client.call("POST", "/?site=demo", v).json()
    assign_client.call("POST", "/release?site=demo", {"session_id": v["session_id"]})

    holds = sorted(docs(fs, "holds"), key=lambda h: h["from"])
    assert second["number"] == first["number"]
    assert second["session_id"] == first["session_id"]
    assert [h["released"] for h in holds] == [True, True]
    assert holds[1]["from"] >= holds[0]["until"]
    number = fs.collection("numbers").document(first["number"]).get().to_dict()
    assert number["lease"]["released"] is True


def test_messy_utm_is_stored_normal_with_raw_kept_for_audit(
    make_site, assign_client, stack
):
    make_site(dynamic_numbers=numbers(1))
    v = visit(
        {"utm_source": "Google", "utm_medium": "CPC", "utm_campaign": "Кухни Москва"}
    )
    assign_client.call("POST", "/?site=demo", v)

    sid = v["session_id"]
    (row,) = wait_for(
        lambda: stack.query(
            "select source, medium, campaign, utm_raw.utm_source as raw_source, "
            "utm_raw.utm_campaign as raw_campaign, utm_findings "
            f"from `{{dataset}}.sessions` where session_id = '{sid}'"
        )
    )
    assert row == {
        "source": "google",
        "medium": "cpc",
        "campaign": "kukhni_moskva",
        "raw_source": "Google",
        "raw_campaign": "Кухни Москва",
        "utm_findings": ["campaign_format", "non_latin", "not_lowercase", "whitespace"],
    }
