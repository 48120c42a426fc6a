"""The accuracy report: both pool policies over a range of pool sizes.

``accuracy`` runs the sweep on one seeded traffic sample and finds the pool
each policy needs for a target; ``render_html`` turns that into one page with a
table and an inline SVG chart (no scripts, nothing fetched), and
``write_accuracy_report`` does both. ``python -m ops accuracy-report`` and
``make demo`` call it.
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Callable
from pathlib import Path

from simulator import run
from simulator.traffic import Params, generate, peak_concurrent

MULTIPLES = (0.6, 0.8, 1.0, 1.2, 1.4, 1.6)
TARGET = 0.99
POLICIES = ("product", "naive")
COLOURS = {"product": "#1a73e8", "naive": "#d93025"}


def accuracy(
    params: Params,
    multiples=MULTIPLES,
    target: float = TARGET,
    site_overrides: dict | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> dict:
    """Sweep both policies over ``multiples`` of the peak paid concurrency."""
    started = time.monotonic()
    visits = generate(params)
    peak = peak_concurrent(visits)
    progress(
        f"accuracy: {len(visits)} visits over {params.days} day(s), "
        f"peak {peak} concurrent paid visits"
    )

    rows = []
    for x in multiples:
        rows += run.sweep(visits, peak, (x,), params.seed, site_overrides)
        took = time.monotonic() - started
        progress(f"accuracy: pool {x:.2f}x peak done ({took:.0f} s)")

    needed = {}
    for policy in POLICIES:
        needed[policy] = run.pool_needed(
            visits, peak, policy, target, params.seed, site_overrides
        )
        pool = needed[policy]
        need = f"{pool}x peak" if pool is not None else "more than any pool tried"
        progress(f"accuracy: {policy} needs {need} for {target:.0%}")

    # The naive policy plateaus: compare the pools each needs for the best
    # accuracy the naive policy reaches at all.
    naive_best = max(r["correct"] for r in rows if r["policy"] == "naive")
    at_naive_best = {
        policy: run.pool_needed(
            visits, peak, policy, naive_best, params.seed, site_overrides
        )
        for policy in POLICIES
    }
    return {
        "params": params.__dict__,
        "visits": len(visits),
        "paid_visits": sum(1 for v in visits if v.paid),
        "peak_paid_concurrent": peak,
        "target": target,
        "rows": rows,
        "pool_needed": needed,
        "naive_best": naive_best,
        "pool_for_naive_best": at_naive_best,
        "seconds": round(time.monotonic() - started, 1),
    }


def _chart(result: dict) -> str:
    """Correct share by pool size, one line per policy, as inline SVG."""
    width, height, pad = 560, 300, 48
    xs = sorted({r["pool_x_peak"] for r in result["rows"]})
    lo, hi = min(xs), max(xs)
    span = (hi - lo) or 1.0

    def px(x: float) -> float:
        return pad + (x - lo) / span * (width - 2 * pad)

    def py(y: float) -> float:
        return height - pad - y * (height - 2 * pad)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" role="img" aria-label="correct share by pool size">',
        f'<line x1="{pad}" y1="{py(0)}" x2="{width - pad}" y2="{py(0)}" '
        'stroke="#999"/>',
        f'<line x1="{pad}" y1="{py(0)}" x2="{pad}" y2="{py(1)}" stroke="#999"/>',
    ]
    for tick in (0.0, 0.25, 0.5, 0.75, 0.9, 1.0):
        parts.append(
            f'<text x="{pad - 6}" y="{py(tick) + 4:.1f}" font-size="11" '
            f'text-anchor="end">{tick:.0%}</text>'
        )
    for x in xs:
        parts.append(
            f'<text x="{px(x):.1f}" y="{height - pad + 16}" font-size="11" '
            f'text-anchor="middle">{x:.1f}x</text>'
        )
    target = result["target"]
    parts.append(
        f'<line x1="{pad}" y1="{py(target):.1f}" x2="{width - pad}" '
        f'y2="{py(target):.1f}" stroke="#188038" stroke-dasharray="4 4"/>'
    )
    for n, policy in enumerate(POLICIES):
        points = sorted(
            (r["pool_x_peak"], r["correct"])
            for r in result["rows"]
            if r["policy"] == policy
        )
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in points)
        colour = COLOURS[policy]
        parts.append(
            f'<polyline points="{path}" fill="none" stroke="{colour}" '
            'stroke-width="2"/>'
        )
        parts.append(
            f'<text x="{width - pad}" y="{pad + 14 * n}" font-size="12" '
            f'text-anchor="end" fill="{colour}">{policy}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


def render_html(result: dict) -> str:
    esc = html.escape
    head = (
        "<tr><th>policy</th><th>pool (x peak)</th><th>numbers</th><th>calls</th>"
        "<th>correct</th><th>wrong</th><th>unattributed</th><th>overflow</th>"
        "<th>utilisation</th><th>later calls correct</th></tr>"
    )
    body = []
    for r in sorted(result["rows"], key=lambda r: (r["policy"], r["pool_x_peak"])):
        body.append(
            "<tr>"
            f"<td>{esc(r['policy'])}</td><td>{r['pool_x_peak']:.2f}</td>"
            f"<td>{r['pool']}</td><td>{r['calls']}</td>"
            f"<td>{r['correct']:.1%}</td><td>{r['wrong']:.1%}</td>"
            f"<td>{r['unattributed']:.1%}</td><td>{r['exhausted']}</td>"
            f"<td>{r['utilisation']:.0%}</td>"
            f"<td>{r['late_correct']}/{r['late_calls']}</td>"
            "</tr>"
        )

    def needed(value) -> str:
        return "not reached by 4x" if value is None else f"{value:.2f}x peak"

    target = result["target"]
    summary = "".join(
        f"<li>{esc(p)}: {needed(result['pool_needed'][p])} for {target:.0%} correct; "
        f"{needed(result['pool_for_naive_best'][p])} for "
        f"{result['naive_best']:.1%} (the naive policy's best)</li>"
        for p in POLICIES
    )
    params = esc(json.dumps(result["params"], sort_keys=True))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Attribution accuracy by pool size</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #202124; }}
table {{ border-collapse: collapse; }}
td, th {{ border: 1px solid #dadce0; padding: 4px 8px; text-align: right; }}
th {{ background: #f1f3f4; }}
code {{ font-size: 12px; }}
</style></head><body>
<h1>Attribution accuracy by pool size</h1>
<p>{result["visits"]} simulated visits ({result["paid_visits"]} paid), peak
{result["peak_paid_concurrent"]} concurrent paid visits. Calls scored: those of
paid visits placed during the visit or within {run.REACH_S // 60} minutes of
its end; calls from a number noted down hours before are counted apart.</p>
<ul>{summary}</ul>
{_chart(result)}
<table>{head}{"".join(body)}</table>
<p>Traffic parameters: <code>{params}</code>. Run time {result["seconds"]} s.
How to read this: docs/accuracy.md.</p>
</body></html>
"""


def write_accuracy_report(
    out_dir: Path,
    seed: int = 1,
    days: int = 1,
    progress: Callable[[str], None] = print,
    **params,
) -> Path:
    """Write accuracy.html and accuracy.json under ``out_dir``; the HTML path."""
    result = accuracy(Params(seed=seed, days=days, **params), progress=progress)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "accuracy.json").write_text(json.dumps(result, indent=1) + "\n")
    path = out_dir / "accuracy.html"
    path.write_text(render_html(result))
    return path
