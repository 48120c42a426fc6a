"""Locust users for the load bench (``devstack/bench_load.py``) and its smoke test.

Two kinds of user run at once, 3 visitors to 1 provider:

- ``Visitor``: a new paid visit on ``assign`` (unique visitor and session
  ids), ``--renews`` heartbeats on ``/renew`` a few tenths of a second apart,
  then ``/release``. Each user sends its own ``X-Forwarded-For``, so the per-IP
  limit on new visits counts each user on its own, as it would real browsers.
- ``Provider``: a generic-hook PBX reporting new calls, a signed ``start``
  then a signed ``end`` of the same call on ``call_webhook``. A call whose two
  events were both answered 200 is appended to ``--calls-file``, so that the
  bench can look for its merged record in Firestore afterwards.

``--host`` is the assign function's URL; the webhook has its own URL (one per
function), given with ``--webhook-host``. The generic-hook secret comes from
the environment (``LOCUST_GENERIC_SECRET``), not the command line, where any
process listing would show it. ``shared`` must be importable (PYTHONPATH).

A visit is one task and sleeps with ``gevent.sleep``, not ``self.wait()``,
so that a graceful stop (``--stop-timeout``) lets it reach its release instead
of leaving a hold to lapse.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import random
import time
import uuid

import gevent
from locust import HttpUser, between, events, task

from shared.providers.generic import sign

ORIGIN = "https://shop.example.test"
# A desktop browser's agent: the bot filter gives other agents the default
# number without a hold, which would leave the pool unexercised.
UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/156.0 Safari/537.36"
PAID = {"utm_source": "google", "utm_medium": "cpc", "utm_campaign": "load"}
TIMEOUT_S = 30
_users = itertools.count(1)


@events.init_command_line_parser.add_listener
def _arguments(parser) -> None:
    parser.add_argument("--site", default="demo", help="Site id to load.")
    parser.add_argument("--webhook-host", default="",
                        help="Base URL of the call_webhook function.")
    parser.add_argument("--calls-file", default="",
                        help="Append the ids of calls acked start and end here.")
    parser.add_argument("--renews", type=int, default=3,
                        help="Heartbeats per visit before its release.")
    parser.add_argument("--tracking-number", default="+74951234567",
                        help="The dialled number the provider reports.")
    parser.add_argument("--generic-secret", env_var="LOCUST_GENERIC_SECRET",
                        default="", is_secret=True,
                        help="The site's generic-hook secret.")


def _ip(n: int) -> str:
    return f"10.{77 + n // 62500 % 100}.{n // 250 % 250}.{n % 250 + 1}"


class Visitor(HttpUser):
    weight = 3
    wait_time = between(0.1, 0.4)

    def on_start(self) -> None:
        self.site = self.environment.parsed_options.site
        self.renews = self.environment.parsed_options.renews
        self.headers = {"Origin": ORIGIN, "User-Agent": UA,
                        "Content-Type": "text/plain;charset=UTF-8",
                        "X-Forwarded-For": _ip(next(_users))}

    def _post(self, route: str, name: str, body: dict):
        return self.client.post(f"{route}?site={self.site}", data=json.dumps(body),
                                headers=self.headers, name=name, timeout=TIMEOUT_S,
                                catch_response=True)

    @task
    def visit(self) -> None:
        n = uuid.uuid4().hex
        ref = {"visitor_id": f"lv-{n}", "session_id": f"ls-{n}"}
        body = {**ref, "page_url": f"{ORIGIN}/landing", "first_touch": PAID,
                "last_touch": PAID, "consent": {"analytics": True, "ads": True}}
        with self._post("/", "assign", body) as resp:
            number = _dynamic_number(resp)
        if number is None:
            return
        for _ in range(self.renews):
            gevent.sleep(random.uniform(0.1, 0.3))
            with self._post("/renew", "renew", ref) as resp:
                # The lease is live, so a renew that moves the session to
                # another number would mean the hold was lost under load.
                if _dynamic_number(resp) not in (None, number):
                    resp.failure(f"renew moved the session off {number}")
        gevent.sleep(random.uniform(0.05, 0.2))
        with self._post("/release", "release", ref) as resp:
            if resp.status_code != 204:
                resp.failure(f"expected 204, got {resp.status_code}")


def _dynamic_number(resp) -> str | None:
    """The pool number answered, or None after marking the response failed."""
    if resp.status_code != 200:
        resp.failure(f"expected 200, got {resp.status_code}: {resp.text[:200]}")
        return None
    answer = resp.json()
    kind = answer.get("kind")
    if kind != "dynamic":
        # The pool is sized for the users, so a default number means a claim
        # was lost or the pool leaked, not exhaustion.
        resp.failure(f"expected a dynamic number, got {kind}")
        return None
    return answer["number"]


class Provider(HttpUser):
    weight = 1
    wait_time = between(0.1, 0.4)

    def on_start(self) -> None:
        options = self.environment.parsed_options
        self.url = f"{options.webhook_host.rstrip('/')}/generic/{options.site}"
        self.secret = options.generic_secret
        self.number = options.tracking_number
        self.calls_file = options.calls_file

    def _send(self, name: str, body: dict) -> bool:
        raw = json.dumps(body).encode()
        stamp = str(int(time.time()))
        headers = {"Content-Type": "application/json",
                   "X-Calltrack-Timestamp": stamp,
                   "X-Calltrack-Signature": sign(self.secret, stamp, raw)}
        # An absolute URL: --host points every user at assign.
        with self.client.post(self.url, data=raw, headers=headers, name=name,
                              timeout=TIMEOUT_S, catch_response=True) as resp:
            if resp.status_code != 200:
                resp.failure(f"expected 200, got {resp.status_code}: "
                             f"{resp.text[:200]}")
                return False
            return True

    @task
    def call(self) -> None:
        call_id = f"load-{uuid.uuid4().hex}"
        caller = f"+7916{random.randrange(10**7):07d}"
        started = dt.datetime.now(dt.UTC)
        ok = self._send("webhook start", {
            "call_id": call_id, "event": "start", "occurred_at": started.isoformat(),
            "tracking_number": self.number, "caller": caller})
        gevent.sleep(random.uniform(0.1, 0.3))
        ok &= self._send("webhook end", {
            "call_id": call_id, "event": "end",
            "occurred_at": dt.datetime.now(dt.UTC).isoformat(),
            "started_at": started.isoformat(), "tracking_number": self.number,
            "caller": caller, "answered": True, "ring_s": 4, "talk_s": 30})
        if ok and self.calls_file:
            # One write per line: a file write never yields to another
            # greenlet, so the lines of concurrent users cannot interleave.
            with open(self.calls_file, "a") as out:
                out.write(call_id + "\n")
