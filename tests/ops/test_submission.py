"""Issue 16 items 1 and 3: every change of the live set is a proposal and a decision; calibrations are trials.

``approval.submit`` files a proposal for every changed row and, where ``auto_rule`` allows (empty store,
sandbox, new instruments, IM increases within the policy's +25%), decides it at once as a system identity
with the rule, in the publishing transaction; otherwise the proposal waits for a risk officer. ``margincal
calibrate`` runs in a sandbox unless ``--live-store``.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from margincal.adjust import approval as AP
from margincal.adjust import audit
from margincal.cli.app import app
from margincal.data.ingest import ingest_file
from margincal.data.samples import sample_path
from margincal.data.store import connect, sandbox_path
from margincal.errors import ConfigError
from margincal.margin import params as P


def _pset(**rates):
    return P.ParameterSet({k: P.InstrumentParams(k, im, mm, {"src": "t", "tiers": [{"lower": 0, "im_rate": im}]})
                           for k, (im, mm) in rates.items()}, run_id="r1")


def _submit(con, pset, **kw):
    return AP.submit(con, pset, author="cli", system="system:calibrate", source="calibration",
                     reason="calibration test", **kw)


def _counts(con):
    return tuple(con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                 for t in ("parameter_sets", "proposals", "proposal_decisions", "audit_log"))


def test_first_publication_applies_with_the_initial_rule(con):
    sub = _submit(con, _pset(A=(0.10, 0.05), B=(0.20, 0.10)))
    assert sub.applied and sub.version == 1 and sub.rule.startswith("initial")
    p = AP.get_proposal(con, sub.proposal_id)
    assert (p.status, p.author, p.decided_by, p.published_version) == ("approved", "cli", "system:calibrate", 1)
    assert p.comment == "automatic: " + sub.rule and {c["action"] for c in p.changes} == {"add"}
    v1 = P.load(con, 1)
    assert v1.created_by == "system:calibrate" and v1.provenance["proposal_id"] == p.proposal_id
    log = audit.entries(con).iloc[::-1]  # entries() is newest first
    acts = [(e["actor"], e["action"]) for e in log.to_dict("records")]
    assert acts == [("cli", "propose"), ("system:calibrate", "publish"), ("system:calibrate", "auto_approve")]
    assert json.loads(log.iloc[-1]["details"])["rule"] == sub.rule
    assert audit.verify_chain(con).ok


def test_rule_increase_within_bound_applies_decrease_waits_then_an_officer_approves(con):
    _submit(con, _pset(A=(0.10, 0.05), B=(0.20, 0.10)))
    up = _submit(con, _pset(A=(0.12, 0.06)))  # +20%: within the policy's automatic +25%
    assert up.applied and up.version == 2 and up.rule.startswith("policy")
    assert P.load(con).params["B"].im_rate == 0.20  # carried
    big = _submit(con, _pset(A=(0.20, 0.10)))  # +67%: an officer decides
    assert not big.applied and "increase above +25%" in big.pending_reason and big.version == 2
    down = _submit(con, _pset(B=(0.15, 0.07)))
    assert not down.applied and "decrease" in down.pending_reason
    before = _counts(con)
    again = _submit(con, _pset(B=(0.15, 0.07)))  # a rerun (e.g. after a crash) finds its own proposal
    assert again.proposal_id == down.proposal_id and _counts(con) == before
    assert P.latest_version(con) == 2
    d = AP.approve(con, down.proposal_id, "dora", "agreed", role="risk_officer")
    row = P.load(con, d.published_version).params["B"]
    # a calibration's whole row is published (its own tiers), not the old row rescaled
    assert (row.im_rate, row.mm_rate, row.details["tiers"]) == (0.15, 0.07, [{"lower": 0, "im_rate": 0.15}])
    assert P.load(con).params["A"].im_rate == 0.12
    assert audit.verify_chain(con).ok


def test_identical_submission_files_nothing_and_new_instrument_applies(con):
    _submit(con, _pset(A=(0.10, 0.05)))
    before = _counts(con)
    sub = _submit(con, _pset(A=(0.10, 0.05)))
    assert sub.proposal_id is None and sub.version == 1 and _counts(con) == before
    add = _submit(con, _pset(Z=(0.30, 0.15)))
    assert add.applied and P.load(con).instruments() == ["A", "Z"]


def test_sandbox_rule_and_system_identity_checks(con):
    _submit(con, _pset(A=(0.10, 0.05)))
    sub = _submit(con, _pset(A=(0.05, 0.02)), sandbox=True)
    assert sub.applied and sub.rule.startswith("sandbox")
    with pytest.raises(ConfigError, match="system identity"):
        AP.submit(con, _pset(A=(0.2, 0.1)), author="cli", system="alice", source="calibration", reason="x")


def test_calibration_bound_is_checked_before_a_proposal_is_filed(con):
    before = _counts(con)
    with pytest.raises(ConfigError, match="above the"):
        _submit(con, _pset(A=(0.0001, 0.00005)))
    assert _counts(con) == before


@pytest.fixture
def daily_store(store_path):
    c = connect(store_path)
    ingest_file(c, sample_path("btc_daily.csv"), instrument="BTC-USDT", timeframe="1d", kind="bars",
                instrument_kind="spot")
    c.close()
    return store_path


def test_cli_calibrate_is_a_sandbox_trial_unless_live_store(daily_store):
    run = CliRunner().invoke
    s = ["--store", str(daily_store)]
    live_before = _fingerprint(daily_store)
    r = run(app, ["calibrate", "-i", "BTC-USDT", "--model", "hs", "--json", *s])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    sb = sandbox_path(daily_store, "calibrate")
    assert out["sandbox"] == sb.name and out["live_store"] is False and out["applied"]
    assert _fingerprint(daily_store) == live_before  # the live store is not touched
    c = connect(sb, read_only=True)
    try:
        assert P.load(c).created_by == "system:calibrate" and P.load(c).params["BTC-USDT"].details
    finally:
        c.close()
    r = run(app, ["calibrate", "-i", "BTC-USDT", "--model", "hs", "--live-store", "--sandbox", "x", *s])
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1
    r = run(app, ["calibrate", "-i", "BTC-USDT", "--model", "hs", "--live-store", "--json", *s])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["live_store"] is True and out["applied"] and out["rule"].startswith("initial") and out["version"] == 1
    c = connect(daily_store, read_only=True)
    try:
        p = AP.get_proposal(c, out["proposal_id"])
        assert p.decided_by == "system:calibrate" and p.evidence["written_by"] == "margincal calibrate --live-store"
        assert audit.verify_chain(c).ok
    finally:
        c.close()


def _fingerprint(path):
    c = connect(path, read_only=True)
    try:
        return _counts(c)
    finally:
        c.close()
