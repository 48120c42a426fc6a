"""Benchmark ``utm``: what the UTM standard costs on the assign path and over HTTP.

In process, ``normalise_touch_utm`` on a clean and on a messy touch (what every
assign pays). Over HTTP, against a local stack that runs only ``utm_check``:
a spreadsheet's batch of 500 links (half clean, half messy) and single-link
requests from 4 concurrent callers. Prints two lines:

    {"bench": "utm_normalise", "clean_us": ..., "messy_us": ...}
    {"bench": "utm_check", "batch_links": 500, "batch_p50_ms": ...,
     "batch_per_link_us": ..., "single_per_s": ..., "single_p50_ms": ...,
     "errors": 0}
"""

from __future__ import annotations

import concurrent.futures
import json
import time

from devstack.bench import bench, emit, percentile
from devstack.stack import Stack

CLEAN = {
    "utm_source": "google",
    "utm_medium": "cpc",
    "utm_campaign": "kitchen_msk_leads_202511",
    "utm_content": "{creative}",
    "utm_term": "{keyword}",
}
MESSY = {
    "utm_source": "Яндекс Директ",
    "utm_medium": "CPC",
    "utm_campaign": "Кухни-Москва_Лиды 2025-11",
    "utm_content": "Баннер №1 (красный)",
    "utm_term": "купить кухню {keyword}",
}
GOOD = (
    "https://kuhni.example/?utm_source=google&utm_medium=cpc"
    "&utm_campaign=kitchen_msk_leads_202511&utm_term={keyword}"
)
BAD = (
    "https://kuhni.example/?UTM_Source=Google&utm_medium=PPC"
    "&utm_campaign=Кухни%20Москва&utm_term=%7Bkeyword%7D"
)
BATCH = 500
ROUNDS = 10
CALLERS = 4
SINGLES = 100


def _per_call_us(touch: dict, n: int = 2000) -> float:
    from shared import utm

    utm.normalise_touch_utm(touch)  # the dictionary is read once, outside
    started = time.perf_counter()
    for _ in range(n):
        utm.normalise_touch_utm(touch)
    return (time.perf_counter() - started) / n * 1e6


def _post(client, body: dict) -> tuple[float, int]:
    t0 = time.perf_counter()
    resp = client.call("POST", "/", raw=json.dumps(body).encode())
    return time.perf_counter() - t0, resp.status


@bench("utm")
def utm_bench() -> None:
    from tests.conftest import Client

    emit(
        {
            "bench": "utm_normalise",
            "clean_us": round(_per_call_us(CLEAN), 1),
            "messy_us": round(_per_call_us(MESSY), 1),
        }
    )

    stack = Stack(
        functions=("utm_check",),
        quiet=True,
        env_overrides={"CALLTRACK_LOG_LEVEL": "WARNING"},
    ).start()
    try:
        client = Client(stack.urls["utm_check"], origin=None)
        batch = {"urls": [GOOD, BAD] * (BATCH // 2)}
        _post(client, batch)  # warm-up: imports and the dictionary

        batches = [_post(client, batch) for _ in range(ROUNDS)]

        def caller(worker: int) -> list[tuple[float, int]]:
            own = Client(stack.urls["utm_check"], origin=None)
            return [_post(own, {"url": BAD if n % 2 else GOOD}) for n in range(SINGLES)]

        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(CALLERS) as pool:
            singles = sum(pool.map(caller, range(CALLERS)), [])
        wall = time.perf_counter() - started

        batch_p50 = percentile([s for s, _ in batches], 0.5)
        emit(
            {
                "bench": "utm_check",
                "batch_links": BATCH,
                "batch_p50_ms": round(batch_p50 * 1000, 1),
                "batch_per_link_us": round(batch_p50 / BATCH * 1e6, 1),
                "single_per_s": round(len(singles) / wall, 1),
                "single_p50_ms": round(
                    percentile([s * 1000 for s, _ in singles], 0.5), 1
                ),
                "errors": sum(1 for _, status in batches + singles if status != 200),
            }
        )
    finally:
        stack.stop()
