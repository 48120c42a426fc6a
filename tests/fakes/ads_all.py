"""All four ad platform fakes, and the test stack's settings for them:
endpoints plus test-only credentials (never real ones) of the sites the
export tests and the demo use."""

from __future__ import annotations

import json

from tests.fakes import ads_google, ads_meta, ads_vk, ads_yandex

SERVERS = (ads_google.SERVER, ads_yandex.SERVER, ads_meta.SERVER, ads_vk.SERVER)
SITES = ("demo", "exports", "exports-b", "exports-dry", "bench-exports")
SECRETS = {**ads_google.SECRETS, **ads_yandex.SECRETS, **ads_meta.SECRETS}


def clear() -> None:
    for server in SERVERS:
        server.clear()


def stack_env() -> dict:
    return {
        **ads_google.stack_env(),
        **ads_yandex.stack_env(),
        **ads_meta.stack_env(),
        **ads_vk.stack_env(),
        "CALLTRACK_EXPORT_SECRETS": json.dumps({s: SECRETS for s in SITES}),
    }
