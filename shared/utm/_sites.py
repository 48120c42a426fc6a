"""Each site's own dictionary, kept in Firestore for the HTTP check.

A site's file (the same TOML shape as the shipped dictionary) is stored as text
in ``utm_dictionaries/{site_id}`` by ``python -m ops utm-site-dictionary``, which
checks it first; the text, not a parsed form, is kept so that the operator can
read back exactly what was put. A site without a document uses the default.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import tomllib

from shared.errors import BadRequest, ConfigError
from shared.sites import SITE_ID
from shared.utm._dictionary import Dictionary, default_dictionary, extend_dictionary

COLLECTION = "utm_dictionaries"
# A dictionary is a few hundred lines; far more is a mistake, and Firestore
# refuses documents over 1 MiB anyway.
MAX_TOML_BYTES = 64 * 1024


def check_site_id(site_id: object) -> str:
    if not isinstance(site_id, str) or not SITE_ID.match(site_id):
        msg = f"Expected a site id of 2-63 of [a-z0-9_-], found {site_id!r:.80}."
        raise BadRequest(msg, code="site_id")
    return site_id


def parse_site_dictionary(text: str) -> Dictionary:
    """The default dictionary extended by a site's TOML text.

    Raises ConfigError naming the problem, as ``load_dictionary`` does for a file.
    """
    if len(text.encode("utf-8")) > MAX_TOML_BYTES:
        msg = f"Expected a UTM dictionary of at most {MAX_TOML_BYTES} bytes."
        raise ConfigError(msg, code="utm_dictionary")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = f"Expected TOML in the site's UTM dictionary, found: {exc}."
        raise ConfigError(msg, code="utm_dictionary") from None
    return extend_dictionary(data)


def put_site_dictionary(client, site_id: str, text: str) -> dict:
    """Check and store a site's dictionary; returns the stored document.

    Idempotent: putting the same text again leaves the same dictionary.
    """
    check_site_id(site_id)
    parse_site_dictionary(text)
    doc = {
        "site_id": site_id,
        "toml": text,
        "updated_at": dt.datetime.now(dt.UTC),
    }
    client.collection(COLLECTION).document(site_id).set(doc)
    return doc


def get_site_dictionary_text(client, site_id: str) -> str | None:
    snap = client.collection(COLLECTION).document(check_site_id(site_id)).get()
    return snap.to_dict().get("toml") if snap.exists else None


def delete_site_dictionary(client, site_id: str) -> None:
    """Idempotent: deleting a missing dictionary is not an error."""
    client.collection(COLLECTION).document(check_site_id(site_id)).delete()


class SiteDictionaries:
    """Site dictionaries read from Firestore, each kept ``ttl_s`` seconds.

    ``get`` returns (dictionary, True) for a site with its own dictionary and
    (the default, False) for one without, so that a caller can say which
    was used. Safe to share between threads.
    """

    def __init__(self, client, ttl_s: float, clock=time.monotonic) -> None:
        self.client = client
        self.ttl_s = ttl_s
        self.clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, Dictionary, bool]] = {}

    def get(self, site_id: str) -> tuple[Dictionary, bool]:
        check_site_id(site_id)
        with self._lock:
            hit = self._cache.get(site_id)
        if hit and self.clock() - hit[0] < self.ttl_s:
            return hit[1], hit[2]

        text = get_site_dictionary_text(self.client, site_id)
        if text is None:
            entry = (self.clock(), default_dictionary(), False)
        else:
            entry = (self.clock(), parse_site_dictionary(text), True)
        with self._lock:
            self._cache[site_id] = entry
        return entry[1], entry[2]
