"""Signals the monitor raises are persisted (with its checkpoints), exactly once across a crash and restart."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from margincal.adjust import monitor as M
from margincal.adjust.monitor import Monitor
from margincal.data.feeds import ReplayFeed
from margincal.data.store import connect

FROM, TO = "2022-11-05", "2022-11-11 23:59"


def _feed(path, after=None):
    return ReplayFeed(path, ["BTC-PERP", "ETH-PERP"], pd.Timestamp(FROM, tz="UTC") - pd.Timedelta(days=14), TO,
                      after=after)


def _stored(path) -> list[tuple]:
    con = connect(path, read_only=True)
    try:
        return con.execute("SELECT ts, instrument, kind, severity, reason FROM signals WHERE monitor = 't' "
                           "ORDER BY ts, instrument, kind, severity").fetchall()
    finally:
        con.close()


def test_signals_are_stored_once_with_reason_and_values(ftx_store_template, tmp_path):
    path = tmp_path / "s.duckdb"
    shutil.copy(ftx_store_template, path)
    seen: list = []
    rep = Monitor(path, name="t", live_from=FROM).run(
        _feed(path), on_output=lambda ev, sigs, recs: seen.extend(sigs))
    rows = _stored(path)
    assert rep.signals == len(seen) == len(rows) >= 4
    expect = sorted((pd.Timestamp(s.ts).tz_convert("UTC").tz_localize(None), s.instrument, s.kind, s.severity,
                     s.reason) for s in seen)
    assert [tuple(r) for r in rows] == [(pd.Timestamp(e[0]).to_pydatetime(), *e[1:]) for e in expect]
    con = connect(path, read_only=True)
    vals = con.execute('SELECT "values" FROM signals LIMIT 1').fetchone()[0]
    con.close()
    assert vals.startswith("{")


def test_crash_and_restart_leave_each_signal_exactly_once(ftx_store_template, tmp_path, monkeypatch):
    ref_path = tmp_path / "ref.duckdb"
    shutil.copy(ftx_store_template, ref_path)
    Monitor(ref_path, name="t", live_from=FROM).run(_feed(ref_path))
    reference = _stored(ref_path)

    path = tmp_path / "crash.duckdb"
    shutil.copy(ftx_store_template, path)
    real = M.GroupWriter.propose
    calls = {"n": 0}

    def failing(self, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("killed while proposing")
        return real(self, **k)

    # commit after every event with a decision (no grouping), so that the first decisions are stored
    monkeypatch.setattr(M.GroupWriter, "propose", failing)
    with pytest.raises(RuntimeError):
        Monitor(path, name="t", live_from=FROM, commit_latency_s=0.0).run(_feed(path))
    monkeypatch.setattr(M.GroupWriter, "propose", real)
    partial = _stored(path)
    assert len(partial) < len(reference)  # the crash lost what was not yet checkpointed ...
    mon = Monitor(path, name="t", live_from=FROM)
    mon.run(_feed(path, after=mon.resume_key()))
    assert _stored(path) == reference  # ... and the replay after the checkpoint restored it, without duplicates
