"""Fault injection (issue 16 item 12): SIGKILL real processes while they ingest and publish, run writers
concurrently, and read while `margincal serve` holds the store; then count what went wrong.

Used by tests/ops/test_faults.py (a few kills each) and by docs/make_reliability.py (the full loops, whose
counts are docs/reliability.md). Every function returns a :class:`Counts` - kills, rows lost, duplicates,
half-written results, tracebacks, audit failures - whose "bad" fields must all be zero.

* ingest: ``margincal ingest`` (the console script) of hourly BTC-USDT bars split into files, each killed
  with SIGKILL after a staggered delay. After each kill the file's rows are either all stored or none
  (a half-ingested file counts as ``partial``); then every file is ingested again to completion (what an
  operator does after a crash) and the store must hold every row of the source once, with its values.
* publish: a child process publishes through the proposal/decision path (``approval.submit``, the function
  ``calibrate`` and the monitor call), one scoped version per step, printing each version once committed;
  it is killed at staggered moments. Every printed version must be in the store (``lost``), every version
  whole (its rows, its proposal, its decision and its audit entry: ``partial``), no version equal to the one
  before it (``duplicates``), and the audit chain must verify.
* concurrent: two processes ingest the same file at once, and two publish at once; both must finish
  (the second waits for the store's lock) with the store as above.
* serve: a read-only command while ``margincal serve`` holds the store must fail at once with one line
  naming the lock and exit 2, without a traceback.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from margincal import datasets
from margincal.data import audit
from margincal.data.store import connect

INSTRUMENT = "BTC-USDT"

# One publishing step of the child: K instruments, IM raised by 5 bp per step from the live set's (an increase within the policy's
# automatic bound, so system:calibrate applies it), MM half of IM. Runs until killed or N steps are done.
_PUBLISHER = r"""
import sys
from margincal.adjust.approval import SYSTEM_CALIBRATE, submit
from margincal.data.store import open_store
from margincal.margin.params import InstrumentParams, ParameterSet, latest_version, load

store, tag, k, steps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
for i in range(steps):
    with open_store(store) as con:
        v = latest_version(con)
        cur = load(con, v).params.get(f"{tag}0-USDT") if v is not None else None
        im = round(cur.im_rate + 0.0005, 4) if cur is not None else 0.05  # a rerun goes on from the live set
        params = {f"{tag}{j}-USDT": InstrumentParams(f"{tag}{j}-USDT", im, round(im / 2, 5)) for j in range(k)}
        sub = submit(con, ParameterSet(params=params, provenance={"fault": tag, "step": i}),
                     author=f"fault-{tag.lower()}", system=SYSTEM_CALIBRATE, source="calibration",
                     reason=f"fault injection {tag} step {i}")
    if not sub.applied:
        print(f"NOT APPLIED {sub.pending_reason}", flush=True)
        sys.exit(3)
    print(sub.version, flush=True)
"""


@dataclass
class Counts:
    """What one fault scenario found. ``kills`` and ``runs`` describe the work; the rest must be zero."""

    scenario: str
    runs: int = 0
    kills: int = 0
    rows: int = 0  # rows (bars) or versions checked at the end
    lost: int = 0  # committed (reported) rows or versions missing from the store
    duplicates: int = 0  # rows stored twice, or a version identical to the one before it
    partial: int = 0  # half-ingested files or half-published versions
    tracebacks: int = 0  # Python tracebacks printed by any process
    audit_failures: int = 0
    other_failures: int = 0  # a process that should have finished did not (exit code, message)
    notes: list[str] = field(default_factory=list)

    def bad(self) -> int:
        return self.lost + self.duplicates + self.partial + self.tracebacks + self.audit_failures + \
            self.other_failures

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def cli() -> list[str]:
    script = Path(sys.executable).parent / "margincal"
    return [str(script)] if script.exists() else [sys.executable, "-m", "margincal.cli.app"]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "NO_COLOR": "1", "COLUMNS": "200"}


def bar_files(folder: Path, n_files: int, rows_per_file: int) -> list[tuple[Path, pd.DataFrame]]:
    """The bundled hourly BTC-USDT bars, first ``n_files * rows_per_file`` of them, split into CSV files."""
    bars = datasets.load_hourly("BTC").iloc[: n_files * rows_per_file]
    out = []
    for i in range(n_files):
        part = bars.iloc[i * rows_per_file:(i + 1) * rows_per_file]
        path = folder / f"bars_{i}.csv"
        frame = part.reset_index()
        frame["timestamp"] = frame["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
        frame.to_csv(path, index=False)
        out.append((path, part))
    return out


def _ingest_cmd(path: Path, store: Path) -> list[str]:
    return cli() + ["ingest", str(path), "-i", INSTRUMENT, "-t", "1h", "--store", str(store)]


def _stored(store: Path, lo: pd.Timestamp | None = None, hi: pd.Timestamp | None = None) -> pd.DataFrame:
    con = connect(store, read_only=True)
    try:
        q = "SELECT ts, close FROM bars WHERE instrument = ? AND timeframe = '1h'"
        args: list[Any] = [INSTRUMENT]
        if lo is not None:
            q += " AND ts >= ? AND ts <= ?"
            args += [lo.tz_localize(None), hi.tz_localize(None)]  # type: ignore[union-attr]
        return con.execute(q, args).df()
    finally:
        con.close()


def _audit_ok(store: Path) -> bool:
    con = connect(store)  # a writer open replays the WAL a killed process left
    try:
        return bool(audit.verify_chain(con).ok)
    finally:
        con.close()


def _tb(text: str) -> int:
    return int("Traceback (most recent call last)" in text)


def _kill_after(cmd: list[str], delay: float, *, after_first_line: bool = False) -> tuple[bool, str, str, int]:
    """Run ``cmd``, SIGKILL it after ``delay`` seconds if still running; (killed, stdout, stderr, returncode).

    ``after_first_line``: the delay counts from the first line the child prints (its first committed
    step), not from its start, so a loaded machine's slow interpreter start-up cannot eat the window."""
    import select

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    assert proc.stdout is not None and proc.stderr is not None
    first = ""
    if after_first_line and select.select([proc.stdout], [], [], 300)[0]:
        first = proc.stdout.readline()
    try:
        proc.wait(timeout=delay)
        killed = False
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        killed = True
    # read through the text wrappers (readline may have buffered more than the first line)
    out, err = first + proc.stdout.read(), proc.stderr.read()
    proc.wait(timeout=120)
    return killed, out, err, proc.returncode


def _check_bars(c: Counts, store: Path, files: list[tuple[Path, pd.DataFrame]]) -> None:
    src = pd.concat([part for _, part in files])
    got = _stored(store)
    c.rows = len(got)
    c.duplicates += int(got["ts"].duplicated().sum())
    got_ts = pd.DatetimeIndex(pd.to_datetime(got["ts"])).tz_localize("UTC") if len(got) else pd.DatetimeIndex([])
    c.lost += int((~src.index.isin(got_ts)).sum())
    if len(got):
        merged = src["close"].reindex(got_ts)
        wrong = int((~pd.Series(merged.to_numpy() == got["close"].to_numpy())).sum())
        if wrong:
            c.other_failures += 1
            c.notes.append(f"{wrong} stored close(s) differ from the source")
    if not _audit_ok(store):
        c.audit_failures += 1


def ingest_kill_loop(folder: Path, kills: int, rows_per_file: int = 4000) -> Counts:
    """SIGKILL ``margincal ingest`` of one file per kill; then ingest every file to completion and check.

    The kill moments are spread over the duration of an uninterrupted ingest of one file (timed first, into a
    scratch store): at (i + 0.5) / kills of it, from start-up to the final commit."""
    c = Counts("ingest: SIGKILL during `margincal ingest`, then rerun")
    store = folder / "ingest.duckdb"
    files = bar_files(folder, kills, rows_per_file)
    t0 = time.monotonic()
    subprocess.run(_ingest_cmd(files[0][0], folder / "scratch.duckdb"), check=True, capture_output=True, env=_env(),
                   timeout=600)
    took = time.monotonic() - t0
    delays = [took * (i + 0.5) / kills for i in range(kills)]
    c.notes.append(f"an uninterrupted ingest of one file took {took:.1f} s; kills at "
                   f"{', '.join(f'{d:.1f}' for d in delays)} s")
    for (path, part), delay in zip(files, delays, strict=True):
        killed, _, err, rc = _kill_after(_ingest_cmd(path, store), delay)
        c.runs += 1
        c.kills += killed
        c.tracebacks += _tb(err)
        if not killed and rc != 0:
            c.other_failures += 1
            c.notes.append(f"ingest of {path.name} exited {rc}: {err.strip()[-200:]}")
        if store.exists():
            _audit_ok(store)  # recover the WAL with a writer open, then look
            n = len(_stored(store, part.index[0], part.index[-1]))
            if n not in (0, len(part)):
                c.partial += 1
                c.notes.append(f"{path.name}: {n} of {len(part)} rows stored after the kill")
    for path, _ in files:
        done = subprocess.run(_ingest_cmd(path, store), capture_output=True, text=True, env=_env(), timeout=600)
        c.runs += 1
        c.tracebacks += _tb(done.stderr)
        if done.returncode != 0:
            c.other_failures += 1
            c.notes.append(f"rerun of {path.name} exited {done.returncode}: {done.stderr.strip()[-200:]}")
    _check_bars(c, store, files)
    return c


def _publisher(store: Path, tag: str, k: int, steps: int) -> list[str]:
    return [sys.executable, "-c", _PUBLISHER, str(store), tag, str(k), str(steps)]


def _check_versions(c: Counts, store: Path, reported: set[int]) -> None:
    """Every reported version stored; every version whole; none equal to its predecessor; audit verifies."""
    con = connect(store)
    try:
        c.audit_failures += int(not audit.verify_chain(con).ok)
        heads = [v for (v,) in con.execute("SELECT version FROM parameter_sets ORDER BY version").fetchall()]
        c.rows = len(heads)
        c.lost += len(reported - set(heads))
        prev: tuple[Any, ...] | None = None
        prev_names: set[str] = set()
        for v in heads:
            rows = con.execute("SELECT instrument, im_rate, mm_rate FROM parameter_rows WHERE version = ? "
                               "ORDER BY instrument", [v]).fetchall()
            names = {r[0] for r in rows}
            n_pub = con.execute("SELECT count(*) FROM audit_log WHERE action = 'publish' AND subject = ?",
                                [f"parameter_set:{v}"]).fetchone()[0]
            n_dec = con.execute("SELECT count(*) FROM proposal_decisions WHERE published_version = ?",
                                [v]).fetchone()[0]
            if not rows or not prev_names <= names or n_pub != 1 or n_dec != 1:
                c.partial += 1
                c.notes.append(f"v{v}: {len(rows)} rows, {n_pub} publish entries, {n_dec} decisions")
            key = tuple(rows)
            if key == prev:
                c.duplicates += 1
            prev, prev_names = key, names
        orphans = con.execute("SELECT count(*) FROM proposals p LEFT JOIN proposal_decisions d USING (proposal_id) "
                              "WHERE d.proposal_id IS NULL").fetchone()[0]
        if orphans:  # every step applies automatically: a proposal without its decision is half a submission
            c.partial += orphans
            c.notes.append(f"{orphans} proposal(s) without their decision")
    finally:
        con.close()


def publish_kill_loop(folder: Path, delays: list[float], k: int = 12, steps: int = 400) -> Counts:
    """SIGKILL a process publishing through the proposal/decision path at each delay, then check the store."""
    c = Counts("publish: SIGKILL during proposal + automatic decision + publication")
    store = folder / "publish.duckdb"
    reported: set[int] = set()
    for delay in delays:
        killed, out, err, rc = _kill_after(_publisher(store, "P", k, steps), delay, after_first_line=True)
        c.runs += 1
        c.kills += killed
        c.tracebacks += _tb(err)
        if not killed and rc != 0:
            c.other_failures += 1
            c.notes.append(f"publisher exited {rc}: {err.strip()[-300:]}")
        reported |= {int(x) for x in out.split() if x.isdigit()}
    _check_versions(c, store, reported)
    return c


def concurrent_writers(folder: Path, rows_per_file: int = 4000, steps: int = 15) -> Counts:
    """Two processes ingest the same file at once; then two processes publish at once (different instruments)."""
    c = Counts("concurrent: two ingests of one file, then two publishers, at once")
    # a script does not wait for a held store unless told (--wait / MARGINCAL_WAIT); here each waits its turn
    wait_env = {**_env(), "MARGINCAL_WAIT": "300"}
    store = folder / "concurrent.duckdb"
    files = bar_files(folder, 1, rows_per_file)
    procs = [subprocess.Popen(_ingest_cmd(files[0][0], store), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True, env=wait_env) for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        c.runs += 1
        c.tracebacks += _tb(err)
        if p.returncode != 0:
            c.other_failures += 1
            c.notes.append(f"concurrent ingest exited {p.returncode}: {err.strip()[-200:]}")
    _check_bars(c, store, files)
    n_bars = c.rows
    procs = [subprocess.Popen(_publisher(store, tag, 6, steps), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=wait_env) for tag in ("A", "B")]
    reported: set[int] = set()
    n_reported = 0
    for p in procs:
        out, err = p.communicate(timeout=600)
        c.runs += 1
        c.tracebacks += _tb(err)
        if p.returncode != 0:
            c.other_failures += 1
            c.notes.append(f"concurrent publisher exited {p.returncode}: {err.strip()[-300:]}")
        got = [int(x) for x in out.split() if x.isdigit()]
        reported |= set(got)
        n_reported += len(got)
    c.duplicates += n_reported - len(reported)  # two writers told the same version number
    _check_versions(c, store, reported)
    if c.rows != 2 * steps:
        c.other_failures += 1
        c.notes.append(f"{c.rows} versions, expected {2 * steps}")
    c.rows += n_bars
    return c


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def read_while_serving(folder: Path, reads: int = 2, lock_timeout: float = 1.0) -> Counts:
    """`margincal serve` holds the store; read-only commands must fail at once: one line, exit 2, no traceback."""
    c = Counts("serve holds the store: read-only commands")
    store = folder / "served.duckdb"
    files = bar_files(folder, 1, 500)
    subprocess.run(_ingest_cmd(files[0][0], store), check=True, capture_output=True, env=_env(), timeout=600)
    port = _free_port()
    serve = subprocess.Popen(cli() + ["serve", "--store", str(store), "--port", str(port)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_env())
    try:
        t0 = time.monotonic()
        while True:  # up when the port answers
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if serve.poll() is not None or time.monotonic() - t0 > 120:
                c.other_failures += 1
                c.notes.append("serve did not start")
                return c
            time.sleep(0.2)
        env = {**_env(), "MARGINCAL_WAIT": str(lock_timeout)}
        for cmd in (["params", "history"], ["audit", "verify"])[:reads]:
            r = subprocess.run(cli() + [*cmd, "--store", str(store)], capture_output=True, text=True, env=env,
                               timeout=300)
            c.runs += 1
            c.tracebacks += _tb(r.stderr)
            lines = [x for x in r.stderr.splitlines() if x.strip()]
            # the wait's notice ("the store is locked by PID ...; waiting up to 1 s more"), then ONE error line
            waits = [x for x in lines[:-1] if "waiting up to" in x]
            if r.returncode != 2 or not lines or len(lines) - len(waits) != 1 or "lock" not in lines[-1]:
                c.other_failures += 1
                c.notes.append(f"{' '.join(cmd)}: exit {r.returncode}, stderr {r.stderr.strip()[:300]!r}")
    finally:
        serve.send_signal(signal.SIGTERM)
        try:
            serve.wait(timeout=30)
        except subprocess.TimeoutExpired:
            serve.kill()
            serve.wait(timeout=30)
    return c
