"""The traffic simulator, the accuracy report and pool sizing."""

from __future__ import annotations

import datetime as dt
import itertools
import json

from ops.__main__ import main
from shared import warehouse
from simulator import run
from simulator.report import accuracy, render_html
from simulator.traffic import CHANNELS, Params, generate, peak_concurrent
from tests.conftest import wait_for

SMALL = Params(seed=5, visits_per_day=600)


def _fingerprint(visits):
    return [
        (
            v.visit_id,
            v.visitor,
            v.start,
            round(v.length_s, 6),
            v.channel.name,
            [(c.at, c.caller, c.window) for c in v.calls],
        )
        for v in visits
    ]


def test_the_same_seed_gives_the_same_traffic_and_another_seed_does_not():
    assert _fingerprint(generate(SMALL)) == _fingerprint(generate(SMALL))
    assert _fingerprint(generate(SMALL)) != _fingerprint(
        generate(Params(seed=6, visits_per_day=600))
    )


def test_every_call_carries_the_visit_that_produced_it():
    visits = generate(Params(seed=2, visits_per_day=3000))
    by_id = {v.visit_id: v for v in visits}
    calls = [c for v in visits for c in v.calls]
    windows = {c.window for c in calls}

    assert len(by_id) == len(visits) == 3000
    assert windows == {"during", "after", "later", "second"}
    for visit in visits:
        for call in visit.calls:
            assert by_id[call.visit_id] is visit
            if call.window == "during":
                assert visit.start < call.at <= visit.end
            else:
                assert call.at > visit.start
            if call.window in ("after", "later"):
                assert call.at >= visit.end
        assert len({c.caller for c in visit.calls}) <= 1
    # Callers are people: no two visits share one unless a visitor returns.
    owners = {}
    for visit in visits:
        for call in visit.calls:
            owners.setdefault(call.caller, set()).add(visit.visit_id)
    assert all(len(ids) == 1 for ids in owners.values())


def test_traffic_has_the_documented_shape():
    visits = generate(Params(seed=3, visits_per_day=4000))
    names = [v.channel.name for v in visits]
    starts = sorted(v.start.hour for v in visits)
    lengths = sorted(v.length_s for v in visits)

    assert {c.name for c in CHANNELS} == set(names)
    assert 100 < lengths[len(lengths) // 2] < 220  # median near 150 s
    assert starts.count(3) < starts.count(11) / 5  # night vs late morning
    assert sum(v.visitor != f"sim-visitor-{v.visit_id:06d}" for v in visits) > 400


def test_peak_concurrency_counts_overlapping_paid_visits():
    visits = generate(Params(seed=4, visits_per_day=500))
    paid = [v for v in visits if v.paid]
    # Brute force at every start: how many paid visits are open then.
    brute = max(sum(1 for o in paid if o.start <= v.start < o.end) for v in paid)

    assert peak_concurrent(visits) == brute


def test_score_counts_every_reachable_paid_call_once():
    visits = generate(SMALL)
    peak = peak_concurrent(visits)
    score = run.run_product(visits, peak, SMALL.seed)
    reachable = [
        c
        for v in visits
        if v.paid
        for c in v.calls
        if (c.at - v.end).total_seconds() <= run.REACH_S
    ]

    assert score.calls == len(reachable) > 0
    assert score.correct + score.wrong + score.unattributed == score.calls
    assert len(score.outcomes) == score.calls


def test_an_ample_pool_stitches_every_reachable_call_to_its_true_session():
    visits = generate(SMALL)
    score = run.run_product(visits, 5 * peak_concurrent(visits), SMALL.seed)

    assert (score.correct, score.exhausted) == (score.calls, 0)


def test_the_product_beats_the_naive_pool_at_the_peak_size():
    visits = generate(Params(seed=1, visits_per_day=3000))
    peak = peak_concurrent(visits)
    product = run.run_product(visits, peak, 1).to_dict()
    naive = run.run_naive(visits, peak, 1).to_dict()

    assert product["correct"] >= naive["correct"] + 0.05, (product, naive)
    assert product["unattributed"] < naive["unattributed"]


def test_a_strict_cooldown_leaves_calls_unattributed_under_pressure():
    visits = generate(SMALL)
    peak = peak_concurrent(visits)
    strict = run.run_product(visits, peak, 1, {"min_cooldown_s": 900})
    default = run.run_product(visits, peak, 1)

    assert strict.exhausted > default.exhausted
    assert strict.share("unattributed") > default.share("unattributed")


def test_pool_needed_is_the_smallest_size_reaching_the_target():
    visits = generate(SMALL)
    peak = peak_concurrent(visits)
    x = run.pool_needed(visits, peak, "product", 0.95, 1)

    assert x is not None
    assert run.run_product(visits, round(x * peak), 1).share("correct") >= 0.95
    below = max(1, round((x - 0.05) * peak))
    if below < round(x * peak):
        assert run.run_product(visits, below, 1).share("correct") < 0.95


def test_the_report_has_both_policies_a_chart_and_escapes_its_text():
    result = accuracy(SMALL, multiples=(0.8, 1.2))
    result["params"]["note"] = "<script>alert(1)</script>"
    page = render_html(result)

    assert {r["policy"] for r in result["rows"]} == {"product", "naive"}
    assert len(result["rows"]) == 4
    assert page.count("<polyline") == 2
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_the_accuracy_report_command_writes_html_and_json(tmp_path, capsys):
    code = main(
        [
            "accuracy-report",
            "--out",
            str(tmp_path),
            "--visits-per-day",
            "300",
            "--seed",
            "9",
        ]
    )

    data = json.loads((tmp_path / "accuracy.json").read_text())
    assert code == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "accuracy.html")
    assert data["visits"] == 300 and data["rows"]
    assert "<table>" in (tmp_path / "accuracy.html").read_text()


# -- against the emulators -------------------------------------------------------

T0 = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=2)
_ids = itertools.count()


def _hold(site, start_s, length_s, event="start", hold_id=None):
    hold_id = hold_id or f"h{next(_ids)}"
    start = T0 + dt.timedelta(seconds=start_s)
    return {
        "row_id": f"{hold_id}:{event}",
        "hold_id": hold_id,
        "event": event,
        "site_id": site,
        "number": "+74957000001",
        "session_id": f"s-{hold_id}",
        "visitor_id": f"v-{hold_id}",
        "held_from": start.isoformat(),
        "held_until": (start + dt.timedelta(seconds=length_s)).isoformat(),
        "reason": "pool",
        "shared": False,
        "released": event == "release",
    }


def _sizing(stack, site):
    sql = (warehouse.VIEWS_DIR / "pool_sizing.sql").read_text()
    rows = stack.query(f"SELECT * FROM ({sql}\n) WHERE site_id = '{site}'")
    return rows[0] if rows else None


def test_the_pool_sizing_view_finds_the_peak_of_final_holds(stack):
    site = f"size{next(_ids)}"
    # Three holds overlap at 100-110 s; the second was released early at 50 s,
    # so by its final state only two overlap there. Ends before starts at ties.
    rows = [
        _hold(site, 0, 200, hold_id=f"{site}a"),
        _hold(site, 20, 120, hold_id=f"{site}b"),
        _hold(site, 20, 30, event="release", hold_id=f"{site}b"),
        _hold(site, 100, 60, hold_id=f"{site}c"),
        _hold(site, 160, 100, hold_id=f"{site}d"),
        _hold(site, 3000, 60, hold_id=f"{site}e"),
    ]
    warehouse.insert_rows("number_holds", rows)

    found = wait_for(lambda: _sizing(stack, site))
    assert found["peak_concurrent"] == 2
    assert (found["seed_rule_low"], found["seed_rule_high"]) == (3, 3)
    assert found["busy_hours"] >= 1


def test_pool_size_recommends_from_the_sites_own_traffic(stack, capsys):
    site = f"size{next(_ids)}"
    holds, sessions = [], []
    for n in range(240):
        start_s = (n % 24) * 3600 + (n // 24) * 97
        holds.append(_hold(site, start_s, 150 + n % 5 * 30))
        sessions.append(
            {
                "row_id": f"{site}-s{n}",
                "session_id": f"{site}-s{n}",
                "site_id": site,
                "visitor_id": f"{site}-v{n}",
                "started_at": (T0 + dt.timedelta(seconds=start_s)).isoformat(),
                "source": "google",
                "medium": "cpc",
                "number_kind": "dynamic",
            }
        )
    warehouse.insert_rows("number_holds", holds)
    warehouse.insert_rows("sessions", sessions)
    wait_for(lambda: _sizing(stack, site))

    code = main(["pool-size", "--site", site, "--target", "0.9"])

    out = capsys.readouterr().out
    assert code == 0, out
    assert "peak concurrent holds: " in out and "seed rule (1.2-1.3x peak)" in out
    assert "recommendation: " in out and "numbers (" in out


def test_pool_size_without_traffic_is_a_clear_error(stack, capsys):
    assert main(["pool-size", "--site", "nothing-here"]) == 2
    assert "Expected holds and sessions of site nothing-here" in (
        capsys.readouterr().err
    )


def test_pool_watch_logs_utilisation_and_pressure(stack, make_site):
    from google.cloud import pubsub_v1

    from shared import clients

    pool = [f"+7495700{i:04d}" for i in range(4)]
    make_site(site_id="watched", dynamic_numbers=pool)
    client = stack.firestore()
    until = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    for number in pool[:4]:
        client.collection("numbers").document(number).update(
            {"lease": {"session_id": "x", "expires_at": until}}
        )

    publisher = pubsub_v1.PublisherClient()
    publisher.publish(
        clients.topic_path("pool-tick"),
        json.dumps({"tick": "pool-tick"}).encode(),
        type="tick",
    ).result(timeout=10)

    def logged():
        lines = [
            json.loads(x)
            for x in stack.log_text("pool_watch").splitlines()
            if x.startswith("{")
        ]
        return [x for x in lines if x.get("site_id") == "watched"]

    lines = wait_for(lambda: len(logged()) >= 2 and logged())
    events = {line["event"]: line for line in lines}
    assert events["pool_status"]["utilisation"] == 1.0
    assert events["pool_pressure"]["severity"] == "WARNING"
