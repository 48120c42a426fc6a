"""Offline conversions back to the ad platforms (docs/exports.md).

``model``     conversions, per-site export configuration, platform windows
``due``       what is due: BigQuery calls, leads and won deals -> conversions
``payloads``  pure request builders per platform (Google Data Manager and
              legacy ConversionUploadService, Yandex Metrica, Meta, VK Ads)
``http``      the HTTP edge: retries with backoff, secrets kept out of logs
``senders``   one sender per platform: batches, answers -> ledger outcomes
``ledger``    Firestore claims (the guard against sending twice) and the
              BigQuery audit table ``conversion_exports``
``exporter``  one tick: poll open uploads, select, gate, claim, send, record
"""
