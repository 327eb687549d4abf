"""Publishing is explicit and scoped: partial calibrations carry the other instruments, identical sets are
not republished, removal is an approved proposal; approvals are bound to unique, normalised key holders."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from margincal.adjust import approval as AP
from margincal.adjust import audit
from margincal.cli.app import app
from margincal.data.store import connect
from margincal.errors import AuthError, ConfigError
from margincal.margin import params as P
from margincal.service.auth import authenticate, create_key, rotate_key


def _pset(**rates):
    return P.ParameterSet({k: P.InstrumentParams(k, im, mm, {"src": "t"}) for k, (im, mm) in rates.items()})


@pytest.fixture
def live(con):
    P.publish(con, _pset(A=(0.10, 0.05), B=(0.20, 0.10), C=(0.30, 0.15)), created_by="calibrator",
              source="calibration")
    return con


def test_partial_calibration_carries_every_other_instrument(live):
    v = P.publish(live, _pset(A=(0.12, 0.06)), created_by="cli", source="calibration")
    new = P.load(live, v)
    assert v == 2 and new.instruments() == ["A", "B", "C"]
    assert (new["A"].im_rate, new["B"].im_rate, new["C"].im_rate) == (0.12, 0.20, 0.30)
    assert [d["change"] for d in P.diff(P.load(live, 1), new)] == ["changed"]
    assert new.provenance["scope"]["carried"] == ["B", "C"]
    row = live.execute("SELECT details FROM audit_log WHERE action = 'publish' ORDER BY seq DESC LIMIT 1").fetchone()
    d = json.loads(row[0])
    assert (d["changed"], d["carried"], d["removed"]) == (["A"], ["B", "C"], [])


def test_identical_set_is_not_republished(live):
    n0 = live.execute("SELECT count(*) FROM audit_log").fetchone()[0]
    assert P.publish(live, _pset(B=(0.20, 0.10)), created_by="cli", source="calibration") == 1
    assert P.publish(live, _pset(A=(0.10, 0.05), B=(0.20, 0.10), C=(0.30, 0.15)), created_by="cli",
                     source="calibration") == 1
    assert P.latest_version(live) == 1
    assert live.execute("SELECT count(*) FROM audit_log").fetchone()[0] == n0


def test_removal_only_through_an_approved_proposal(live):
    with pytest.raises(ConfigError, match="needs an approved proposal"):
        P.publish(live, _pset(), created_by="cli", source="calibration", remove=["C"])
    with pytest.raises(ConfigError, match="not in the live parameter set"):
        AP.create_removal_proposal(live, author="bob", instruments=["Z"], reason="delisted")
    with pytest.raises(ConfigError, match="cannot empty"):
        AP.create_removal_proposal(live, author="bob", instruments=["A", "B", "C"], reason="all")
    pid = AP.create_removal_proposal(live, author="bob", instruments=["C"], reason="delisted")
    assert P.latest_version(live) == 1  # nothing published until approved
    with pytest.raises(AuthError, match="four-eyes"):
        AP.approve(live, pid, "Bob ", role="risk_officer")
    d = AP.approve(live, pid, "alice", "delisted on the venue", role="risk_officer")
    new = P.load(live, d.published_version)
    assert new.instruments() == ["A", "B"] and new.provenance["scope"]["removed"] == ["C"]
    assert audit.verify_chain(live).ok


def test_names_are_normalised_unique_identities(con):
    create_key(con, "risk_officer", "alice")
    for dup in ("Alice", "alice ", "  ALICE", "alice"):
        with pytest.raises(ConfigError, match="already exists"):
            create_key(con, "risk_officer", dup)
    with pytest.raises(ConfigError, match="reserved"):
        create_key(con, "risk_officer", "Monitor")
    # a revoked name is not free again: only its holder rotates it
    k = create_key(con, "trader", "tom")
    new = rotate_key(con, k.key)
    assert (new.name, new.role) == ("tom", "trader") and new.key_id != k.key_id
    with pytest.raises(AuthError):
        authenticate(con, k.key)
    assert authenticate(con, new.key).name == "tom"
    with pytest.raises(ConfigError, match="already exists"):
        create_key(con, "trader", "TOM")


def test_admin_cannot_mint_an_approver_through_the_service_nor_the_author_an_approver(live):
    with pytest.raises(AuthError, match="not through the service"):
        create_key(live, "risk_officer", "dora", actor="root", via_service=True)
    # a key minted by the proposal's author cannot decide that proposal
    create_key(live, "risk_officer", "mallory", actor="bob")
    pid = AP.create_proposal(live, author="bob", reason="vol up", changes=[
        {"instrument": "A", "im_before": 0.10, "im_after": 0.12, "mm_before": 0.05, "mm_after": 0.06}])
    with pytest.raises(AuthError, match="created by 'bob'"):
        AP.approve(live, pid, "mallory", role="risk_officer")
    create_key(live, "risk_officer", "carol", actor="cli")
    assert AP.approve(live, pid, "carol", "ok", role="risk_officer").published_version == 2
    row = live.execute("SELECT actor, details FROM audit_log WHERE action = 'approve'").fetchone()
    assert row[0] == "carol" and json.loads(row[1])["author"] == "bob"


def test_cli_remove_and_approve_with_keys(live, store_path):
    bob = create_key(live, "risk_officer", "bob").key
    alice = create_key(live, "risk_officer", "alice").key
    live.close()
    run = CliRunner().invoke
    r = run(app, ["proposals", "remove", "-i", "C", "--reason", "delisted", "--key", bob, "--store", str(store_path),
                  "--json"])
    assert r.exit_code == 0, r.output
    pid = json.loads(r.output)["proposal_id"]
    r = run(app, ["proposals", "approve", pid, "--key", bob, "--store", str(store_path)])
    assert r.exit_code == 2 and "four-eyes" in r.output and len(r.output.strip().splitlines()) == 1
    r = run(app, ["proposals", "approve", pid, "--key", alice, "--comment", "ok", "--store", str(store_path),
                  "--json"])
    assert r.exit_code == 0, r.output
    c = connect(store_path)
    assert P.load(c).instruments() == ["A", "B"]
    c.close()
