"""One typed settings object, read from environment variables once per process.

Every environment variable the product reads is named here and nowhere else.
Values come from the environment only; where a variable is unset the default
below wins. ``CALLTRACK_BACKEND`` is the one switch between the local emulators
and live Google Cloud: the rest of the code path is identical.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass, field

from shared.errors import ConfigError

BACKEND = "CALLTRACK_BACKEND"  # "emulator" or "gcp"
PROJECT = "GOOGLE_CLOUD_PROJECT"
DATASET = "CALLTRACK_DATASET"
FIRESTORE_EMULATOR = "FIRESTORE_EMULATOR_HOST"
PUBSUB_EMULATOR = "PUBSUB_EMULATOR_HOST"
BIGQUERY_EMULATOR = "BIGQUERY_EMULATOR_HOST"
TOPIC_SESSIONS = "CALLTRACK_TOPIC_SESSIONS"
TOPIC_CALL_EVENTS = "CALLTRACK_TOPIC_CALL_EVENTS"
TOPIC_CALLS_STITCHED = "CALLTRACK_TOPIC_CALLS_STITCHED"
TOPIC_CRM_EVENTS = "CALLTRACK_TOPIC_CRM_EVENTS"
LOG_LEVEL = "CALLTRACK_LOG_LEVEL"
MAX_BODY_BYTES = "CALLTRACK_MAX_BODY_BYTES"
PICK_WINDOW = "CALLTRACK_PICK_WINDOW"
RATE_PER_MIN = "CALLTRACK_RATE_PER_MIN"
RATE_BURST = "CALLTRACK_RATE_BURST"
SITE_CACHE_S = "CALLTRACK_SITE_CACHE_S"
PUBLISH_TIMEOUT_S = "CALLTRACK_PUBLISH_TIMEOUT_S"
# JSON {site_id: {secret name: value}}; filled from Secret Manager in the cloud.
PROVIDER_SECRETS = "CALLTRACK_PROVIDER_SECRETS"
# JSON {site_id: GA4 Measurement Protocol api_secret}; from Secret Manager.
GA4_SECRETS = "CALLTRACK_GA4_SECRETS"
GA4_ENDPOINT = "CALLTRACK_GA4_ENDPOINT"
# JSON {site_id: {credential name: value}} of the ad platforms (docs/exports.md);
# from Secret Manager.
EXPORT_SECRETS = "CALLTRACK_EXPORT_SECRETS"
# Ad platform hosts (the local fakes in tests); the defaults are the real ones.
DATAMANAGER_ENDPOINT = "CALLTRACK_DATAMANAGER_ENDPOINT"
GOOGLEADS_ENDPOINT = "CALLTRACK_GOOGLEADS_ENDPOINT"
GOOGLE_OAUTH_URL = "CALLTRACK_GOOGLE_OAUTH_URL"
METRIKA_ENDPOINT = "CALLTRACK_METRIKA_ENDPOINT"
META_ENDPOINT = "CALLTRACK_META_ENDPOINT"
VK_ENDPOINT = "CALLTRACK_VK_ENDPOINT"
# JSON {site_id: {secret name: value}}: CRM tokens and webhook secrets
# (docs/crm.md); from Secret Manager.
CRM_SECRETS = "CALLTRACK_CRM_SECRETS"
HUBSPOT_ENDPOINT = "CALLTRACK_HUBSPOT_ENDPOINT"
# Recordings (docs/privacy.md): JSON list of readers ("user:EMAIL",
# "domain:DOMAIN"), the ID token audience they sign in with, and the key of
# the short-lived links (from Secret Manager).
RECORDING_READERS = "CALLTRACK_RECORDING_READERS"
RECORDING_AUDIENCE = "CALLTRACK_RECORDING_AUDIENCE"
RECORDING_LINK_SECRET = "CALLTRACK_RECORDING_LINK_SECRET"
RECORDING_LINK_S = "CALLTRACK_RECORDING_LINK_S"
# Google's ID token keys (PEM certificates); tests point it at a local fake.
GOOGLE_CERTS_URL = "CALLTRACK_GOOGLE_CERTS_URL"
# The providers' APIs that hand out recordings by id; the defaults are real.
MANGO_API_URL = "CALLTRACK_MANGO_API_URL"
ZADARMA_API_URL = "CALLTRACK_ZADARMA_API_URL"


@dataclass(frozen=True)
class Settings:
    backend: str
    project: str
    dataset: str
    firestore_emulator: str | None
    pubsub_emulator: str | None
    bigquery_emulator: str | None
    topic_sessions: str
    topic_call_events: str
    topic_calls_stitched: str
    topic_crm_events: str
    log_level: str
    # 16 KB: a snippet request carries three touches and a few ids; far more
    # than that is abuse, and refusing it early keeps parsing cheap.
    max_body_bytes: int
    # How many of the least recently released free numbers one assignment
    # chooses among at random; wider means fewer concurrent picks of one number.
    pick_window: int
    # New-session claims per client IP per minute on one instance, with a burst.
    rate_per_min: int
    rate_burst: int
    # Site documents change rarely; caching them saves a read per request.
    site_cache_s: float
    # Upper bound on waiting for Pub/Sub to accept a message on a request path.
    publish_timeout_s: float
    # Call provider secrets per site ({site_id: {"twilio_auth_token": ...}}).
    # Never in Firestore or the repository; kept out of repr so a logged
    # settings object leaks none of them.
    provider_secrets: dict = field(repr=False, hash=False)
    # GA4 Measurement Protocol api_secret per site ({site_id: secret}); out of
    # repr for the same reason.
    ga4_api_secrets: dict = field(repr=False, hash=False)
    # Measurement Protocol host: the EU one is https://region1.google-analytics.com.
    ga4_endpoint: str
    # Ad platform credentials per site ({site_id: {"meta_access_token": ...}});
    # out of repr like the others.
    export_secrets: dict = field(repr=False, hash=False)
    # Ad platform hosts: {"datamanager", "googleads", "google_oauth",
    # "metrika", "meta", "vk"} -> base URL.
    export_endpoints: dict = field(hash=False)
    # CRM secrets per site ({site_id: {"amocrm_token": ...}}); out of repr.
    crm_secrets: dict = field(repr=False, hash=False)
    # HubSpot's API host; tests point it at a local fake.
    hubspot_endpoint: str = "https://api.hubapi.com"
    recording_readers: tuple[str, ...] = ()
    recording_audience: str = ""
    recording_link_secret: str = field(default="", repr=False)
    # Five minutes: long enough to press play, short enough that a forwarded
    # link is useless soon after.
    recording_link_s: int = 300
    google_certs_url: str = "https://www.googleapis.com/oauth2/v1/certs"
    # {"mango", "zadarma"} -> API base URL, for recordings kept by id.
    recording_apis: dict = field(default_factory=dict, hash=False)

    @property
    def emulated(self) -> bool:
        return self.backend == "emulator"


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        msg = f"{name} must be an integer, found {raw!r}."
        raise ConfigError(msg) from None


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        msg = f"{name} must be a number, found {raw!r}."
        raise ConfigError(msg) from None


def _secrets(name: str) -> dict:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        # The text itself holds secrets, so the message names only its shape.
        msg = f"{name} must be JSON, found text that does not parse."
        raise ConfigError(msg) from None

    sites_ok = isinstance(value, dict) and all(
        isinstance(secrets, dict)
        and all(isinstance(v, str) for v in secrets.values())
        for secrets in value.values()
    )
    if not sites_ok:
        msg = f"{name} must be a JSON object of site ids to objects of text secrets."
        raise ConfigError(msg)
    return value


def _site_texts(name: str) -> dict:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        msg = f"{name} must be JSON, found text that does not parse."
        raise ConfigError(msg) from None

    if not isinstance(value, dict) or not all(
        isinstance(v, str) for v in value.values()
    ):
        msg = f"{name} must be a JSON object of site ids to text secrets."
        raise ConfigError(msg)
    return value


def _readers(name: str) -> tuple[str, ...]:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return ()
    try:
        value = json.loads(raw)
    except ValueError:
        msg = f"{name} must be a JSON list of members, found {raw[:80]!r}."
        raise ConfigError(msg) from None
    members = value if isinstance(value, list) else [value]
    bad = [m for m in members
           if not isinstance(m, str) or m.split(":", 1)[0] not in ("user", "domain")]
    if bad:
        msg = f"{name} must list user:EMAIL or domain:DOMAIN, found {bad[0]!r}."
        raise ConfigError(msg)
    return tuple(m.lower() for m in members)


def load() -> Settings:
    """Build settings from the environment; raises ConfigError on bad values."""
    backend = os.environ.get(BACKEND, "gcp")
    if backend not in ("emulator", "gcp"):
        msg = f"{BACKEND} must be 'emulator' or 'gcp', found {backend!r}."
        raise ConfigError(msg)

    project = os.environ.get(PROJECT, "")
    if not project:
        msg = f"{PROJECT} must name the Google Cloud project, found nothing."
        raise ConfigError(msg)

    emulators = {
        FIRESTORE_EMULATOR: os.environ.get(FIRESTORE_EMULATOR) or None,
        PUBSUB_EMULATOR: os.environ.get(PUBSUB_EMULATOR) or None,
        BIGQUERY_EMULATOR: os.environ.get(BIGQUERY_EMULATOR) or None,
    }
    if backend == "emulator":
        missing = [name for name, value in emulators.items() if not value]
        if missing:
            msg = f"{BACKEND}=emulator needs {', '.join(missing)} to be set."
            raise ConfigError(msg)

    return Settings(
        backend=backend,
        project=project,
        dataset=os.environ.get(DATASET, "calltrack"),
        firestore_emulator=emulators[FIRESTORE_EMULATOR],
        pubsub_emulator=emulators[PUBSUB_EMULATOR],
        bigquery_emulator=emulators[BIGQUERY_EMULATOR],
        topic_sessions=os.environ.get(TOPIC_SESSIONS, "sessions"),
        topic_call_events=os.environ.get(TOPIC_CALL_EVENTS, "call-events"),
        topic_calls_stitched=os.environ.get(TOPIC_CALLS_STITCHED, "calls-stitched"),
        topic_crm_events=os.environ.get(TOPIC_CRM_EVENTS, "crm-events"),
        log_level=os.environ.get(LOG_LEVEL, "INFO").upper(),
        max_body_bytes=_int(MAX_BODY_BYTES, 16 * 1024),
        pick_window=_int(PICK_WINDOW, 48),
        rate_per_min=_int(RATE_PER_MIN, 60),
        rate_burst=_int(RATE_BURST, 20),
        site_cache_s=_float(SITE_CACHE_S, 30.0),
        publish_timeout_s=_float(PUBLISH_TIMEOUT_S, 5.0),
        provider_secrets=_secrets(PROVIDER_SECRETS),
        ga4_api_secrets=_site_texts(GA4_SECRETS),
        ga4_endpoint=os.environ.get(
            GA4_ENDPOINT, "https://www.google-analytics.com"
        ).rstrip("/"),
        export_secrets=_secrets(EXPORT_SECRETS),
        export_endpoints={
            name: os.environ.get(env, default).rstrip("/")
            for name, env, default in (
                ("datamanager", DATAMANAGER_ENDPOINT,
                 "https://datamanager.googleapis.com"),
                ("googleads", GOOGLEADS_ENDPOINT, "https://googleads.googleapis.com"),
                ("google_oauth", GOOGLE_OAUTH_URL,
                 "https://oauth2.googleapis.com/token"),
                ("metrika", METRIKA_ENDPOINT, "https://api-metrika.yandex.net"),
                ("meta", META_ENDPOINT, "https://graph.facebook.com"),
                ("vk", VK_ENDPOINT, "https://top-fwz1.mail.ru"),
            )
        },
        crm_secrets=_secrets(CRM_SECRETS),
        hubspot_endpoint=os.environ.get(
            HUBSPOT_ENDPOINT, "https://api.hubapi.com"
        ).rstrip("/"),
        recording_readers=_readers(RECORDING_READERS),
        recording_audience=os.environ.get(RECORDING_AUDIENCE, ""),
        recording_link_secret=os.environ.get(RECORDING_LINK_SECRET, ""),
        recording_link_s=_int(RECORDING_LINK_S, 300),
        google_certs_url=os.environ.get(
            GOOGLE_CERTS_URL, "https://www.googleapis.com/oauth2/v1/certs"
        ),
        recording_apis={
            name: os.environ.get(var, default).rstrip("/")
            for name, var, default in (
                ("mango", MANGO_API_URL, "https://app.mango-office.ru/vpbx"),
                ("zadarma", ZADARMA_API_URL, "https://api.zadarma.com"),
            )
        },
    )


@functools.cache
def get() -> Settings:
    """The process-wide settings, read on first use."""
    return load()
