"""Shared fixtures: one local stack per test session, Firestore reset per test."""

from __future__ import annotations

import itertools
import json
import time
import urllib.error
import urllib.request

import pytest

from devstack.stack import Stack
from shared import pool_admin
from tests import figures, privacy_scan
from tests.fakes import ads_all as fake_ads
from tests.fakes import crm as fake_crm
from tests.fakes import ga4 as fake_ga4
from tests.fakes import recordings as fake_recordings

DEFAULT_NUMBER = "+74951230000"
ORIGIN = "https://shop.example.test"
UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/156.0 Safari/537.36"
_ip = itertools.count(1)

# Test stack settings: a generous per-IP limit; each test uses its own client IP.
STACK_ENV = {"CALLTRACK_RATE_PER_MIN": "600", "CALLTRACK_RATE_BURST": "30",
             "CALLTRACK_SITE_CACHE_S": "0", "CALLTRACK_LOG_LEVEL": "DEBUG",
             # Test-only provider secrets of site "demo" (never real ones).
             "CALLTRACK_PROVIDER_SECRETS": json.dumps({"demo": {
                 "twilio_auth_token": "test-twilio-token-0f6c2a9d8e7b4c1a",
                 "mango_api_key": "test-mango-key-4b8e1d2c",
                 "mango_api_salt": "test-mango-salt-9a7c5e3f",
                 "zadarma_secret": "test-zadarma-secret-1c2d3e4f",
                 "zadarma_api_key": "test-zadarma-key-7f3e2d1c",
                 "uis_secret": "test-uis-secret-5a6b7c8d",
                 "generic_secret": "test-generic-secret-9e0f1a2b",
             }}),
             "CALLTRACK_PUBLISH_TIMEOUT_S": "2",
             # GA4 Measurement Protocol: the local fake, started on import.
             **fake_ga4.stack_env(),
             # CRMs: the local fakes of amoCRM, Bitrix24, HubSpot and a hook.
             **fake_crm.stack_env(),
             # Ad platforms (exports): Google, Yandex Metrica, Meta, VK fakes.
             **fake_ads.stack_env(),
             # Recordings: Google's ID token keys and the providers' media.
             **fake_recordings.stack_env()}


def pytest_terminal_summary(terminalreporter):
    if figures.FIGURES:
        terminalreporter.section("figures")
        for line in figures.lines():
            terminalreporter.write_line(line)


def pytest_collection_modifyitems(items):
    # Scans of everything the suite wrote go last; the sort is stable.
    items.sort(key=lambda item: item.get_closest_marker("suite_end") is not None)


@pytest.fixture(scope="session")
def stack():
    running = Stack(env_overrides=STACK_ENV).start()
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def _clean_firestore(request):
    """Each test that uses the stack starts from an empty Firestore.

    What a test left there is scanned for caller numbers first.
    """
    if "stack" not in request.fixturenames:
        yield
        return
    running = request.getfixturevalue("stack")
    running.reset_firestore()
    yield
    privacy_scan.record(running.firestore(), request.node.nodeid)


@pytest.fixture
def fs(stack):
    return stack.firestore()


@pytest.fixture
def make_site(stack):
    """Create a site and its numbers; returns the stored site document."""

    def make(site_id="demo", allowed_origins=(ORIGIN,), default_number=DEFAULT_NUMBER,
             dynamic_numbers=(), overflow_numbers=(), static_numbers=(), **config):
        client = stack.firestore()
        doc = pool_admin.put_site(client, {
            "site_id": site_id,
            "allowed_origins": list(allowed_origins),
            "default_number": default_number,
            **config,
        })
        rows = [{"number": n} for n in dynamic_numbers]
        rows += [{"number": n, "overflow": True} for n in overflow_numbers]
        rows += [{"number": n, "kind": "static", "channel": ch}
                 for n, ch in static_numbers]
        if rows:
            pool_admin.import_numbers(client, site_id, rows)
        return doc

    return make


def numbers(count: int, start: int = 1000) -> list[str]:
    return [f"+7495555{start + i:04d}" for i in range(count)]


class Client:
    """A minimal HTTP client for the functions, as a browser or provider would."""

    def __init__(self, base: str, origin: str | None = ORIGIN, ip: str | None = None):
        self.base = base
        self.origin = origin
        self.ip = ip or f"203.0.113.{next(_ip) % 250 + 1}"

    def call(self, method: str, path: str, body=None, *, raw: bytes | None = None,
             content_type: str = "text/plain;charset=UTF-8", headers=None):
        data = raw if raw is not None else (
            json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", content_type)
        if self.origin:
            req.add_header("Origin", self.origin)
        req.add_header("User-Agent", UA)
        req.add_header("X-Forwarded-For", self.ip)
        for name, value in (headers or {}).items():
            req.add_header(name, value)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return Response(resp.status, dict(resp.headers), resp.read())
        except urllib.error.HTTPError as exc:
            return Response(exc.code, dict(exc.headers), exc.read())


class Response:
    def __init__(self, status: int, headers: dict, body: bytes):
        self.status = status
        self.headers = {k.lower(): v for k, v in headers.items()}
        self.body = body

    def json(self):
        return json.loads(self.body)


@pytest.fixture
def assign_client(stack):
    return Client(stack.urls["assign"])


def wait_for(predicate, timeout: float = 90.0, interval: float = 0.3):
    """Poll until ``predicate()`` is truthy; return its value or fail.

    The Pub/Sub emulator pushes one message at a time (about 13 a second into
    BigQuery here), so a row can wait behind earlier tests' backlog.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)
