"""What every provider module shares: the request, the secrets, small readers.

A provider module is pure: it sees a ``WebhookRequest`` (built by the HTTP
function from what it received) and the configured ``ProviderSecrets``, and
either refuses the request or turns it into ``CallEvent`` values. Nothing here
reads the network or the environment, and the clock only when the caller gives
no receipt time, so every recipe is testable byte for byte.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from shared.errors import BadRequest, ConfigError
from shared.phones import to_e164

FORM_TYPE = "application/x-www-form-urlencoded"
# Provider payloads are flat or one level deep; anything deeper is hostile.
MAX_JSON_DEPTH = 8
# A provider "local time" text: "2024-06-06 13:15:30".
LOCAL_FORMAT = "%Y-%m-%d %H:%M:%S"


@dataclass(frozen=True)
class WebhookRequest:
    """A received webhook request, as the provider sent it.

    ``url`` is the full public URL the provider called, query included: behind
    a proxy it must be rebuilt from the forwarded scheme and host, because the
    Twilio signature covers it. Header names are stored lower-cased.
    """

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    raw_body: bytes = b""
    form: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        lowered = {str(k).lower(): str(v) for k, v in dict(self.headers).items()}
        object.__setattr__(self, "headers", lowered)
        object.__setattr__(self, "method", self.method.upper())
        object.__setattr__(self, "form", dict(self.form))
        object.__setattr__(self, "query", dict(self.query))

    @classmethod
    def build(
        cls,
        method: str,
        url: str,
        headers: Mapping[str, str] | None = None,
        raw_body: bytes = b"",
    ) -> WebhookRequest:
        """A request whose ``query`` and ``form`` are parsed from url and body.

        ``form`` is filled only for a form-encoded body; a repeated name keeps
        its last value (the Twilio check reads repeats from ``raw_body``).
        """
        headers = {str(k).lower(): str(v) for k, v in (headers or {}).items()}
        query = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))

        form: dict[str, str] = {}
        content_type = headers.get("content-type", "").split(";")[0].strip()
        if content_type.lower() == FORM_TYPE:
            form = dict(form_pairs(raw_body))
        return cls(method, url, headers, raw_body, form, query)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def path(self) -> str:
        return urlsplit(self.url).path

    def json_object(self) -> dict:
        """The body as a JSON object; BadRequest if it is anything else."""
        return load_json_object(self.raw_body, "request body")


@dataclass(frozen=True)
class ProviderSecrets:
    """The shared secrets of each provider; absent ones are None.

    ``repr`` shows none of them, so a logged object leaks nothing.
    """

    twilio_auth_token: str | None = field(default=None, repr=False)
    mango_api_key: str | None = field(default=None, repr=False)
    mango_api_salt: str | None = field(default=None, repr=False)
    zadarma_secret: str | None = field(default=None, repr=False)
    # Zadarma's API key signs nothing it sends; the product needs it only to
    # ask Zadarma's API for recordings.
    zadarma_api_key: str | None = field(default=None, repr=False)
    uis_secret: str | None = field(default=None, repr=False)
    generic_secret: str | None = field(default=None, repr=False)

    def require(self, name: str) -> str:
        """The secret ``name``; ConfigError when it is not configured."""
        value = getattr(self, name)
        if not value:
            msg = f"Expected the {name} secret to be configured, found nothing."
            raise ConfigError(msg, code="secret_missing")
        return value


@dataclass(frozen=True)
class Provider:
    """One provider's two entry points, as the registry hands them out."""

    name: str
    verify: Callable[[WebhookRequest, ProviderSecrets, dt.datetime], None]
    parse: Callable[..., list]


def same(expected: str | bytes, found: str | bytes) -> bool:
    """Constant-time equality of two secrets or signatures.

    Text is compared as UTF-8 bytes: ``hmac.compare_digest`` refuses non-ASCII
    ``str`` with a TypeError, which a hostile header could otherwise trigger.
    """
    if isinstance(expected, str):
        expected = expected.encode()
    if isinstance(found, str):
        found = found.encode()
    return hmac.compare_digest(expected, found)


def form_pairs(raw_body: bytes) -> list[tuple[str, str]]:
    """The name/value pairs of a form-encoded body, in order, repeats kept."""
    try:
        text = raw_body.decode("utf-8")
    except UnicodeDecodeError:
        msg = "Expected a UTF-8 form body, found undecodable bytes."
        raise BadRequest(msg, code="form") from None
    return parse_qsl(text, keep_blank_values=True)


def load_json_object(raw: bytes | str, what: str) -> dict:
    """``raw`` parsed as a JSON object no deeper than ``MAX_JSON_DEPTH``."""
    return _load_json(raw, what, dict, "object")


def load_json_array(raw: bytes | str, what: str) -> list:
    """``raw`` parsed as a JSON array no deeper than ``MAX_JSON_DEPTH``."""
    return _load_json(raw, what, list, "array")


def _load_json(raw: bytes | str, what: str, kind: type, name: str):
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        # RecursionError: nesting past the interpreter's limit, a hostile body.
        msg = f"Expected {what} to be JSON, found text that does not parse."
        raise BadRequest(msg, code="json") from None
    if not isinstance(value, kind):
        msg = f"Expected {what} to be a JSON {name}, found {type(value).__name__}."
        raise BadRequest(msg, code="json")
    _check_depth(value, what, 1)
    return value


def _check_depth(value, what: str, level: int) -> None:
    if level > MAX_JSON_DEPTH:
        msg = f"Expected {what} nested at most {MAX_JSON_DEPTH} deep, found more."
        raise BadRequest(msg, code="json")
    children = value.values() if isinstance(value, dict) else value
    if isinstance(value, (dict, list)):
        for child in children:
            _check_depth(child, what, level + 1)


def text(data: Mapping, name: str, provider: str) -> str:
    """The required non-empty text field ``name``; numbers are accepted as text."""
    value = data.get(name)
    if isinstance(value, bool) or value is None or value == "":
        msg = f"Expected {provider} field {name!r}, found nothing."
        raise BadRequest(msg, code=f"{provider}_field")
    if isinstance(value, int):
        return str(value)
    if not isinstance(value, str):
        found = type(value).__name__
        msg = f"Expected {provider} field {name!r} as text, found {found}."
        raise BadRequest(msg, code=f"{provider}_field")
    return value


def optional_text(data: Mapping, name: str, provider: str) -> str | None:
    if data.get(name) in (None, ""):
        return None
    return text(data, name, provider)


def seconds(data: Mapping, name: str, provider: str) -> int | None:
    """An optional whole number of seconds >= 0, given as a number or digits."""
    value = data.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    msg = f"Expected {provider} field {name!r} as whole seconds, found {value!r}."
    raise BadRequest(msg, code=f"{provider}_field")


def unix_time(value, name: str, provider: str) -> dt.datetime:
    """Unix seconds (a number or digits) as a UTC datetime."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    msg = f"Expected {provider} field {name!r} as unix seconds, found {value!r}."
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise BadRequest(msg, code=f"{provider}_time")
    try:
        return dt.datetime.fromtimestamp(value, dt.UTC)
    except (OverflowError, OSError, ValueError):
        # Beyond year 9999, or NaN: no provider means that.
        raise BadRequest(msg, code=f"{provider}_time") from None


def provider_time(value, tz: str, name: str, provider: str) -> dt.datetime:
    """A provider time as UTC: unix seconds, or local "YYYY-MM-DD HH:MM:SS" in ``tz``.

    Note: a local time repeated by a DST change is read as its first occurrence;
    Moscow, the default zone, has no DST since 2014.
    """
    if isinstance(value, (int, float)) or (
        isinstance(value, str) and value.strip().isdigit()
    ):
        return unix_time(value, name, provider)
    if not isinstance(value, str):
        msg = f"Expected {provider} field {name!r} as a time, found {value!r}."
        raise BadRequest(msg, code=f"{provider}_time")
    try:
        local = dt.datetime.strptime(value.strip(), LOCAL_FORMAT)
    except ValueError:
        msg = (
            f"Expected {provider} field {name!r} as unix seconds or "
            f"'YYYY-MM-DD HH:MM:SS', found {value[:40]!r}."
        )
        raise BadRequest(msg, code=f"{provider}_time") from None
    return local.replace(tzinfo=zone(tz)).astimezone(dt.UTC)


def zone(tz: str) -> ZoneInfo:
    """The account's time zone; ConfigError when the name is unknown."""
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        msg = f"Expected an IANA time zone such as 'Europe/Moscow', found {tz!r}."
        raise ConfigError(msg, code="time_zone") from None


def tracking(raw: str | None, region: str) -> str | None:
    """The dialled tracking number in E.164; a malformed one is a BadRequest."""
    if raw is None:
        return None
    return to_e164(raw, region)


def caller(raw: str | None, region: str) -> str | None:
    """The caller in E.164, or None when the caller id is withheld or not a number.

    "anonymous", a SIP URI or Twilio's "+266696687" (its placeholder for a
    blocked caller id) are real calls with no usable number, not bad requests.
    """
    if not raw:
        return None
    try:
        return to_e164(raw, region)
    except BadRequest:
        return None


def answered_status(answered: bool) -> str:
    return "answered" if answered else "no_answer"


def now_or(now: dt.datetime | None) -> dt.datetime:
    """The receipt time given by the caller, or the clock when none was given."""
    if now is None:
        return dt.datetime.now(dt.UTC)
    return now.astimezone(dt.UTC)
