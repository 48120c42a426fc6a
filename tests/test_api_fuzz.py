"""Every HTTP function, fuzzed from docs/openapi.yaml on the local stack.

Cases. For each HTTP function of functions/manifest.json, schemathesis reads
the function's part of the spec (its paths without the function-name prefix,
as the function's own functions-framework process serves them) and makes the
requests: an even sample of the coverage phase's boundary and invalid cases,
then Hypothesis's positive and negative cases for each operation, a fixed
number of them and derandomized, so every run sends the same requests. The
valid parts of a case are then pointed at what the test seeded (site ids,
the allowed origin, the amoCRM URL secret and account, the Bitrix24 token,
the UIS secret); invalid parts keep their value, as they are what the case
is about. Where a request is signed, a case whose headers (or, for Mango's
sign, body) are valid is signed with the test secrets over the bytes sent,
so payloads reach the parsers, not only the signature check. Every case
comes from its own client address (``X-Forwarded-For``, which assign's rate
limit counts) and carries its own trace id.

Checks. No 5xx; a status, content type, headers and body the spec documents
(for a 4xx, the JSON error with a code and a message); an invalid case
refused with a 4xx; and no traceback in the function's log (a traceback
names its case by the trace id).

No write from a refused request. After seeding, one all-descendants query of
the Firestore emulator lists every document with its update time; the test
lists again after each case. A case answered 4xx must leave the documents of
``WATCHED`` (the collections the HTTP functions write) exactly as they were,
so a create, an update or a delete shows. A changed document is blamed on a
request only when its update time falls inside that request: a function fed
by Pub/Sub may still be working off an earlier test's messages. Whenever a
case changed anything the seed is restored (emulator reset, one commit), so
the listing stays small and the pool's numbers free. Messages are pulled
from test subscriptions on the topics the function publishes and matched to
cases by publish time: none may fall inside a 4xx request. Rows of the
BigQuery table a function appends to (crm_webhook's ``deals``) are counted
before and after: only 2xx answers may add them. A function that writes
nothing (utm_check) must leave Firestore as it was after every case. For
assign the run must also see writes and messages, which shows the listing
and the subscriptions would catch one.

Each function prints one JSON line, ``{"fuzz": name, "cases": N,
"status_counts": {...}, ...}``, and N must reach the function's floor.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import datetime as dt
import itertools
import json
import math
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
import requests
import schemathesis
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.errors import FailureGroup

from devstack.stack import PROJECT
from shared import utm
from shared.crm import hubspot
from shared.providers import generic
from tests import figures, signers
from tests.conftest import ORIGIN, STACK_ENV, UA, numbers
from tests.fakes import crm as fake_crm

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = json.loads((ROOT / "functions" / "manifest.json").read_text())
SPEC = yaml.safe_load((ROOT / "docs" / "openapi.yaml").read_text())
HTTP = [name for name, fn in MANIFEST["functions"].items() if fn["trigger"] == "http"]
SECRETS = json.loads(STACK_ENV["CALLTRACK_PROVIDER_SECRETS"])["demo"]
SITE_TOML = (ROOT / "tests" / "data" / "utm" / "site_dictionary.toml").read_text()
FORM = "application/x-www-form-urlencoded"
# The collections the HTTP functions write, from their code: the pool
# (assign), calls and their raw payloads (call_webhook), deal links
# (crm_webhook); and the configuration none of them may touch.
WATCHED = frozenset({"numbers", "sessions", "visitors", "holds", "calls",
                     "crm_links", "sites", utm.COLLECTION})
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
# What refusing an invalid request means; a 429 or a 5xx does not count.
REJECTED = [400, 401, 403, 404, 413, 415]
CONFIG = {
    "generation": {"mode": "all"},
    "checks": {"negative_data_rejection": {"expected-statuses": REJECTED}},
}
ZADARMA_SIGNED = {
    "NOTIFY_START": ("caller_id", "called_did", "call_start"),
    "NOTIFY_END": ("caller_id", "called_did", "call_start"),
    "NOTIFY_RECORD": ("pbx_call_id", "call_id_with_rec"),
}
# The emulator's clock is this host's; the margin covers its rounding.
CLOCK_MARGIN_S = 0.05
TRACEBACK = "Traceback (most recent call last)"
_addresses = itertools.count(1)


# -- signing and seeding -------------------------------------------------------


def _valid(case, location: str) -> bool:
    """Whether the case's ``location`` component is valid (or absent)."""
    if case.meta is None:
        return True
    return all(info.mode.is_positive for where, info in case.meta.components.items()
               if where.value == location)


def _raw(request: requests.PreparedRequest) -> bytes:
    body = request.body or b""
    return body.encode() if isinstance(body, str) else body


def _form(request: requests.PreparedRequest) -> dict | None:
    if not request.headers.get("Content-Type", "").startswith(FORM):
        return None
    try:
        return dict(parse_qsl(_raw(request).decode(), keep_blank_values=True))
    except UnicodeDecodeError:
        return None


def sign_call(request: requests.PreparedRequest, case) -> None:
    """Sign a provider callback as the provider would (tests/signers.py)."""
    provider = urlsplit(request.url).path.strip("/").split("/")[0]
    headers, body = _valid(case, "header"), _valid(case, "body")
    form = _form(request)
    if provider == "generic" and headers:
        stamp = str(int(time.time()))
        request.headers["X-Calltrack-Timestamp"] = stamp
        request.headers["X-Calltrack-Signature"] = signers.generic_signature(
            SECRETS["generic_secret"], stamp, _raw(request))
    elif provider == "twilio" and headers and form is not None:
        request.headers["X-Twilio-Signature"] = signers.twilio_signature(
            SECRETS["twilio_auth_token"], request.url, form)
    elif provider == "zadarma" and headers and form is not None:
        names = ZADARMA_SIGNED.get(form.get("event", ""))
        if names:
            signed = "".join(form.get(name, "") for name in names)
            request.headers["Signature"] = signers.zadarma_signature(
                SECRETS["zadarma_secret"], signed)
    elif provider == "mango" and body and form is not None and "json" in form:
        # Mango signs inside the form: its key and sign replace the generated.
        key, salt = SECRETS["mango_api_key"], SECRETS["mango_api_salt"]
        form.update(vpbx_api_key=key, sign=signers.mango_sign(key, form["json"], salt))
        request.body = urlencode(form)


def sign_crm(request: requests.PreparedRequest, case) -> None:
    """Sign a CRM webhook with the test site's secret."""
    crm = urlsplit(request.url).path.strip("/").split("/")[0]
    if not _valid(case, "header"):
        return
    if crm == "hubspot":
        stamp = str(int(time.time() * 1000))
        request.headers["X-HubSpot-Request-Timestamp"] = stamp
        request.headers["X-HubSpot-Signature-v3"] = hubspot.signature(
            fake_crm.HUBSPOT_SECRET, "POST", request.url, _raw(request), stamp)
    elif crm == "webhook":
        stamp = str(int(time.time()))
        request.headers[generic.TIMESTAMP_HEADER] = stamp
        request.headers[generic.SIGNATURE_HEADER] = generic.sign(
            fake_crm.HOOK_SECRET, stamp, _raw(request))


class Signer(requests.auth.AuthBase):
    """A plan's signing, applied to the request once its bytes are final."""

    def __init__(self, sign: Callable, case) -> None:
        self.sign, self.case = sign, case

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        self.sign(request, self.case)
        return request


def seed_demo(make_site, fs) -> None:
    make_site(dynamic_numbers=numbers(4), cooldown_s=0)


def seed_utm(make_site, fs) -> None:
    utm.put_site_dictionary(fs, "kuhni", SITE_TOML)


def seed_crm(make_site, fs) -> None:
    for site_id in ("crm-amo", "crm-bitrix", "crm-hubspot", "crm-hook"):
        make_site(site_id=site_id, extra={"crm": fake_crm.site_crm(site_id)})


@dataclasses.dataclass(frozen=True)
class Plan:
    """How to fuzz one function: what to seed, pin, sign and expect."""

    # Path prefix (as the function serves it) -> {parameter or field: value}.
    pins: dict = dataclasses.field(
        default_factory=lambda: {"": {"site": "demo", "site_id": "demo"}})
    seed: Callable = seed_demo
    sign: Callable | None = None
    writes: bool = True  # False: no case may change Firestore
    rows: str | None = None  # the BigQuery table only 2xx answers append to
    coverage: int = 50  # coverage-phase cases per operation, at most
    examples: int = 35  # Hypothesis cases per operation and mode
    floor: int = 50
    sees_writes: bool = False  # the run must see writes and messages


PLANS = {
    "assign": Plan(pins={"": {"site": "demo", "Origin": ORIGIN}}, sees_writes=True,
                   floor=350),
    "call_webhook": Plan(
        pins={"": {"site_id": "demo", "secret": SECRETS["uis_secret"]}},
        sign=sign_call, floor=360),
    "utm_check": Plan(pins={"": {"site": "kuhni"}}, seed=seed_utm, writes=False,
                      floor=380),
    "crm_webhook": Plan(
        pins={"/amocrm": {"site_id": "crm-amo", "account[subdomain]": "shop",
                          "secret": fake_crm.AMO_WEBHOOK_SECRET},
              "/bitrix24": {"site_id": "crm-bitrix",
                            "auth[application_token]": fake_crm.BITRIX_TOKEN},
              "/hubspot": {"site_id": "crm-hubspot"},
              "/webhook": {"site_id": "crm-hook"}},
        seed=seed_crm, sign=sign_crm, rows="deals", floor=360),
}


# -- cases ---------------------------------------------------------------------


def function_spec(name: str) -> dict:
    """The paths of function ``name`` as its own process serves them."""
    spec = copy.deepcopy(SPEC)
    spec.pop("servers", None)
    spec["paths"] = {}
    for path, item in SPEC["paths"].items():
        head, _, rest = path.strip("/").partition("/")
        if head == name:
            spec["paths"]["/" + rest] = copy.deepcopy(item)
    return spec


def _draw(strategy, count: int) -> list:
    """``count`` cases of ``strategy``, the same ones on every run."""
    drawn = []

    @settings(database=None, derandomize=True, max_examples=count, deadline=None,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(case):
        drawn.append(case)

    try:
        collect()
    except Unsatisfiable:
        pass  # nothing to make invalid: a preflight without parameters
    return drawn


def generate(schema, plan: Plan) -> list:
    """Each operation's coverage sample, then its positive and negative cases."""
    cases = []
    for result in schema.get_all_operations():
        operation = result.ok()
        config = schema.config.generation_for(operation=operation, phase="coverage")
        coverage = list(schema.iter_coverage_cases(
            operation, generation_modes=config.modes, generation_config=config))
        # An even sample keeps every kind of scenario, not the first few.
        step = max(1, math.ceil(len(coverage) / plan.coverage))
        cases += coverage[::step]
        for mode in GenerationMode:
            cases += _draw(operation.as_strategy(generation_mode=mode), plan.examples)
    return cases


def pin(case, pins: dict) -> None:
    """Point the case's valid components at what the test seeded.

    A generated site id or secret is almost never the seeded one, so every
    valid request would stop at "unknown site". schemathesis sees the edit
    and checks the case against the spec again before sending it.
    """
    values = {}
    for prefix in sorted(pins, key=len):
        if case.path.startswith(prefix):
            values.update(pins[prefix])
    body = case.body if isinstance(case.body, dict) else None
    containers = {"path": case.path_parameters, "query": case.query,
                  "header": case.headers, "body": body}
    for location, container in containers.items():
        if not container or not _valid(case, location):
            continue
        for name, value in values.items():
            if name in container:
                container[name] = value


def checks_for(case) -> list:
    """The checks of a case.

    A repeated query parameter is read as its first value (Flask's
    ``request.args``), which the spec cannot say; such a case is not held to
    the rejection of invalid data.
    """
    if any(isinstance(v, list) and len(v) > 1 for v in (case.query or {}).values()):
        return [check for check in CHECKS if check is not negative_data_rejection]
    return CHECKS


# -- what the stack holds ------------------------------------------------------


def _call(method: str, url: str, body: dict | None = None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        url, data=data, method=method,
        # The emulators' admin token: Firestore security rules do not apply.
        headers={"Content-Type": "application/json", "Authorization": "Bearer owner"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read() or b"{}")


def _when(stamp: str) -> float:
    """Seconds since the epoch of an RFC 3339 UTC time (up to nanoseconds)."""
    head, _, fraction = stamp.rstrip("Z").partition(".")
    return dt.datetime.fromisoformat(
        f"{head}.{(fraction or '0')[:6]}+00:00").timestamp()


class Firestore:
    """Every document of the emulator, listed and restored over REST."""

    def __init__(self, stack) -> None:
        self.stack = stack
        base = (f"http://{stack.firestore_host}/v1/projects/{PROJECT}"
                "/databases/(default)/documents")
        self.query_url, self.commit_url = f"{base}:runQuery", f"{base}:commit"
        self.seed = self.documents(full=True)

    def documents(self, full: bool = False) -> dict[str, dict]:
        query: dict = {"from": [{"allDescendants": True}]}
        if not full:
            query["select"] = {"fields": [{"fieldPath": "__name__"}]}
        rows = _call("POST", self.query_url, {"structuredQuery": query})
        return {row["document"]["name"].split("/documents/", 1)[1]: row["document"]
                for row in rows if "document" in row}

    def watched(self) -> dict[str, str]:
        """Path -> update time of each document in the watched collections."""
        return {path: doc["updateTime"] for path, doc in self.documents().items()
                if path.split("/")[0] in WATCHED}

    def restore(self) -> dict[str, str]:
        """Only the seeded documents again; what ``watched`` now lists."""
        self.stack.reset_firestore()
        writes = [{"update": {"name": doc["name"], "fields": doc.get("fields", {})}}
                  for doc in self.seed.values()]
        results = _call("POST", self.commit_url, {"writes": writes})["writeResults"]
        return {path: result["updateTime"]
                for path, result in zip(self.seed, results, strict=True)
                if path.split("/")[0] in WATCHED}


class Topics:
    """Pull subscriptions on topics, made before the cases run."""

    def __init__(self, stack, topics) -> None:
        self.base = f"http://{stack.pubsub_host}/v1/projects/{PROJECT}"
        self.names = {f"fuzz-{topic}-{uuid.uuid4().hex[:8]}": topic
                      for topic in topics}
        for name, topic in self.names.items():
            _call("PUT", f"{self.base}/subscriptions/{name}",
                  {"topic": f"projects/{PROJECT}/topics/{topic}"})

    def published(self) -> list[tuple[str, float]]:
        """(topic, publish time) of every message so far."""
        out = []
        for name, topic in self.names.items():
            url = f"{self.base}/subscriptions/{name}"
            while messages := _call("POST", f"{url}:pull", {
                    "maxMessages": 1000, "returnImmediately": True,
            }).get("receivedMessages"):
                out += [(topic, _when(m["message"]["publishTime"])) for m in messages]
                _call("POST", f"{url}:acknowledge",
                      {"ackIds": [m["ackId"] for m in messages]})
        return out

    def close(self) -> None:
        for name in self.names:
            _call("DELETE", f"{self.base}/subscriptions/{name}")


def _count(stack, table: str) -> int:
    return stack.query(f"select count(*) n from `{{dataset}}.{table}`")[0]["n"]


# -- the run -------------------------------------------------------------------


@dataclasses.dataclass
class Sent:
    case: object
    status: int
    started: float
    ended: float
    trace: str


def _address() -> str:
    n = next(_addresses)
    return f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"


def _content_type(response) -> str:
    # schemathesis keeps header names lower-cased, each with a list of values.
    return (response.headers.get("content-type") or [""])[0]


def _error_reason(response) -> str | None:
    """Why a JSON 4xx lacks the error's code and message; None if it has them.

    Whether a content type other than JSON may answer is the spec's to say.
    """
    if not _content_type(response).startswith("application/json"):
        return None
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        return f"a 4xx without the JSON error: {response.text[:120]!r}"
    if not isinstance(error, dict) or not error.get("code") or not error.get("message"):
        return f"a 4xx error without code and message: {error!r:.120}"
    return None


def _tracebacks(text: str, traces: dict) -> list[str]:
    """Each traceback in log ``text``, named by the case whose trace it has."""
    found = []
    for line in text.splitlines():
        if TRACEBACK not in line:
            continue
        try:
            trace = json.loads(line).get("logging.googleapis.com/trace", "")
        except ValueError:
            trace = ""  # the framework's own, not one of the product's JSON lines
        case = traces.get(trace.rsplit("/", 1)[-1])
        found.append(f"traceback of {case!r:.300}: {line[:300]}")
    return found


def fuzz(name: str, stack, make_site, fs) -> dict:
    """Send every case of function ``name``; the figures and the failures."""
    plan = PLANS.get(name, Plan())
    plan.seed(make_site, fs)
    schema = schemathesis.openapi.from_dict(
        function_spec(name), config=schemathesis.Config.from_dict(CONFIG))
    cases = generate(schema, plan)
    assert cases, f"docs/openapi.yaml describes no operation of {name}"

    store = Firestore(stack)
    before = store.watched()
    topics = Topics(stack, MANIFEST["functions"][name].get("publishes", []))
    rows = _count(stack, plan.rows) if plan.rows else 0
    log_start = len(stack.log_text(name))
    session = requests.Session()
    sent, failures, recorded = [], [], set()
    wrote = 0
    try:
        for case in cases:
            pin(case, plan.pins)
            trace = uuid.uuid4().hex
            headers = {"X-Forwarded-For": _address(), "User-Agent": UA,
                       "X-Cloud-Trace-Context": f"{trace}/1;o=1"}
            started = time.time()
            try:
                response = case.call(
                    base_url=stack.urls[name], session=session, headers=headers,
                    auth=Signer(plan.sign, case) if plan.sign else None, timeout=30)
            except requests.RequestException as exc:
                failures.append(f"no answer: {exc!r:.200}\n  {case.as_curl_command()}")
                continue
            ended = time.time()
            sent.append(Sent(case, response.status_code, started, ended, trace))
            refused = 400 <= response.status_code < 500

            try:
                case.validate_response(response, checks=checks_for(case))
            except FailureGroup as group:
                answer = (f"{response.status_code} {_content_type(response)} "
                          f"{response.text[:80]!r}")
                failures += [f"{f.title}: {f.message[:300]}\n  {answer}\n"
                             f"  {case.as_curl_command()}" for f in group.exceptions]
            if refused and (reason := _error_reason(response)):
                failures.append(f"{reason}\n  {case.as_curl_command()}")
            if plan.rows and 200 <= response.status_code < 300:
                recorded.update(response.json().get("recorded") or [])

            after = store.watched()
            changed = [p for p in after.keys() | before.keys()
                       if after.get(p) != before.get(p)]
            low, high = started - CLOCK_MARGIN_S, ended + CLOCK_MARGIN_S
            blamed = sorted(p for p in changed
                            if p not in after or low <= _when(after[p]) <= high)
            if blamed and (refused or not plan.writes):
                failures.append(f"{response.status_code} wrote {blamed[:5]}\n"
                                f"  {case.as_curl_command()}")
            wrote += bool(blamed)
            before = store.restore() if changed else after
        messages = topics.published()
    finally:
        topics.close()

    for topic, when in messages:
        for item in sent:
            if 400 <= item.status < 500 and item.started <= when <= item.ended:
                failures.append(f"{item.status} published on {topic}\n"
                                f"  {item.case.as_curl_command()}")
    if plan.rows and _count(stack, plan.rows) - rows != len(recorded):
        failures.append(f"{plan.rows} gained rows that no 2xx answer recorded")
    failures += _tracebacks(stack.log_text(name)[log_start:],
                            {item.trace: item.case for item in sent})
    if plan.sees_writes and not (wrote and messages):
        failures.append(f"{wrote} cases wrote and {len(messages)} messages came: "
                        "the run cannot show that a write would be seen")
    statuses = collections.Counter(str(item.status) for item in sent)
    return {"cases": len(sent), "status_counts": dict(sorted(statuses.items())),
            "wrote": wrote, "published": len(messages), "failures": failures,
            "floor": plan.floor}


@pytest.mark.parametrize("name", HTTP)
def test_fuzzed_requests_get_documented_answers_and_refused_ones_write_nothing(
    name, stack, make_site, fs
):
    """Spec-made requests, valid and invalid, get documented answers without a
    5xx or a traceback, and a refused one writes and publishes nothing."""
    started = time.monotonic()
    result = fuzz(name, stack, make_site, fs)
    figure = {"fuzz": name, "cases": result["cases"],
              "status_counts": result["status_counts"], "wrote": result["wrote"],
              "published": result["published"],
              "seconds": round(time.monotonic() - started, 1)}
    figures.report(figure)

    failures = result["failures"]
    assert not failures, f"{len(failures)} failures:\n" + "\n".join(failures[:15])
    assert result["cases"] >= result["floor"]


def test_the_spec_the_fuzzer_reads_is_valid_openapi():
    """docs/openapi.yaml passes the OpenAPI 3.0 schema, so no case is made
    from a misread document."""
    schemathesis.openapi.from_dict(SPEC).validate()
