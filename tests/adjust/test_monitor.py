"""Monitor: persisted adjustments/proposals with evidence, atomic writes, checkpoint and resume, CLI."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from margincal.adjust import approval as AP
from margincal.adjust import monitor as M
from margincal.adjust.monitor import Monitor, load_checkpoint
from margincal.cli.app import app
from margincal.data import audit
from margincal.data.feeds import ReplayFeed, event_key
from margincal.data.store import connect
from margincal.margin import params as P

FROM, TO = "2022-11-05", "2022-11-11 23:59"


def _feed(path, after=None):
    return ReplayFeed(path, ["BTC-PERP", "ETH-PERP"], pd.Timestamp(FROM, tz="UTC") - pd.Timedelta(days=14), TO,
                      after=after)


def _outcome(path) -> tuple[list, list]:
    """Published versions and proposals, without ids/wall-clock times (comparable across runs)."""
    con = connect(path, read_only=True)
    try:
        versions = []
        for v in range(2, (P.latest_version(con) or 1) + 1):
            ps = P.load(con, v)
            adj = ps.provenance["adjustment"]
            versions.append((ps.source, adj["instrument"], adj["ts"], adj["im_before"], adj["im_after"],
                             tuple(sorted((k, p.im_rate, p.mm_rate) for k, p in ps.params.items()))))
        props = [(p.changes[0]["instrument"], p.changes[0]["im_before"], p.changes[0]["im_after"],
                  p.evidence["event_ts"]) for p in AP.list_proposals(con)]
    finally:
        con.close()
    return versions, props


@pytest.fixture(scope="module")
def reference_run(ftx_store_template, tmp_path_factory):
    """One uninterrupted replay, shared by the tests that compare against it."""
    import shutil

    path = tmp_path_factory.mktemp("ref") / "ref.duckdb"
    shutil.copy(ftx_store_template, path)
    mon = Monitor(path, name="t", live_from=FROM)
    rep = mon.run(_feed(path))
    return path, mon, rep, _outcome(path)


def test_replay_persists_versions_proposals_and_evidence(reference_run):
    ftx_store, mon, rep, _ = reference_run
    assert rep.auto_adjustments >= 4 and rep.proposals >= 1 and rep.signals >= 4
    con = connect(ftx_store, read_only=True)
    assert audit.verify_chain(con).ok
    n_auto = con.execute("SELECT count(*) FROM audit_log WHERE action = 'auto_adjust'").fetchone()[0]
    n_prop = con.execute("SELECT count(*) FROM audit_log WHERE action = 'propose'").fetchone()[0]
    n_ok = con.execute("SELECT count(*) FROM audit_log WHERE action = 'auto_approve' AND actor = 'system:monitor'"
                       ).fetchone()[0]
    # issue 16 item 1: an automatic step is a proposal too, approved at once by system:monitor under its rule
    assert (n_auto, n_prop, n_ok) == (rep.auto_adjustments, rep.auto_adjustments + rep.proposals,
                                      rep.auto_adjustments)
    assert rep.versions == list(range(2, 2 + rep.auto_adjustments))
    for v in rep.versions:
        ps = P.load(con, v)
        assert ps.source == "auto-adjust" and ps.created_by == "system:monitor" and ps.parent_version == v - 1
        auto = AP.get_proposal(con, ps.provenance["proposal_id"])
        assert (auto.status, auto.decided_by, auto.published_version, auto.author) == (
            "approved", "system:monitor", v, "monitor")
        assert auto.comment.startswith("automatic: ") and ps.provenance["rule"] in auto.comment
        assert set(ps.params) == {"BTC-PERP", "ETH-PERP"}
        adj = ps.provenance["adjustment"]
        prev = P.load(con, v - 1)
        assert prev[adj["instrument"]].im_rate == adj["im_before"]
        assert ps[adj["instrument"]].im_rate == adj["im_after"]
        assert ps.provenance["policy"]["sha256"] == mon.policy.sha256
        d = ps[adj["instrument"]].details
        assert d["im_base"] == P.load(con, 1)[adj["instrument"]].im_rate and d["adjusted"]["by"] == "auto-adjust"
    props = [p for p in AP.list_proposals(con) if p.decided_by != "system:monitor"]
    assert len(props) == rep.proposals
    assert all(p.author == "monitor" and p.evidence["adjustment"]["route"] == "proposal" for p in props)
    state = load_checkpoint(con, "t")
    con.close()
    last = list(_feed(ftx_store))[-1]
    assert tuple(state["last_key"]) == event_key(last)
    assert state["events_processed"] == rep.events_total == rep.events


@pytest.mark.parametrize("latency", [0.0, 30.0])
def test_a_failed_write_leaves_nothing_and_the_rerun_reproduces_the_full_run(ftx_store, reference_run,
                                                                             monkeypatch, latency):
    ref = reference_run[3]
    # an event that produced an automatic step AND a proposal (a split increase): fail on that proposal,
    # after the automatic step was already written inside the same transaction
    split, j = next((i, j) for i, v in enumerate(ref[0]) for j, p in enumerate(ref[1])
                    if (p[0], p[3], p[1]) == (v[1], v[2], v[4]))

    real = M.GroupWriter.propose
    target = ref[1][j]

    def failing(self, **k):
        c = k["changes"][0]
        if (c["instrument"], c["im_after"], k["evidence"]["event_ts"]) == (target[0], target[2], target[3]):
            raise RuntimeError("killed while proposing")
        return real(self, **k)

    monkeypatch.setattr(M.GroupWriter, "propose", failing)
    mon = Monitor(ftx_store, name="t", live_from=FROM, commit_latency_s=latency)
    with pytest.raises(RuntimeError, match="killed while proposing"):
        mon.run(_feed(ftx_store))
    monkeypatch.setattr(M.GroupWriter, "propose", real)
    got = _outcome(ftx_store)
    # the failed transaction published nothing: the auto step of that same event is not there either (and
    # with group commit, nothing of its whole group)
    assert got[0] == ref[0][:len(got[0])] and len(got[0]) <= split
    if latency == 0.0:
        assert got[0] == ref[0][:split]
    con = connect(ftx_store, read_only=True)
    state = load_checkpoint(con, "t")
    assert all(len(P.load(con, v).params) == 2 for v in range(1, P.latest_version(con) + 1))
    assert audit.verify_chain(con).ok
    con.close()
    assert state is None or pd.Timestamp(state["last_key"][0], tz="UTC") < pd.Timestamp(ref[0][split][2])
    state = state or {"last_key": None, "events_processed": 0}
    # restart: resumes after the checkpoint and ends exactly where the uninterrupted run ended
    mon2 = Monitor(ftx_store, name="t", live_from=FROM)
    rep2 = mon2.run(_feed(ftx_store, after=mon2.resume_key()))
    assert rep2.resumed_after == state["last_key"]
    assert _outcome(ftx_store) == ref
    assert rep2.events_total == state["events_processed"] + rep2.events


def test_monitor_picks_up_an_approved_proposal(ftx_store):
    mon = Monitor(ftx_store, name="t", live_from=FROM, sync_seconds=0.0)
    feed = list(_feed(ftx_store))
    cut = next(i for i, e in enumerate(feed) if e.t_ns >= pd.Timestamp("2022-11-09 00:00", tz="UTC").value)
    mon.run(feed[:cut])
    con = connect(ftx_store)
    pending = AP.list_proposals(con, "pending")
    assert pending, "the crash week leaves an open proposal"
    d = AP.approve(con, pending[-1].proposal_id, "alice", "agreed", role="risk_officer")
    approved = P.load(con, d.published_version)
    con.close()
    inst = pending[-1].changes[0]["instrument"]
    mon2 = Monitor(ftx_store, name="t", live_from=FROM, sync_seconds=0.0)
    mon2.start()
    assert mon2.engine.rates()[inst][0] == approved[inst].im_rate
    recs: list[dict] = []
    rep = mon2.run(feed, on_output=lambda ev, sigs, records: recs.extend(records))
    assert rep.events == len(feed) - cut and rep.resumed_after is not None
    mine = [r for r in recs if r["instrument"] == inst]
    assert mine and mine[0]["im_before"] == approved[inst].im_rate  # continues from the officer's rate
    assert not any("skipped" in r for r in recs)


def _fingerprint(path):
    con = connect(path, read_only=True)
    try:
        return [con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in ("parameter_sets", "parameter_rows", "proposals", "audit_log", "signals", "monitor_state")]
    finally:
        con.close()


def test_cli_monitor_replay_json(ftx_store):
    live_before = _fingerprint(ftx_store)
    res = CliRunner().invoke(app, ["monitor", "--replay", "--from", "2022-11-08", "--to", "2022-11-09",
                                   "--store", str(ftx_store), "--json", "--warmup-days", "20"])
    assert res.exit_code == 0, res.output
    lines = [json.loads(x) for x in res.output.splitlines() if x.strip()]
    # the replay ran in a sandbox copy of the store: the live store is untouched
    assert lines[0]["type"] == "sandbox" and ".sandbox-replay-" in lines[0]["store"]
    assert _fingerprint(ftx_store) == live_before
    sandbox = ftx_store.with_name(lines[0]["store"])
    assert _fingerprint(sandbox)[0] > live_before[0]
    types = {x["type"] for x in lines}
    assert {"signal", "adjustment", "summary"} <= types
    summary = lines[-1]
    assert summary["type"] == "summary" and summary["name"] == "replay:all:2022-11-08:2022-11-09"
    sig = next(x for x in lines if x["type"] == "signal")
    assert {"instrument", "ts", "kind", "severity", "values", "threshold", "reason"} <= set(sig)
    adj = next(x for x in lines if x["type"] == "adjustment")
    assert adj["version"] >= 2 and adj["route"] == "auto" and "IM" in adj["reason"]
    assert all(pd.Timestamp(x["ts"]) >= pd.Timestamp("2022-11-08", tz="UTC") for x in lines
               if x["type"] in ("signal", "adjustment", "proposal"))
    # the same command again resumes: nothing left to do
    res = CliRunner().invoke(app, ["monitor", "--replay", "--from", "2022-11-08", "--to", "2022-11-09",
                                   "--store", str(ftx_store), "--json", "--warmup-days", "20"])
    lines = [json.loads(x) for x in res.output.splitlines() if x.strip()]
    assert lines[0]["type"] == "sandbox" and lines[1]["type"] == "resume" and lines[-1]["events"] == 0
    # human output: the state table and the log
    res = CliRunner().invoke(app, ["monitor", "--replay", "--from", "2022-11-08", "--to", "2022-11-09",
                                   "--store", str(ftx_store), "--warmup-days", "20", "--fresh", "--name", "h"])
    assert res.exit_code == 0, res.output
    assert "monitor state at" in res.output and "BTC-PERP" in res.output and "vol" in res.output


def test_cli_monitor_errors(ftx_store, tmp_path):
    run = CliRunner().invoke
    res = run(app, ["monitor", "--from", "2022-11-01", "--store", str(ftx_store)])
    assert res.exit_code == 2 and "exactly one of --replay or --live" in res.output
    res = run(app, ["monitor", "--replay", "--store", str(ftx_store)])
    assert res.exit_code == 2 and "--replay needs --from" in res.output
    bad = tmp_path / "bad.toml"
    bad.write_text("[auto]\nmax_increase = 0\n")
    res = run(app, ["monitor", "--replay", "--from", "2022-11-01", "--store", str(ftx_store), "--policy", str(bad)])
    assert res.exit_code == 2 and "bad.toml: [auto] max_increase is 0.0; it must be > 0" in res.output


def test_cli_monitor_live_store_is_explicit_and_marked(ftx_store):
    before = _fingerprint(ftx_store)
    res = CliRunner().invoke(app, ["monitor", "--replay", "--from", "2022-11-08", "--to", "2022-11-09",
                                   "--store", str(ftx_store), "--json", "--warmup-days", "20", "--live-store"])
    assert res.exit_code == 0, res.output
    assert _fingerprint(ftx_store)[0] > before[0]
    con = connect(ftx_store, read_only=True)
    try:
        rows = con.execute("SELECT created_by, note FROM parameter_sets WHERE version > ?", [before[0]]).fetchall()
        assert rows and all(r[0] == "system:monitor-replay" and r[1].startswith("[replay] ") for r in rows)
        props = AP.list_proposals(con)
        assert all(p.reason.startswith("[replay] ") and p.evidence.get("replay") is True for p in props)
    finally:
        con.close()


@pytest.mark.parametrize("bad, match", [
    (["--speed", "-1"], "--speed"), (["--speed", "inf"], "--speed"), (["--speed", "1e-300"], "--speed"),
    (["--warmup-days", "inf"], "--warmup-days"), (["--to", "2022-02-30"], "--to"),
    (["--sandbox", "../evil"], "sandbox name"), (["--live-store", "--sandbox", "x"], "one of"),
    (["-i", "NOPE-PERP"], "no bars stored for NOPE-PERP"),
])
def test_cli_monitor_calibrate_validates_before_publishing(ftx_store, bad, match):
    before = _fingerprint(ftx_store)
    files = sorted(p.name for p in ftx_store.parent.iterdir())
    args = ["monitor", "--replay", "--from", "2022-11-08", "--calibrate", "--store", str(ftx_store)]
    res = CliRunner().invoke(app, args + ([] if "--sandbox" in bad else ["--live-store"]) + bad)
    assert res.exit_code == 2, res.output
    assert match in res.output and len(res.output.strip().splitlines()) == 1, res.output
    assert _fingerprint(ftx_store) == before
    assert sorted(p.name for p in ftx_store.parent.iterdir()) == files  # no sandbox created either
