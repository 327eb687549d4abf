"""Parameter sets (versioned, append-only, atomic publish) and the hash-chained audit log."""

from __future__ import annotations

import pytest

from margincal.data import audit
from margincal.errors import ConfigError, StoreError
from margincal.margin import params as P


def pset(**rates: tuple[float, float]) -> P.ParameterSet:
    return P.ParameterSet({k: P.InstrumentParams(k, im, mm) for k, (im, mm) in rates.items()},
                          provenance={"model": "test"})


def test_publish_versions_and_load(con):
    v1 = P.publish(con, pset(A=(0.10, 0.05), B=(0.2, 0.1)), created_by="alice", source="calibration")
    v2 = P.publish(con, pset(A=(0.12, 0.06), B=(0.2, 0.1)), created_by="bob", source="auto-adjust")
    assert (v1, v2) == (1, 2)
    latest = P.load(con)
    assert latest.version == 2 and latest.parent_version == 1 and latest["A"].im_rate == 0.12
    assert P.load(con, 1)["A"].im_rate == 0.10
    assert latest.provenance == {"model": "test"}
    d = P.diff(P.load(con, 1), latest)
    assert d == [{"instrument": "A", "change": "changed", "im_before": 0.10, "im_after": 0.12, "mm_before": 0.05,
                  "mm_after": 0.06, "im_change_pct": pytest.approx(20.0)}]


def test_missing_version_and_instrument(con):
    with pytest.raises(StoreError, match="no parameter set has been published"):
        P.load(con)
    P.publish(con, pset(A=(0.1, 0.05)), created_by="x", source="t")
    with pytest.raises(StoreError, match="version 7 does not exist \\(latest is 1\\)"):
        P.load(con, 7)
    with pytest.raises(ConfigError, match="'Z' is not in parameter set v1"):
        P.load(con)["Z"]


def test_invalid_rates_rejected():
    with pytest.raises(ConfigError, match="mm_rate is 0.2; it must be in \\(0, im_rate=0.1\\]"):
        P.InstrumentParams("A", 0.1, 0.2)
    with pytest.raises(ConfigError, match="im_rate is 0"):
        P.InstrumentParams("A", 0.0, 0.0)


def test_failed_publish_leaves_nothing(con, monkeypatch):
    P.publish(con, pset(A=(0.1, 0.05)), created_by="x", source="t")

    def boom(*a, **k):
        raise RuntimeError("crash between rows and audit entry")

    monkeypatch.setattr(audit, "append", boom)
    with pytest.raises(RuntimeError):
        P.publish(con, pset(A=(0.2, 0.1), B=(0.3, 0.1)), created_by="x", source="t")
    assert P.latest_version(con) == 1
    assert con.execute("SELECT count(*) FROM parameter_rows").fetchall() == [(1,)]


def test_audit_chain_detects_edits_and_deletions(con):
    for i in range(3):
        P.publish(con, pset(A=(0.1 + i / 100, 0.05)), created_by="x", source="t")
    rep = audit.verify_chain(con)
    assert rep.ok and rep.entries == 3
    con.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 2")
    rep = audit.verify_chain(con)
    assert not rep.ok and rep.first_bad_seq == 2 and "edited" in rep.reason
    con.execute("UPDATE audit_log SET actor = 'x' WHERE seq = 2")
    assert audit.verify_chain(con).ok
    con.execute("DELETE FROM audit_log WHERE seq = 2")
    rep = audit.verify_chain(con)
    assert not rep.ok and rep.first_bad_seq == 3


def test_csv_export_has_exchange_bracket_shape(con):
    P.publish(con, pset(A=(0.125, 0.05)), created_by="x", source="t")
    lines = P.load(con).to_csv().strip().splitlines()
    assert lines[0] == ("instrument,bracket,notional_floor,notional_cap,max_leverage,initial_margin_rate,"
                        "maintenance_margin_rate,maintenance_amount")
    assert lines[1] == "A,1,0.0,,8.0,0.125,0.05,0.0"
