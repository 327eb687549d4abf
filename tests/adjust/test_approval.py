"""Proposals and four-eyes approval: roles, author != decider, decided once, atomic publish, CLI, audit verify."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from margincal.adjust import approval as AP
from margincal.cli.app import app
from margincal.data import audit
from margincal.data.store import connect
from margincal.errors import AuthError, ConfigError
from margincal.margin import params as P
from margincal.service.auth import create_key


@pytest.fixture
def store(store_path):
    con = connect(store_path)
    tiers = [{"lower": 0.0, "upper": 1e6, "max_leverage": 12.5, "im_rate": 0.08, "mm_rate": 0.04,
              "maintenance_amount": 0.0},
             {"lower": 1e6, "upper": None, "max_leverage": 6.25, "im_rate": 0.16, "mm_rate": 0.08,
              "maintenance_amount": 40000.0}]
    pset = P.ParameterSet({"BTC-PERP": P.InstrumentParams("BTC-PERP", 0.08, 0.04, {"tiers": tiers, "sigma": 0.02}),
                           "ETH-PERP": P.InstrumentParams("ETH-PERP", 0.10, 0.05, {})})
    P.publish(con, pset, created_by="calibrator", source="calibration")
    con.close()
    return store_path


def _propose(con, im_after=0.12, author="monitor", instrument="BTC-PERP", im_before=0.08):
    return AP.create_proposal(con, author=author, reason="vol up 1.6x", evidence={"sigma_now": 0.8},
                              base_version=P.latest_version(con),
                              changes=[{"instrument": instrument, "im_before": im_before, "im_after": im_after,
                                        "mm_before": im_before / 2, "mm_after": im_after / 2}])


def test_approve_publishes_records_and_audits_atomically(store):
    con = connect(store)
    pid = _propose(con)
    assert [p.status for p in AP.list_proposals(con)] == ["pending"]
    d = AP.approve(con, pid, "alice", "agreed", role="risk_officer")
    assert d.decision == "approved" and d.published_version == 2
    new = P.load(con, 2)
    assert new.source == "approval" and new.created_by == "alice"
    assert new["BTC-PERP"].im_rate == 0.12 and new["BTC-PERP"].mm_rate == 0.06
    assert new["ETH-PERP"].im_rate == 0.10  # untouched instruments carried over
    # tiers scaled by 0.12 / 0.08 = 1.5: rates, maintenance amounts; leverage divided
    t = new["BTC-PERP"].details["tiers"]
    assert [x["im_rate"] for x in t] == pytest.approx([0.12, 0.24])
    assert [x["maintenance_amount"] for x in t] == pytest.approx([0.0, 60000.0])
    assert [x["max_leverage"] for x in t] == pytest.approx([1 / 0.12, 1 / 0.24], rel=1e-4)
    assert new["BTC-PERP"].details["im_base"] == 0.08  # the calibrated rate is kept
    assert new.provenance["proposal_id"] == pid and new.provenance["evidence"] == {"sigma_now": 0.8}
    p = AP.get_proposal(con, pid)
    assert (p.status, p.decided_by, p.comment, p.published_version) == ("approved", "alice", "agreed", 2)
    acts = [r[0] for r in con.execute("SELECT action FROM audit_log ORDER BY seq").fetchall()]
    assert acts == ["publish", "propose", "publish", "approve"]
    assert audit.verify_chain(con).ok
    # decided once
    with pytest.raises(ConfigError, match="already approved by alice"):
        AP.approve(con, pid, "bob", role="risk_officer")
    with pytest.raises(ConfigError, match="already approved"):
        AP.reject(con, pid, "bob", role="risk_officer")
    con.close()


@pytest.mark.parametrize("user, role, match", [
    ("monitor", "risk_officer", "four-eyes"),  # the author cannot decide
    ("carol", "trader", "only role 'risk_officer'"),
    ("", "risk_officer", "authenticate with an API key"),
    (" MONITOR ", "risk_officer", "four-eyes"),  # names compare normalised: case and spaces do not matter
])
def test_auth_rules(store, user, role, match):
    con = connect(store)
    pid = _propose(con)
    with pytest.raises(AuthError, match=match):
        AP.approve(con, pid, user, role=role)
    with pytest.raises(AuthError, match=match):
        AP.reject(con, pid, user, role=role)
    assert AP.get_proposal(con, pid).status == "pending"
    assert P.latest_version(con) == 1
    con.close()


def test_failure_inside_approval_leaves_nothing_half_done(store, monkeypatch):
    con = connect(store)
    pid = _propose(con)
    n_audit = con.execute("SELECT count(*) FROM audit_log").fetchone()[0]
    real = audit.append

    def failing(c, actor, action, *a, **k):
        if action == "approve":  # after publish and the decision row were written
            raise RuntimeError("disk full")
        return real(c, actor, action, *a, **k)

    monkeypatch.setattr(audit, "append", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        AP.approve(con, pid, "alice", role="risk_officer")
    assert P.latest_version(con) == 1
    assert con.execute("SELECT count(*) FROM parameter_rows WHERE version = 2").fetchone()[0] == 0
    assert con.execute("SELECT count(*) FROM proposal_decisions").fetchone()[0] == 0
    assert con.execute("SELECT count(*) FROM audit_log").fetchone()[0] == n_audit
    monkeypatch.setattr(audit, "append", real)
    assert AP.approve(con, pid, "alice", role="risk_officer").published_version == 2
    con.close()


def test_reject_superseded_and_stale(store):
    con = connect(store)
    old = _propose(con, 0.12)
    new = _propose(con, 0.13)
    st = {p.proposal_id: p for p in AP.list_proposals(con)}
    assert st[old].status == "superseded" and st[old].superseded_by == new and st[new].status == "pending"
    with pytest.raises(ConfigError, match="superseded"):
        AP.approve(con, old, "alice", role="risk_officer")
    d = AP.reject(con, old, "alice", "replaced", role="risk_officer")
    assert d.decision == "rejected" and d.published_version is None and P.latest_version(con) == 1
    # the rate in force changes (e.g. an automatic step): the open proposal becomes stale
    cur = P.load(con)
    P.publish(con, cur.with_changes({"BTC-PERP": P.InstrumentParams("BTC-PERP", 0.09, 0.045, {})}),
              created_by="monitor", source="auto-adjust")
    assert AP.get_proposal(con, new).status == "stale"
    assert AP.pending_rates(con) == {}
    with pytest.raises(ConfigError, match="stale"):
        AP.approve(con, new, "alice", role="risk_officer")
    assert [p.proposal_id for p in AP.list_proposals(con, "rejected")] == [old]
    with pytest.raises(ConfigError, match="status 'open'"):
        AP.list_proposals(con, "open")
    with pytest.raises(ConfigError, match="does not exist"):
        AP.get_proposal(con, "P-nope")
    con.close()


def test_proposals_cli_and_audit_verify(store):
    con = connect(store)
    pid = _propose(con)
    con.close()
    run = CliRunner().invoke
    res = run(app, ["proposals", "list", "--store", str(store), "--json"])
    assert res.exit_code == 0 and json.loads(res.output)[0]["proposal_id"] == pid
    # a self-declared identity is no longer accepted: the decider is the holder of an API key
    res = run(app, ["proposals", "approve", pid, "--as", "alice", "--role", "risk_officer", "--store", str(store)])
    assert res.exit_code == 2 and "--as" in res.output
    res = run(app, ["proposals", "approve", pid, "--store", str(store)], env={"MARGINCAL_API_KEY": ""})
    assert res.exit_code == 2 and "API key" in res.output
    con = connect(store)
    alice = create_key(con, "risk_officer", "alice").key
    trader = create_key(con, "trader", "tom").key
    con.close()
    res = run(app, ["proposals", "approve", pid, "--key", trader, "--store", str(store)])
    assert res.exit_code == 2 and "only role 'risk_officer'" in res.output
    res = run(app, ["proposals", "approve", pid, "--key", alice[:-3] + "xyz", "--store", str(store)])
    assert res.exit_code == 2 and "invalid or revoked" in res.output
    res = run(app, ["proposals", "approve", pid, "--comment", "ok", "--store", str(store), "--json"],
              env={"MARGINCAL_API_KEY": alice})
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["published_version"] == 2
    res = run(app, ["proposals", "show", pid, "--store", str(store)])
    assert res.exit_code == 0 and "approved by alice" in res.output
    res = run(app, ["audit", "verify", "--store", str(store), "--json"])
    assert res.exit_code == 0 and json.loads(res.output) == {"ok": True, "entries": 6, "first_bad_seq": None,
                                                             "reason": "6 entries, chain intact"}
    res = run(app, ["audit", "show", "--store", str(store), "--action", "approve", "--json"])
    assert res.exit_code == 0 and [r["actor"] for r in json.loads(res.output)] == ["alice"]
    # tamper with entry 2: verify exits 2 and names it
    con = connect(store)
    con.execute("UPDATE audit_log SET details = '{\"instruments\": [\"ETH-PERP\"]}' WHERE seq = 2")
    con.close()
    res = run(app, ["audit", "verify", "--store", str(store), "--json"])
    assert res.exit_code == 2 and json.loads(res.output)["first_bad_seq"] == 2
    res = run(app, ["audit", "verify", "--store", str(store)])
    assert res.exit_code == 2 and "BROKEN at seq 2" in res.output
