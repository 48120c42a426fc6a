"""The wired ``Exporter`` of a deployment: Firestore, BigQuery, the platform
senders at the configured endpoints and the credentials from settings."""

from __future__ import annotations

from shared import clients, warehouse
from shared.exports import due, exporter, senders
from shared.exports.http import Http
from shared.pool import SiteCache
from shared.store import FirestoreStore
from shared.settings import Settings


def build(conf: Settings, http: Http | None = None, now=None) -> exporter.Exporter:
    ends = conf.export_endpoints
    http = http or Http()
    auth = senders.GoogleAuth(http, ends["google_oauth"])
    client = clients.firestore()
    sites = SiteCache(FirestoreStore(client), conf.site_cache_s)
    return exporter.Exporter(
        client,
        exporter.configs_from_sites(sites),
        {
            "google": senders.GoogleDataManager(http, ends["datamanager"], auth),
            "yandex": senders.Yandex(http, ends["metrika"]),
            "meta": senders.Meta(http, ends["meta"]),
            "vk": senders.Vk(http, ends["vk"]),
        },
        conf.export_secrets,
        due.bigquery_query,
        warehouse.insert_rows,
        f"{conf.project}.{conf.dataset}",
        now=now,
        legacy=senders.GoogleLegacy(http, ends["googleads"], auth),
    )
