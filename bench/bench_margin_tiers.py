"""Vectorised bracket margins and book-walk costs vs their plain-loop references.

Ours: ``TierSchedule.maintenance_margin`` / ``initial_margin`` (np.searchsorted over an array of
notionals) and ``book_walk_cost`` (cumulative sums + searchsorted). Baseline: the slice-by-slice
reference loops kept beside them for the tests, one Python call per notional.
"""

from __future__ import annotations

import time

import numpy as np

from margincal.margin.liquidity import book_walk_cost, book_walk_cost_reference
from margincal.margin.presets import get
from margincal.margin.tiers import initial_margin_reference, maintenance_margin_reference


def _time(fn, repeat: int = 3) -> float:  # type: ignore[no-untyped-def]
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def run(quick: bool = False) -> list[dict]:
    n = 20_000 if quick else 200_000
    rng = np.random.default_rng(0)
    sched = get("binance_btcusdt").schedule
    assert sched is not None
    notional = rng.uniform(0, 4.9e8, n)
    ours = _time(lambda: (sched.maintenance_margin(notional), sched.initial_margin(notional)))
    base = _time(lambda: [(maintenance_margin_reference(sched, x), initial_margin_reference(sched, x))
                          for x in notional], repeat=1)
    rows = [{"name": f"tier margins, {n:,} notionals x 10 brackets", "ours_s": ours,
             "baseline_name": "slice-by-slice loop", "baseline_s": base, "ratio": base / ours,
             "notes": "TierSchedule.maintenance_margin + initial_margin (Binance BTCUSDT table)"}]
    levels = 200
    lv_n = np.sort(rng.uniform(1e3, 1e5, levels))
    lv_s = np.sort(rng.uniform(0, 0.02, levels))
    q = rng.uniform(0, lv_n.sum() * 1.5, n)
    ours = _time(lambda: book_walk_cost(q, lv_n, lv_s, tail_rate=0.03))
    ln, ls = lv_n.tolist(), lv_s.tolist()
    base = _time(lambda: [book_walk_cost_reference(x, ln, ls, 0.03) for x in q], repeat=1)
    rows.append({"name": f"book walk, {n:,} sizes x {levels} levels", "ours_s": ours,
                 "baseline_name": "level-by-level loop", "baseline_s": base, "ratio": base / ours,
                 "notes": "liquidity add-on against a depth snapshot"})
    return rows


if __name__ == "__main__":
    for r in run():
        print(f"{r['name']}: ours {r['ours_s']:.4f} s, {r['baseline_name']} {r['baseline_s']:.3f} s, "
              f"ratio {r['ratio']:.0f}x")
