"""Benchmark: what-if (pre-trade) margin queries through HTTP against a real uvicorn process.

Setup (in a temporary directory): a store with the bundled BTC/ETH daily bars, calibrated, and one
trader key; ``margincal serve`` started as a subprocess on 127.0.0.1 with a free port. 64 different
50-position portfolios of BTC/ETH perpetuals, dated futures and options (Deribit-style names, risk
matrix method, flat vol 60%), each with an order; requests cycle through them.

Measured in ONE run (all traffic to 127.0.0.1 only, fixed request counts, every phase capped in time):

* closed loop at 1, 4, 16, 32 concurrent clients (httpx + asyncio): throughput and p50/p99 latency of
  ``POST /api/margin/what-if``; baseline: ``GET /health`` at the same concurrency (the fixed cost of
  HTTP + uvicorn + FastAPI, no auth, no store), so ratio = health p50 / what-if p50;
* open loop at 200 requests/s (requests sent on a fixed schedule whatever the answers; latency counted
  from the scheduled time, so queueing shows): p50/p99 against the target p99 < 25 ms;
* in process: the same what-if through the service's MarginEngine with no HTTP (baseline of the
  c=1 row: the HTTP + auth + JSON overhead is the difference).

The client runs on the same 2-core machine as the server and takes CPU from it; the numbers are
for that setting.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

TARGET_RATE = 200.0
TARGET_P99_S = 0.025
PHASE_LIMIT_S = 60.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _universe() -> list[str]:
    names = ["BTC-PERP", "ETH-PERP", "BTC-26JUN26", "BTC-25SEP26", "BTC-25DEC26", "ETH-26JUN26", "ETH-25DEC26"]
    for exp in ("26JUN26", "25SEP26", "25DEC26"):
        names += [f"BTC-{exp}-{k}-{cp}" for k in range(50000, 100001, 5000) for cp in "CP"]
        names += [f"ETH-{exp}-{k}-{cp}" for k in range(1200, 3001, 300) for cp in "CP"]
    return names


def _portfolios(n: int, size: int, seed: int = 7) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    uni = _universe()
    out = []
    for _ in range(n):
        pick = rng.choice(len(uni), size=size, replace=False)
        positions = [{"instrument": uni[i], "quantity": float(rng.choice([-1, 1]) * rng.integers(1, 20))}
                     for i in pick]
        order = {"instrument": uni[int(rng.integers(len(uni)))], "side": str(rng.choice(["buy", "sell"])),
                 "quantity": float(rng.integers(1, 10))}
        out.append({"positions": positions, "order": order, "method": "risk_matrix", "flat_vol": 0.6})
    return out


def _seed(path: Path) -> str:
    from margincal.config import CalibrationSettings
    from margincal.data.ingest import ingest_file
    from margincal.data.samples import sample_path
    from margincal.data.store import connect
    from margincal.margin.published import calibrate_and_publish
    from margincal.service.auth import create_key

    con = connect(path)
    try:
        for file, inst in (("btc_daily.csv", "BTC-USDT"), ("eth_daily.csv", "ETH-USDT")):
            ingest_file(con, sample_path(file), instrument=inst, timeframe="1d", kind="bars", instrument_kind="spot")
        calibrate_and_publish(con, [("BTC-USDT", "1d"), ("ETH-USDT", "1d")], CalibrationSettings(), actor="bench")
        return create_key(con, "trader", "bench", actor="bench").key
    finally:
        con.close()


def _in_process(path: Path, bodies: list[dict[str, Any]], n: int) -> np.ndarray:
    """Latencies of MarginEngine.what_if called directly (no HTTP), after one warm-up per portfolio."""
    from margincal.data.store import connect
    from margincal.service.backends import MarginEngine
    from margincal.service.schemas import WhatIfRequest

    con = connect(path)
    eng = MarginEngine()
    try:
        def call(b: dict[str, Any]) -> None:
            req = WhatIfRequest.model_validate(b)
            order = {**req.order.model_dump(), "signed_quantity": req.order.signed_quantity}
            eng.what_if(con, [p.model_dump() for p in req.positions], order, method=req.method,
                        flat_vol=req.flat_vol, spot=req.spot)

        for b in bodies:
            call(b)
        lat = []
        for i in range(n):
            t = time.perf_counter()
            call(bodies[i % len(bodies)])
            lat.append(time.perf_counter() - t)
        return np.asarray(lat)
    finally:
        con.close()


@contextlib.contextmanager
def _server(store: Path, port: int):  # type: ignore[no-untyped-def]
    exe = Path(sys.executable).with_name("margincal")
    cmd = [str(exe) if exe.exists() else sys.executable, *([] if exe.exists() else ["-m", "margincal.cli.app"]),
           "serve", "--host", "127.0.0.1", "--port", str(port), "--store", str(store), "--log-level", "warning",
           "--no-access-log"]
    log = store.with_suffix(".log")
    with open(log, "wb") as errf:  # a file, not a pipe: a full pipe would block the server
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=errf, env={**os.environ})
    proc.log = log  # type: ignore[attr-defined]
    try:
        import httpx

        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited: {log.read_text(errors='replace')[-2000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start within 60 s")
            time.sleep(0.1)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _closed_loop(base: str, key: str, bodies: list[dict[str, Any]] | None, conc: int, n: int
                       ) -> tuple[np.ndarray, float, int]:
    """``n`` requests by ``conc`` workers; returns latencies, wall time, errors. None bodies: GET /health."""
    import httpx

    lat: list[float] = []
    errors = 0
    counter = iter(range(n))
    deadline = time.monotonic() + PHASE_LIMIT_S
    limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30.0,
                                 headers={"X-API-Key": key}) as client:
        async def worker() -> None:
            nonlocal errors
            for i in counter:
                if time.monotonic() > deadline:
                    return
                t = time.perf_counter()
                if bodies is None:
                    r = await client.get("/health")
                else:
                    r = await client.post("/api/margin/what-if", json=bodies[i % len(bodies)])
                lat.append(time.perf_counter() - t)
                if r.status_code != 200:
                    errors += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(conc)))
        wall = time.perf_counter() - t0
    return np.asarray(lat), wall, errors


async def _open_loop(base: str, key: str, bodies: list[dict[str, Any]], rate: float, seconds: float
                     ) -> tuple[np.ndarray, float, int, int]:
    """Send at ``rate`` req/s for ``seconds`` on a fixed schedule; latency from the scheduled time.

    A request that fails or is still unanswered ``PHASE_LIMIT_S`` after the schedule ends counts as an
    error (and its latency as at least the time waited), so an overloaded server cannot hide."""
    import httpx

    n = int(rate * seconds)
    lat = np.full(n, np.nan)
    ok = np.zeros(n, dtype=bool)
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=httpx.Timeout(PHASE_LIMIT_S),
                                 headers={"X-API-Key": key}) as client:
        t0 = time.perf_counter()

        async def one(i: int) -> None:
            due = t0 + i / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            try:
                r = await client.post("/api/margin/what-if", json=bodies[i % len(bodies)])
                ok[i] = r.status_code == 200
            except httpx.HTTPError:
                ok[i] = False
            lat[i] = time.perf_counter() - due

        tasks = [asyncio.create_task(one(i)) for i in range(n)]
        _, pending = await asyncio.wait(tasks, timeout=seconds + PHASE_LIMIT_S)
        for t in pending:
            t.cancel()
        wall = time.perf_counter() - t0
    lat = np.where(np.isnan(lat), wall, lat)  # unanswered: at least the whole phase
    return lat, wall, int((~ok).sum()), n


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


def _pct(a: np.ndarray, q: float) -> float:
    return float(np.percentile(a, q)) if a.size else float("nan")


def run(quick: bool = False) -> list[dict[str, Any]]:
    n_per_level = 200 if quick else 1000
    open_seconds = 3.0 if quick else 10.0
    levels = (1, 4, 16, 32)
    bodies = _portfolios(64, 50)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as d:
        store = Path(d) / "bench.duckdb"
        key = _seed(store)
        inproc = _in_process(store, bodies, 100 if quick else 400)
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        with _server(store, port) as proc:
            # warm-up: every portfolio once (builds the cached market for the instrument universe)
            asyncio.run(_closed_loop(base, key, bodies, 4, len(bodies)))
            asyncio.run(_closed_loop(base, key, None, 4, 50))
            http1 = None
            for c in levels:
                print(f"closed loop, {c} client(s)...", file=sys.stderr)
                cpu0 = _cpu_seconds(proc.pid)
                lat, wall, err = asyncio.run(_closed_loop(base, key, bodies, c, n_per_level))
                cpu1 = _cpu_seconds(proc.pid)
                hl, hwall, herr = asyncio.run(_closed_loop(base, key, None, c, n_per_level))
                cpu2 = _cpu_seconds(proc.pid)
                cpu_w, cpu_h = (cpu1 - cpu0) / max(lat.size, 1), (cpu2 - cpu1) / max(hl.size, 1)
                if c == 1:
                    http1 = lat
                rows.append({
                    "section": "service: what-if over HTTP (closed loop)",
                    "name": f"what-if 50 positions, {c} client(s): p50",
                    "ours_s": _pct(lat, 50), "baseline_name": f"GET /health, {c} client(s): p50",
                    "baseline_s": _pct(hl, 50), "ratio": _pct(hl, 50) / _pct(lat, 50),
                    "notes": (f"{lat.size / wall:.0f} req/s, p99 {1e3 * _pct(lat, 99):.1f} ms, errors {err}, "
                              f"server CPU {1e3 * cpu_w:.2f} ms/request; health {hl.size / hwall:.0f} req/s, "
                              f"p99 {1e3 * _pct(hl, 99):.1f} ms, errors {herr}, server CPU {1e3 * cpu_h:.2f} ms/request"),
                })
            print(f"open loop at {TARGET_RATE:.0f} req/s...", file=sys.stderr)
            ol, owall, oerr, on = asyncio.run(_open_loop(base, key, bodies, TARGET_RATE, open_seconds))
            server_log = Path(proc.log).read_text(errors="replace")
            if oerr:
                print(f"open loop: {oerr} errors; server log tail:\n{server_log[-3000:]}", file=sys.stderr)
        p99 = _pct(ol, 99)
        rows.append({
            "section": "service: what-if over HTTP (open loop)",
            "name": f"what-if at {TARGET_RATE:.0f} req/s for {open_seconds:.0f} s: p99",
            "ours_s": p99, "baseline_name": "target p99", "baseline_s": TARGET_P99_S,
            "ratio": TARGET_P99_S / p99,
            "notes": (f"{on} requests, {(on - oerr) / owall:.0f} req/s answered, p50 {1e3 * _pct(ol, 50):.1f} ms, "
                      f"p99 {1e3 * p99:.1f} ms (from the scheduled send time), errors {oerr}; target p99 < 25 ms "
                      f"{'met' if p99 < TARGET_P99_S and oerr == 0 else 'NOT met'}"),
        })
        assert http1 is not None
        rows.append({
            "section": "service: what-if over HTTP (closed loop)",
            "name": "what-if over HTTP, 1 client: p50",
            "ours_s": _pct(http1, 50), "baseline_name": "same what-if in process (MarginEngine, no HTTP): p50",
            "baseline_s": _pct(inproc, 50), "ratio": _pct(inproc, 50) / _pct(http1, 50),
            "notes": f"in process p99 {1e3 * _pct(inproc, 99):.1f} ms; HTTP p99 {1e3 * _pct(http1, 99):.1f} ms",
        })
    load = os.getloadavg()
    for r in rows:
        r["notes"] += f"; load average {load[0]:.1f} on {os.cpu_count()} cores at the end"
    return rows


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(f"{row['name']:<52} {1e3 * row['ours_s']:8.2f} ms | {row['baseline_name']:<52} "
              f"{1e3 * row['baseline_s']:8.2f} ms | ratio {row['ratio']:.3f} | {row['notes']}")
