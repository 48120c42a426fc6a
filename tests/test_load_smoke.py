"""The load bench, briefly: its locustfile against the test stack.

``make bench BENCH=load`` is too long for the suite; this runs the same
locustfile, runner and checks (``devstack.bench_load``) for a few seconds with
a few users, so a change to the request shapes or the signing breaks a test
instead of the bench. It asserts only what must hold at any speed: no failed
request, both kinds of user served, and the pool invariants.
"""

from __future__ import annotations

import json

from devstack.bench_load import (
    ASSIGN_NAMES,
    WEBHOOK_NAMES,
    pool_check,
    run_locust,
    summarise,
)
from tests import figures
from tests.conftest import STACK_ENV, numbers

GENERIC_SECRET = json.loads(STACK_ENV["CALLTRACK_PROVIDER_SECRETS"])["demo"][
    "generic_secret"
]


def test_visitors_and_a_pbx_at_once_keep_the_pool_invariants(
    stack, make_site, fs, tmp_path
):
    # 8 users at weights 3:1 are 6 visitors and 2 providers; 40 numbers are
    # far more than 6 visitors can hold, so any default number is a bug.
    make_site(dynamic_numbers=numbers(40), cooldown_s=0)
    run = run_locust(stack.urls["assign"], stack.urls["call_webhook"], site="demo",
                     secret=GENERIC_SECRET, users=8, spawn_rate=8, run_time_s=5,
                     workdir=tmp_path)
    summary = summarise(run["entries"])
    check = pool_check(fs, "demo", run["calls_file"])

    figures.report({"load_smoke": {
        "requests": sum(v["n"] for v in summary["by_name"].values()),
        "errors": summary["errors"], "double_holds": check["double_holds"],
        "unreleased_holds": check["unreleased_holds"],
        "calls_acked": check["calls_acked"],
        "calls_recorded": check["calls_recorded"]}})
    log = run["log"].read_text(errors="replace")[-3000:]
    assert summary["errors"] == 0, log
    served = {name: summary["by_name"].get(name, {}).get("n", 0)
              for name in ASSIGN_NAMES + WEBHOOK_NAMES}
    assert all(served.values()), served
    assert check["double_holds"] == 0
    # The graceful stop lets each visit reach its release.
    assert check["unreleased_holds"] == 0
    assert check["holds"] == served["assign"]
    assert check["calls_acked"] > 0
    assert check["calls_recorded"] == check["calls_acked"]
