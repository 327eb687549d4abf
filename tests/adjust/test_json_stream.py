"""`monitor --json` delivers every committed signal and proposal exactly once, in insertion order (issue 16
item 10): the printed lines of a replay are compared with the store's signals and proposals tables."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from margincal.data.store import connect

ARGS = ["monitor", "--replay", "--from", "2022-11-05", "--to", "2022-11-12", "--warmup-days", "14", "--json",
        "--live-store"]


def _key(ts: object, instrument: str, kind: str, severity: str) -> tuple[str, str, str, str]:
    return (pd.Timestamp(ts).tz_localize(None).isoformat() if pd.Timestamp(ts).tzinfo else pd.Timestamp(ts).isoformat(),
            instrument, kind, severity)


@pytest.mark.slow
def test_json_stream_is_the_store_exactly_once_in_order(ftx_store) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    res = subprocess.run([sys.executable, "-m", "margincal", *ARGS, "--store", str(ftx_store)], capture_output=True,
                         text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    lines = [json.loads(x) for x in res.stdout.splitlines() if x.strip()]
    sigs = [_key(x["ts"], x["instrument"], x["kind"], x["severity"]) for x in lines if x["type"] == "signal"]
    # one line per change: a batched proposal (decreases of several instruments) prints one line per instrument,
    # consecutively, all with its id. An automatic step is a proposal too (decided at once by system:monitor):
    # its `adjustment` lines carry the proposal id
    props: list[str] = []
    changes: dict[str, list[str]] = {}
    for x in lines:
        if x["type"] in ("proposal", "adjustment") and x.get("proposal_id"):
            pid = x["proposal_id"]
            if not props or props[-1] != pid:
                props.append(pid)
            changes.setdefault(pid, []).append(x["instrument"])
    con = connect(ftx_store, read_only=True)
    try:
        stored_sigs = [_key(*r) for r in con.execute(
            "SELECT ts, instrument, kind, severity FROM signals ORDER BY rowid").fetchall()]
        stored = con.execute("SELECT proposal_id, changes FROM proposals ORDER BY rowid").fetchall()
        stored_props = [r[0] for r in stored]
        stored_changes = {r[0]: [c["instrument"] for c in json.loads(r[1])] for r in stored}
    finally:
        con.close()
    assert stored_sigs, "the replay window has signals"
    cursors = [x["cursor"] for x in lines if "cursor" in x]
    assert cursors == list(range(1, len(cursors) + 1))  # the outbox cursor numbers the stream's lines
    assert len(set(sigs)) == len(sigs), "a signal printed twice"
    assert len(set(props)) == len(props), "a proposal printed twice (apart from its consecutive per-instrument lines)"
    # every stored signal printed once; printed in event (market-time) order
    assert sorted(sigs) == sorted(stored_sigs)
    assert [k[0] for k in sigs] == sorted(k[0] for k in sigs)
    assert sorted(props) == sorted(stored_props)
    ts = [x["ts"] for x in lines if x["type"] in ("proposal", "adjustment") and x.get("proposal_id")]
    assert ts == sorted(ts)  # in event order
    assert changes == stored_changes


def test_replay_off_a_terminal_prints_progress_lines(ftx_store) -> None:
    """Issue 16 item 8: `monitor --replay` with stderr not a terminal reports progress as periodic plain lines
    (the shared LogProgress), in market-time order; the summary line follows."""
    import re

    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MARGINCAL_PROGRESS_SECONDS": "0.01"}
    args = [a for a in ARGS if a not in ("--json", "--live-store")]
    res = subprocess.run([sys.executable, "-m", "margincal", *args, "--store", str(ftx_store)], capture_output=True,
                         text=True, env=env, timeout=600, stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stderr[-2000:]
    pat = re.compile(r"^monitor: ([\d,]+) done \(events, market time (\d{4}-\d\d-\d\d \d\d:\d\d)\), \d+\.\d s$")
    hits = [m for m in map(pat.match, res.stderr.splitlines()) if m]
    assert hits, res.stderr[-2000:]
    counts = [int(m.group(1).replace(",", "")) for m in hits]
    times = [m.group(2) for m in hits]
    assert counts == sorted(counts) and times == sorted(times)
    assert any(x.startswith("processed ") for x in res.stderr.splitlines())  # the exact count follows


def test_json_stream_across_sigkills_is_exactly_once_from_the_cursor(ftx_store) -> None:
    """Issue 16 item 10 across SIGKILLs: kill the `--json` replay mid-stream, then rerun the same command with
    `--after <cursor of the last whole line received>` (it resumes from its checkpoint and first prints what
    was committed after that cursor). The lines of all runs together carry the cursors 1..N once each, in
    order, and deliver every stored signal and proposal exactly once - also the lines a kill cut or that were
    committed but not yet printed when it landed."""
    import signal
    import time

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "margincal", *ARGS, "--store", str(ftx_store)]
    lines: list[dict] = []
    kills = 0
    for delay in (0.3, 0.6, 1.0):
        cursor = max((x["cursor"] for x in lines if "cursor" in x), default=0)
        p = subprocess.Popen(cmd + ["--after", str(cursor)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             text=True, env=env)
        assert p.stdout is not None
        got: list[str] = []
        first = p.stdout.readline()  # wait until the replay streams
        if first:
            got.append(first)
        time.sleep(delay)
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            kills += 1
        # read through the same text wrapper as readline (communicate() reads the raw pipe and would skip
        # what the wrapper has already buffered)
        got += p.stdout.read().splitlines(keepends=True)
        p.wait(timeout=120)
        # a line cut by the kill is not a delivered line (the next run delivers it again, after the cursor)
        lines += [json.loads(x) for x in got if x.endswith("\n") and x.strip()]
    cursor = max((x["cursor"] for x in lines if "cursor" in x), default=0)
    res = subprocess.run(cmd + ["--after", str(cursor)], capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    lines += [json.loads(x) for x in res.stdout.splitlines() if x.strip()]
    assert kills >= 1
    cursors = [x["cursor"] for x in lines if "cursor" in x]
    assert cursors == list(range(1, len(cursors) + 1))  # every committed line once, in commit order
    assert all(x["type"] in ("signal", "proposal", "adjustment") for x in lines if "cursor" in x)
    sigs = [_key(x["ts"], x["instrument"], x["kind"], x["severity"]) for x in lines if x["type"] == "signal"]
    pids = {x["proposal_id"] for x in lines if x["type"] in ("proposal", "adjustment") and x.get("proposal_id")}
    con = connect(ftx_store, read_only=True)
    try:
        stored_sigs = [_key(*r) for r in con.execute("SELECT ts, instrument, kind, severity FROM signals").fetchall()]
        stored_pids = {r[0] for r in con.execute("SELECT proposal_id FROM proposals").fetchall()}
    finally:
        con.close()
    assert stored_sigs, "the replay window has signals"
    assert sorted(sigs) == sorted(stored_sigs)  # each stored signal delivered exactly once
    assert pids == stored_pids


def test_after_is_checked_before_anything_is_written(ftx_store, tmp_path) -> None:
    """`--after` needs --json, a whole number, a cursor this monitor reached; refused in one line, exit 2."""
    import shutil

    store = tmp_path / "s.duckdb"
    shutil.copy(ftx_store, store)
    before = store.read_bytes()
    base = [sys.executable, "-m", "margincal", *ARGS, "--store", str(store)]
    for extra, needle in ((["--after", "x1"], "--after"), (["--after", "-3"], "--after"),
                          (["--after", "5"], "past the last line"), (["--after", "0", "--fresh"], "--fresh")):
        res = subprocess.run(base + extra, capture_output=True, text=True, timeout=120)
        assert res.returncode == 2, (extra, res.stderr[-1000:])
        assert needle in res.stderr and "Traceback" not in res.stderr
        assert len([ln for ln in res.stderr.splitlines() if ln.strip()]) == 1, res.stderr
    res = subprocess.run([a for a in base if a != "--json"] + ["--after", "0"], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 2 and "--json" in res.stderr
    assert store.read_bytes() == before
