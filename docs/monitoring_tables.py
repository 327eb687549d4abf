"""Tables for docs/monitoring.md from a `margincal monitor --replay --json` run.

Usage (after the replay commands shown in docs/monitoring.md)::

    python docs/monitoring_tables.py STORE RUN.jsonl FROM TO

Prints markdown: (1) the timeline of signals, automatic changes and proposals;
(2) per day and instrument, the largest 24h move that ended that day against
the IM rate in force when that 24h window started (with the monitor, and
with the static calibrated rate); (3) breach counts, monitored vs static.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd

from margincal.data.store import connect, load_bars
from margincal.margin import params as P


def im_paths(store: str, base_version: int, versions: list[int], instruments: list[str]) -> dict[str, pd.Series]:
    """IM in force per instrument as a step function of event time (base, then this run's automatic changes)."""
    con = connect(store, read_only=True)
    try:
        base = P.load(con, base_version)
        out = {i: [(pd.Timestamp("2000-01-01", tz="UTC"), base[i].im_rate)] for i in instruments}
        for v in sorted(versions):
            adj = P.load(con, v).provenance["adjustment"]
            out[adj["instrument"]].append((pd.Timestamp(adj["ts"]), adj["im_after"]))
    finally:
        con.close()
    return {i: pd.Series([x[1] for x in v], index=pd.DatetimeIndex([x[0] for x in v])) for i, v in out.items()}


def main(store: str, jsonl: str, start: str, end: str) -> None:
    with open(jsonl) as fh:
        lines = [json.loads(x) for x in fh]
    base_version = next(x["version"] for x in lines if x["type"] == "calibration")
    summary = lines[-1]
    versions = set(summary["versions"])
    insts = sorted({x["instrument"] for x in lines if x["type"] in ("signal", "adjustment", "proposal")})

    print("| time (UTC) | instrument | what | detail |\n|---|---|---|---|")
    for x in lines:
        if x["type"] == "signal":
            print(f"| {x['ts'][:16].replace('T', ' ')} | {x['instrument']} | signal ({x['severity']}) | "
                  f"{x['reason'].split(' ', 1)[1]} |")
        elif x["type"] == "adjustment" and x.get("version") in versions:
            print(f"| {x['ts'][:16].replace('T', ' ')} | {x['instrument']} | **auto v{x['version']}** | "
                  f"IM {100 * x['im_before']:.2f}% -> {100 * x['im_after']:.2f}% (target {100 * x['target_im']:.2f}%, "
                  f"48h vol {100 * x['sigma_now_annual']:.0f}% vs {100 * x['sigma_anchor_annual']:.0f}%) |")
        elif x["type"] == "proposal":
            print(f"| {x['ts'][:16].replace('T', ' ')} | {x['instrument']} | proposal | "
                  f"IM {100 * x['im_before']:.2f}% -> {100 * x['im_after']:.2f}% ({x['rule'].split(':')[0]}) |")

    paths = im_paths(store, base_version, summary["versions"], insts)
    con = connect(store, read_only=True)
    t0, t1 = pd.Timestamp(start, tz="UTC"), pd.Timestamp(end, tz="UTC") + pd.Timedelta(days=1)
    rows, counts = [], {}
    for inst in insts:
        bars = load_bars(con, inst, "1h", t0 - pd.Timedelta(days=2), t1)
        close = bars["close"]
        known = close.index + pd.Timedelta(hours=1)  # a bar's close is known at open + 1h
        c = pd.Series(close.to_numpy(), index=known)
        move = (c / c.shift(24) - 1.0).abs()
        path = paths[inst]
        im_at = path.reindex(path.index.union(c.index)).ffill().reindex(c.index)
        im_start = im_at.shift(24)  # IM in force when the 24h window began
        static = float(path.iloc[0])
        inside = move[(move.index > t0) & (move.index <= t1)]
        for day, g in inside.groupby((inside.index - pd.Timedelta(1, "ns")).floor("D")):  # 24:00 ends the day
            k = g.idxmax()
            ended = "24:00" if k.hour == 0 else k.strftime("%H:%M")
            rows.append((day.strftime("%m-%d"), inst, 100 * g.max(), ended, 100 * im_start[k],
                         100 * static, 100 * im_at[g.index[-1]]))
        w = (move.index > t0) & (move.index <= t1)
        counts[inst] = (_episodes(move[w].to_numpy(), im_start[w].to_numpy()),
                        _episodes(move[w].to_numpy(), np.full(w.sum(), static)))
    con.close()
    print("\n| day | instrument | largest 24h move | ended at | IM at its start (monitor) | IM static | "
          "IM at day end (monitor) |\n|---|---|---|---|---|---|---|")
    for r in sorted(rows):
        flag = " **breach**" if r[2] > r[4] else ""
        print(f"| {r[0]} | {r[1]} | {r[2]:.1f}%{flag} | {r[3]} | {r[4]:.2f}% | {r[5]:.2f}% | {r[6]:.2f}% |")
    print("\n| instrument | breach episodes, monitored IM | breach episodes, static calibrated IM |\n|---|---|---|")
    for inst, (m, s) in counts.items():
        print(f"| {inst} | {m} | {s} |")
    print(f"\nsummary: {summary['events']} events, {summary['signals']} signals, {summary['auto_adjustments']} "
          f"automatic versions, {summary['proposals']} proposals")


def _episodes(move: np.ndarray, im: np.ndarray, h: int = 24) -> int:
    """Breaches counted as in margincal.adjust.online.BreachCounter: after one, the next h-1 hours are skipped."""
    n, cool = 0, 0
    for x, m in zip(move, im, strict=True):
        if cool > 0:
            cool -= 1
        elif x > m:
            n += 1
            cool = h - 1
    return n


if __name__ == "__main__":
    main(*sys.argv[1:5])
