"""Benchmark: book-wide portfolio margin vs book size and vs Dask workers (section "scaling").

Synthetic books (``margincal.data.book.generate_book``: 101 instruments on 5
underlyings, 2.5 positions per account on average, 100,000 accounts per Parquet
partition) of 1e4, 1e5, 1e6 and (full run only) 1e7 accounts; risk-matrix
margin (``deribit_like``: 175 scenarios) of every account, results written as
Parquet partitions. Measured in ONE run:

* time vs accounts: ``DaskEngine(workers=2)`` (a LocalCluster of 2 processes,
  1 thread each; cluster start-up not included, reported in the notes) against
  ``LocalEngine`` on the same partitions (same tasks, one after the other in
  this process); at 1e7 the baseline is the 1e6 Dask time x 10 (linear
  extrapolation), so the ratio is the scaling efficiency;
* time vs workers at 1e6: 2 workers against 1 worker;
* the distributed path against the single-process path at 1e6: the whole book
  read into one CSR matrix and :func:`margincal.margin.portfolio.portfolio_margin`
  called once (what ``margincal portfolio FILE`` does), reading included.

Notes give the peak RSS of each Dask worker (``resource.getrusage`` in the
worker: its maximum since the worker started) and the bytes dask spilled.
Ratios are baseline / ours: above 1 means the distributed path is faster.
The machine has 2 cores, shared with other jobs: each row's notes give the
1-minute load average when it finished (above 2 means processes waited for a
core, and 2 workers cannot run 2x faster than 1).

``python bench/bench_scaling.py [--quick]`` prints the rows.
"""

from __future__ import annotations

import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import sparse

from margincal.data.book import generate_book
from margincal.distributed import DaskEngine, LocalEngine, book_market, book_specs
from margincal.margin.portfolio import deribit_like, portfolio_margin, scenario_pnl_matrix

SECTION = "scaling"


def _worker_peaks(eng: DaskEngine) -> str:
    def peak() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB -> MiB on Linux

    try:
        vals = eng.client.run(peak)
        spilled = eng.client.run(lambda dask_worker: dask_worker.data.spilled_total
                                 if hasattr(dask_worker.data, "spilled_total") else 0)
    except Exception:
        return "worker peaks n/a"
    sp = sum(float(getattr(v, "disk", v) if not isinstance(v, (int, float)) else v) for v in spilled.values())
    return (f"peak RSS per worker {', '.join(f'{v:,.0f}' for v in vals.values())} MiB; spilled {sp / 2**20:.0f} "
            "MiB")


def _load() -> str:
    return f"load avg {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"


def _cpu(eng) -> float:
    """CPU seconds (user + system) used so far by this process and, for Dask, by every worker process."""
    import psutil

    def mine() -> float:
        c = psutil.Process().cpu_times()
        return c.user + c.system

    total = mine()
    if isinstance(eng, DaskEngine):
        total += sum(eng.client.run(mine).values())
    return total


CPU: dict[int, float] = {}


def _time_engine(eng, book, pnl, out: Path) -> float:
    """Wall seconds of one run; its CPU seconds (client + workers) are left in CPU[id(eng)]."""
    if out.exists():
        shutil.rmtree(out)
    c = _cpu(eng)
    t = time.perf_counter()
    eng.portfolio_margin(book, pnl=pnl, out=out, top=10)
    wall = time.perf_counter() - t
    CPU[id(eng)] = _cpu(eng) - c
    return wall


def _single_process(book, pnl) -> tuple[float, float]:
    """Read the whole book into one CSR and call portfolio_margin once; returns (seconds, total IM)."""
    t = time.perf_counter()
    df = book.to_frame()
    codes, ids = pd.factorize(df["account"], sort=False)
    col = {n: i for i, n in enumerate(pnl.instruments)}
    P = sparse.csr_matrix((df["quantity"].to_numpy(), (codes, df["instrument"].astype(str).map(col).to_numpy())),
                          shape=(len(ids), len(col)))
    del df
    res = portfolio_margin(P, pnl, accounts=ids)
    return time.perf_counter() - t, float(res.im.sum())


def run(quick: bool = False) -> list[dict]:
    sizes = [10_000, 100_000, 1_000_000] + ([] if quick else [10_000_000])
    tmp = Path(tempfile.mkdtemp(prefix="margincal-bench-scaling-"))
    rows: list[dict] = []
    try:
        books, gen_s = {}, {}
        for n in sizes:
            t = time.perf_counter()
            books[n] = generate_book(n, out_dir=tmp / f"book{n}", accounts_per_partition=100_000, seed=1)
            gen_s[n] = time.perf_counter() - t
        b0 = books[sizes[0]]
        pnl = scenario_pnl_matrix(book_specs(b0), book_market(b0), deribit_like())
        local = LocalEngine()
        t = time.perf_counter()
        eng2 = DaskEngine(workers=2)
        start2 = time.perf_counter() - t
        dask_t: dict[int, float] = {}
        cpu_dask: dict[int, float] = {}
        try:
            for n in sizes:
                ours = _time_engine(eng2, books[n], pnl, tmp / f"out-d{n}")
                cpu_d = CPU[id(eng2)]
                dask_t[n] = ours
                cpu_dask[n] = cpu_d
                if n <= 1_000_000:
                    base = _time_engine(local, books[n], pnl, tmp / f"out-l{n}")
                    cpu_l = CPU[id(local)]
                    rows.append({"section": SECTION, "name": f"portfolio margin, {n:,} accounts, dask 2 workers",
                                 "ours_s": ours, "baseline_name": "local engine (same partitions, 1 process)",
                                 "baseline_s": base, "ratio": base / ours,
                                 "notes": f"{ours / n * 1e6:.1f} s per 1M accounts; CPU {cpu_d:.1f} s (dask: client "
                                          f"+ workers) vs {cpu_l:.1f} s (local); {books[n].n_rows:,} positions in "
                                          f"{books[n].n_partitions} partition(s), generated in {gen_s[n]:.1f} s "
                                          f"(local); cluster start {start2:.1f} s not included; {_load()}"})
                else:
                    base = dask_t[1_000_000] * n / 1_000_000
                    rows.append({"section": SECTION, "name": f"portfolio margin, {n:,} accounts, dask 2 workers",
                                 "ours_s": ours, "baseline_name": "1e6 dask time x 10 (linear)",
                                 "baseline_s": base, "ratio": base / ours,
                                 "notes": f"{ours / n * 1e6:.1f} s per 1M accounts; CPU {cpu_d:.1f} s; ratio = "
                                          "scaling efficiency; "
                                          f"book generated in {gen_s[n]:.1f} s (local); " + _worker_peaks(eng2)
                                          + f"; {_load()}"})
            peaks2 = _worker_peaks(eng2)
        finally:
            eng2.close()
        n6 = 1_000_000
        with DaskEngine(workers=1) as eng1:
            one = _time_engine(eng1, books[n6], pnl, tmp / "out-w1")
            cpu1 = CPU[id(eng1)]
            peaks1 = _worker_peaks(eng1)
        rows.append({"section": SECTION, "name": "portfolio margin, 1,000,000 accounts: 2 workers vs 1",
                     "ours_s": dask_t[n6], "baseline_name": "dask 1 worker", "baseline_s": one,
                     "ratio": one / dask_t[n6],
                     "notes": f"CPU {cpu_dask[n6]:.1f} s (2 workers) vs {cpu1:.1f} s (1 worker); 2 workers: {peaks2}; "
                              f"1 worker: {peaks1}; {_load()}"})
        single, _ = _single_process(books[n6], pnl)
        rows.append({"section": SECTION, "name": "portfolio margin, 1,000,000 accounts: dask vs single process",
                     "ours_s": dask_t[n6],
                     "baseline_name": "whole book in one CSR + portfolio_margin (1 process)",
                     "baseline_s": single, "ratio": single / dask_t[n6],
                     "notes": "both include reading the Parquet partitions; dask also writes per-account Parquet; "
                              + _load()})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


def main() -> None:
    rows = run(quick="--quick" in sys.argv)
    for r in rows:
        print(f"{r['name']}\n  ours {r['ours_s']:.3f} s | {r['baseline_name']} {r['baseline_s']:.3f} s | "
              f"ratio {r['ratio']:.2f}\n  {r['notes']}")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
