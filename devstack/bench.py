"""Benchmarks: ``python -m devstack.bench [NAME ...]`` prints one JSON line per figure.

Each benchmark starts what it needs (usually its own local stack) and measures
the real code path. Figures depend on the machine; the docs record a run.
"""

from __future__ import annotations

import concurrent.futures
import importlib
import itertools
import json
import statistics
import subprocess
import sys
import time

from devstack.stack import ROOT, Stack

BENCHES: dict[str, callable] = {}
_ids = itertools.count()
POOL = 200


def bench(name: str):
    def register(fn):
        BENCHES[name] = fn
        return fn

    return register


def emit(figure: dict) -> None:
    print(json.dumps(figure), flush=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def server_timing(header: str) -> dict[str, float]:
    """``fsr;desc="3", app;dur=4.1`` -> {"fsr": 3.0, "app": 4.1}."""
    out = {}
    for part in header.split(","):
        name, _, rest = part.strip().partition(";")
        value = rest.split("=", 1)[-1].strip('"')
        try:
            out[name] = float(value)
        except ValueError:
            pass
    return out


# -- assign ---------------------------------------------------------------------


def _assign_round(stack: Stack, clients: int, per_client: int, site: str) -> dict:
    from tests.conftest import Client

    paid = {"utm_source": "google", "utm_medium": "cpc", "utm_campaign": "bench"}

    def loop(worker: int):
        client = Client(stack.urls["assign"], ip=f"10.9.{worker}.1")
        samples = []
        for _ in range(per_client):
            n = next(_ids)
            body = {
                "visitor_id": f"bench-v-{n:08d}",
                "session_id": f"bench-s-{n:08d}",
                "last_touch": paid,
                "consent": {"analytics": True, "ads": True},
            }
            t0 = time.perf_counter()
            resp = client.call("POST", f"/?site={site}", body)
            elapsed = time.perf_counter() - t0
            timing = server_timing(resp.headers.get("server-timing", ""))
            samples.append((elapsed, timing, resp.status, resp.json().get("kind")))
            client.call(
                "POST", f"/release?site={site}", {"session_id": body["session_id"]}
            )
        return samples

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        samples = sum(pool.map(loop, range(clients)), [])
    wall = time.perf_counter() - started
    return {"samples": samples, "wall": wall}


def _double_holds(stack: Stack, site: str) -> int:
    from google.cloud.firestore_v1.base_query import FieldFilter

    holds = [
        d.to_dict()
        for d in stack.firestore()
        .collection("holds")
        .where(filter=FieldFilter("site_id", "==", site))
        .stream()
    ]
    overlaps = 0
    for number in {h["number"] for h in holds}:
        spans = sorted((h["from"], h["until"]) for h in holds if h["number"] == number)
        pairs = zip(spans, spans[1:], strict=False)
        overlaps += sum(1 for (_, end), (start, _) in pairs if start < end)
    return overlaps


@bench("assign")
def assign_bench() -> None:
    from shared import pool_admin

    stack = Stack(
        functions=("assign", "record_sessions"),
        quiet=True,
        env_overrides={"CALLTRACK_RATE_PER_MIN": "0", "CALLTRACK_LOG_LEVEL": "WARNING"},
    ).start()
    try:
        client = stack.firestore()
        for clients, per_client in ((1, 150), (20, 40)):
            site = f"bench{clients}"
            # Cool-down 0: released numbers return at once, so a long run
            # measures claiming, not exhaustion.
            pool_admin.put_site(
                client,
                {
                    "site_id": site,
                    "default_number": "+74951230000",
                    "allowed_origins": ["https://shop.example.test"],
                    "cooldown_s": 0,
                },
            )
            numbers = [f"+7495{clients:02d}{i:05d}" for i in range(POOL)]
            pool_admin.import_numbers(client, site, [{"number": n} for n in numbers])
            _assign_round(stack, clients, 5, site)  # warm-up: imports, connections

            run = _assign_round(stack, clients, per_client, site)
            samples = run["samples"]
            latencies = [s[0] * 1000 for s in samples]
            dynamic = [s for s in samples if s[3] == "dynamic"]
            emit(
                {
                    "bench": "assign",
                    "clients": clients,
                    "pool": len(numbers),
                    "per_s": round(len(samples) / run["wall"], 1),
                    "p50_ms": round(percentile(latencies, 0.5), 1),
                    "p99_ms": round(percentile(latencies, 0.99), 1),
                    "conflicts_per_100": round(
                        100
                        * sum(s[1].get("conflicts", 0) for s in samples)
                        / len(samples),
                        2,
                    ),
                    "double_holds": _double_holds(stack, site),
                    "fs_reads_per_assign": round(
                        statistics.mean(s[1].get("fsr", 0) for s in samples), 2
                    ),
                    "fs_writes_per_assign": round(
                        statistics.mean(s[1].get("fsw", 0) for s in samples), 2
                    ),
                    "not_dynamic": len(samples) - len(dynamic),
                    "errors": sum(1 for s in samples if s[2] != 200),
                }
            )
    finally:
        stack.stop()


@bench("cold_import")
def cold_import_bench() -> None:
    for name in ("assign",):
        source = ROOT / "functions" / name / "main.py"
        code = (
            "import time, importlib.util as u; t = time.perf_counter(); "
            f"s = u.spec_from_file_location('main', {str(source)!r}); "
            "m = u.module_from_spec(s); s.loader.exec_module(m); "
            "print(time.perf_counter() - t)"
        )
        runs = []
        for _ in range(3):
            out = subprocess.run(
                [sys.executable, "-c", code],
                capture_output=True,
                text=True,
                check=True,
                cwd=ROOT,
                env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
            )
            runs.append(float(out.stdout.strip()))
        emit(
            {
                "bench": "cold_import",
                "function": name,
                "seconds": round(statistics.median(runs), 3),
            }
        )


def _load_extra_benches() -> None:
    """Benchmarks that live beside the code they measure register themselves."""
    for path in sorted((ROOT / "devstack").glob("bench_*.py")):
        importlib.import_module(f"devstack.{path.stem}")

    # Run as ``python -m devstack.bench`` this file is ``__main__``, and those
    # modules registered with ``devstack.bench``, a second copy of it.
    BENCHES.update(importlib.import_module("devstack.bench").BENCHES)


def main(argv: list[str]) -> int:
    _load_extra_benches()
    names = argv or list(BENCHES)
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        print(
            f"unknown bench {', '.join(unknown)}; choose from {', '.join(BENCHES)}",
            file=sys.stderr,
        )
        return 2
    for name in names:
        BENCHES[name]()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
