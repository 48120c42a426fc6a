"""Google Cloud clients, one of each per process, created on first use.

The emulator switch lives in ``shared.settings``: with ``CALLTRACK_BACKEND=emulator``
the Firestore and Pub/Sub clients find their emulators through the standard
``*_EMULATOR_HOST`` variables, and BigQuery is pointed at its emulator with
anonymous credentials. Nothing else in the code knows which backend it runs on.
"""

from __future__ import annotations

import functools

from shared import settings


@functools.cache
def firestore():
    from google.cloud import firestore as fs

    return fs.Client(project=settings.get().project)


@functools.cache
def publisher():
    from google.cloud import pubsub_v1

    # Messages are few per request; waiting for a batch to fill only adds latency.
    batch = pubsub_v1.types.BatchSettings(max_messages=100, max_latency=0.002)
    return pubsub_v1.PublisherClient(batch_settings=batch)


@functools.cache
def bigquery():
    from google.cloud import bigquery as bq

    conf = settings.get()
    if conf.emulated:
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials

        return bq.Client(
            project=conf.project,
            credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint=conf.bigquery_emulator),
        )
    return bq.Client(project=conf.project)


def topic_path(topic: str) -> str:
    return f"projects/{settings.get().project}/topics/{topic}"


def dataset_id() -> str:
    conf = settings.get()
    return f"{conf.project}.{conf.dataset}"


def table_id(table: str) -> str:
    return f"{dataset_id()}.{table}"
