"""Benchmarks ``accuracy`` and ``pool_needed``: the simulator, seed 1.

One simulated day (3,000 visits) through the product's pool and stitching
code on the in-memory store, and through the naive policy, at pool sizes of
0.8, 1.0, 1.2 and 1.5 times the peak of concurrent paid visits; then the
smallest pool each policy needs for 99% of calls stitched to the true session
(``null`` when not reached by 4x). One line per policy and size:

    {"bench": "accuracy", "policy": "product", "pool_x_peak": 1.0,
     "correct": ..., "wrong": ..., "unattributed": ..., ...}
    {"bench": "pool_needed", "policy": "product", "target": 0.99,
     "pool_x_peak": ...}
"""

from __future__ import annotations

from devstack.bench import bench, emit
from simulator import run
from simulator.traffic import Params, generate, peak_concurrent

SIZES = (0.8, 1.0, 1.2, 1.5)
TARGET = 0.99


@bench("accuracy")
def accuracy() -> None:
    params = Params(seed=1, days=1)
    visits = generate(params)
    peak = peak_concurrent(visits)
    for row in run.sweep(visits, peak, SIZES, params.seed):
        emit({"bench": "accuracy", "seed": params.seed, "peak": peak, **row})

    for policy in ("product", "naive"):
        x = run.pool_needed(visits, peak, policy, TARGET, params.seed)
        emit(
            {
                "bench": "pool_needed",
                "policy": policy,
                "target": TARGET,
                "pool_x_peak": x,
            }
        )
