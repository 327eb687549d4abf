"""Crash safety: SIGKILL the real `margincal monitor` process mid-run, check the store, restart, compare.

The monitor runs as a separate process (the console script of this venv) on a
temporary store, paced with --speed so that it is killed (SIGKILL: no cleanup
at all) while it is publishing the FTX-week adjustments. Then:

* the audit hash chain verifies and every parameter-set version has all its rows;
* nothing is half-published: versions, proposals, audit entries and the
  checkpoint all correspond to whole transactions;
* a restart resumes after the checkpointed event (no duplicate, no gap: the
  events of both runs add up to the events of an uninterrupted run) and ends
  with exactly the versions and proposals of an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from margincal.adjust import approval as AP
from margincal.adjust.monitor import Monitor, load_checkpoint
from margincal.adjust.policy import load_policy
from margincal.data import audit
from margincal.data.feeds import ReplayFeed
from margincal.data.store import connect
from margincal.margin import params as P

ARGS = ["monitor", "--replay", "--from", "2022-11-05", "--to", "2022-11-12", "--warmup-days", "14", "--json",
        "--live-store"]  # crash semantics of the store the monitor writes (here the live one)
NAME = "replay:all:2022-11-05:2022-11-12"


def _cli() -> list[str]:
    script = Path(sys.executable).parent / "margincal"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "margincal.cli.app"]


def _outcome(path: Path) -> tuple[list, list]:
    con = connect(path, read_only=True)
    try:
        versions = []
        for v in range(2, (P.latest_version(con) or 1) + 1):
            ps = P.load(con, v)
            adj = ps.provenance["adjustment"]
            versions.append((adj["instrument"], adj["ts"], adj["im_before"], adj["im_after"],
                             tuple(sorted((k, p.im_rate, p.mm_rate) for k, p in ps.params.items()))))
        props = [(p.changes[0]["instrument"], p.evidence["event_ts"], p.changes[0]["im_before"],
                  p.changes[0]["im_after"]) for p in AP.list_proposals(con)]
    finally:
        con.close()
    return versions, props


def _check_store(path: Path) -> dict:
    con = connect(path)  # a writer open replays DuckDB's WAL of the killed process
    try:
        rep = audit.verify_chain(con)
        assert rep.ok, rep.reason
        heads = con.execute("SELECT version FROM parameter_sets ORDER BY version").fetchall()
        for (v,) in heads:
            n = con.execute("SELECT count(*) FROM parameter_rows WHERE version = ?", [v]).fetchone()[0]
            assert n == 2, f"version {v} has {n} rows"
        n_pub = con.execute("SELECT count(*) FROM audit_log WHERE action = 'publish'").fetchone()[0]
        n_auto = con.execute("SELECT count(*) FROM audit_log WHERE action = 'auto_adjust'").fetchone()[0]
        n_prop = con.execute("SELECT count(*) FROM audit_log WHERE action = 'propose'").fetchone()[0]
        assert n_pub == len(heads) and n_auto == len(heads) - 1
        assert n_prop == con.execute("SELECT count(*) FROM proposals").fetchone()[0]
        state = load_checkpoint(con, NAME)
    finally:
        con.close()
    return state or {}


@pytest.mark.slow
@pytest.mark.parametrize("group_commit", ["0", "1.0"])
def test_sigkill_mid_run_then_resume(ftx_store, tmp_path, group_commit):
    ref = tmp_path / "ref.duckdb"
    shutil.copy(ftx_store, ref)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    # uninterrupted reference run, in-process through the same API the command uses
    start = pd.Timestamp("2022-11-05", tz="UTC")
    end = pd.Timestamp("2022-11-13", tz="UTC") - pd.Timedelta(1, "ns")  # --to 2022-11-12 includes the day
    ref_rep = Monitor(ref, load_policy(None), name=NAME, live_from=start).run(
        ReplayFeed(ref, None, start - pd.Timedelta(days=14), end))
    ref_summary = ref_rep.as_dict()
    ref_out = _outcome(ref)
    assert len(ref_out[0]) >= 6

    # paced run, killed with SIGKILL after its third published version
    # (--group-commit 1.0: decisions of up to one second are written together, in one transaction)
    proc = subprocess.Popen(_cli() + ARGS + ["--store", str(ftx_store), "--speed", "100000",
                                             "--group-commit", group_commit],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    seen = 0
    t0 = time.monotonic()
    try:
        for line in proc.stdout:  # type: ignore[union-attr]
            rec = json.loads(line)
            if rec.get("type") == "adjustment" and "version" in rec:
                seen += 1
                if seen == 3:
                    break
            assert time.monotonic() - t0 < 240
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL and seen == 3

    state = _check_store(ftx_store)
    assert state, "a checkpoint is written in the same transaction as every publish"
    got = _outcome(ftx_store)
    n_v = len(got[0])
    assert 3 <= n_v < len(ref_out[0])
    assert got[0] == ref_out[0][:n_v]  # whole versions only, identical to the reference's first ones
    assert got[1] == ref_out[1][:len(got[1])]
    done_before = state["events_processed"]

    # restart: resumes after the checkpoint and finishes
    again = subprocess.run(_cli() + ARGS + ["--store", str(ftx_store)], capture_output=True, text=True, env=env,
                           timeout=300)
    assert again.returncode == 0, again.stderr
    lines = [json.loads(x) for x in again.stdout.strip().splitlines()]
    assert lines[0]["type"] == "resume" and lines[0]["after"] == state["last_key"]
    summary = lines[-1]
    assert summary["events"] + done_before == ref_summary["events"] == summary["events_total"]
    after_ts = pd.Timestamp(state["last_key"][0], tz="UTC")
    printed = [x for x in lines if x["type"] in ("signal", "adjustment", "proposal")]
    assert printed and all(pd.Timestamp(x["ts"]) >= after_ts for x in printed)  # nothing before the resume point
    _check_store(ftx_store)
    assert _outcome(ftx_store) == ref_out
