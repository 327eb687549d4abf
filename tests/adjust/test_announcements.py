"""Announced MM changes read back from the store agree with what the monitor streamed when it decided them."""

from __future__ import annotations

import json

import pandas as pd
from typer.testing import CliRunner

from margincal.adjust.announcements import announcements
from margincal.adjust.monitor import Monitor
from margincal.cli.app import app
from margincal.data.feeds import ReplayFeed
from margincal.data.store import connect


def test_announcements_match_the_monitor_stream(ftx_store):
    records: list[dict] = []
    mon = Monitor(ftx_store, name="ann", live_from="2022-11-01")
    mon.run(ReplayFeed(ftx_store, ["BTC-PERP", "ETH-PERP"], pd.Timestamp("2022-10-01", tz="UTC"), "2022-11-12"),
            on_output=lambda ev, sigs, recs: records.extend(recs))
    autos = [r for r in records if r["type"] == "adjustment" and "skipped" not in r]
    announced = {(r["instrument"], r["version"]): r for r in autos if r.get("mm_scheduled") is not None}
    applied = [r for r in autos if r["kind"] == "mm_effective"]
    assert len(announced) >= 4 and applied
    con = connect(ftx_store, read_only=True)
    try:
        got = announcements(con)
        # the CLI lists the same (newest first)
        res = CliRunner().invoke(app, ["params", "announcements", "--store", str(ftx_store), "--json"])
    finally:
        con.close()
    assert res.exit_code == 0, res.output
    assert json.loads(res.output) == got
    by_version = {(a["instrument"], a["announced_version"]): a for a in got}
    assert set(by_version) == set(announced)
    for key, r in announced.items():
        a = by_version[key]
        assert a["mm_after"] == r["mm_scheduled"] and a["effective_at"] == r["mm_effective_at"]
        assert a["mm_before"] == r["mm_after"]  # MM in force right after the announcing version
        assert a["announced_at"] == r["ts"] and a["im_at_announcement"] == r["im_after"]
    # every MM change that took effect applied one announcement: same instrument, rate and effective time
    for r in applied:
        hit = [a for a in got if a["applied_version"] == r["version"]]
        assert len(hit) == 1 and hit[0]["instrument"] == r["instrument"] and hit[0]["mm_after"] == r["mm_after"]
        assert hit[0]["effective_at"] == r["effective_at"] and hit[0]["status"] == "applied"
    # the replay stopped before some announcements took effect: they are pending, with effective times after
    # the last event
    pending = [a for a in got if a["status"] == "pending"]
    assert all(a["applied_version"] is None for a in pending)
    assert {a["status"] for a in got} <= {"pending", "applied", "superseded"}


def test_cli_announcements_errors_and_empty(ftx_store):
    run = CliRunner().invoke
    res = run(app, ["params", "announcements", "--store", str(ftx_store), "--status", "later"])
    assert res.exit_code == 2 and "status is 'later'; it must be one of pending, applied, superseded" in res.output
    res = run(app, ["params", "announcements", "--store", str(ftx_store)])
    assert res.exit_code == 0 and "no MM change has been announced" in res.output
