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
    assert len(set(sigs)) == len(sigs), "a signal printed twice"
    assert len(set(props)) == len(props), "a proposal printed twice (apart from its consecutive per-instrument lines)"
    # every stored signal printed once; printed in event (insertion) order. The signals table has no sequence
    # column (DuckDB's rowid is not insertion order across transactions), so order is checked on the stream
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


def test_json_stream_across_sigkills_never_duplicates_nor_invents(ftx_store) -> None:
    """Issue 16 item 10, what holds across SIGKILLs: kill the `--json` replay mid-stream and rerun the same
    command (it resumes from its checkpoint); the lines of all runs together never deliver a signal or a
    proposal twice, and never one the store does not hold (a line is printed only after its group commits).

    What does NOT hold (issue 16 note): lines committed but not yet printed when the kill lands are not
    printed by the resumed run - at most once, not exactly once. Exactly once needs a cursor over an
    insertion sequence, which the signals table does not have."""
    import signal
    import time

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "margincal", *ARGS, "--store", str(ftx_store)]
    lines: list[dict] = []
    kills = 0
    for delay in (0.3, 0.6, 1.0):
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
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
        # a line cut by the kill is not a delivered line
        lines += [json.loads(x) for x in got if x.endswith("\n") and x.strip()]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)  # the run that finishes
    assert res.returncode == 0, res.stderr[-2000:]
    lines += [json.loads(x) for x in res.stdout.splitlines() if x.strip()]
    assert kills >= 1
    sigs = [_key(x["ts"], x["instrument"], x["kind"], x["severity"]) for x in lines if x["type"] == "signal"]
    pids = {x["proposal_id"] for x in lines if x["type"] in ("proposal", "adjustment") and x.get("proposal_id")}
    con = connect(ftx_store, read_only=True)
    try:
        stored_sigs = [_key(*r) for r in con.execute("SELECT ts, instrument, kind, severity FROM signals").fetchall()]
        stored_pids = {r[0] for r in con.execute("SELECT proposal_id FROM proposals").fetchall()}
    finally:
        con.close()
    assert len(set(sigs)) == len(sigs), "a signal delivered twice across the kills"
    assert set(sigs) <= set(stored_sigs) and pids <= stored_pids  # nothing uncommitted is delivered
    assert len(sigs) >= len(stored_sigs) // 2  # the streams did deliver (most of) the replay
