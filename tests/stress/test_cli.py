"""`margincal stress` and `margincal cascade` through typer's CliRunner."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from margincal.cli.app import app
from margincal.data.store import connect, latest_result
from margincal.stress.book import market_from_samples

runner = CliRunner()


def test_stress_command_on_a_book_file(tmp_path):
    book = tmp_path / "book.csv"
    # a: long 2 BTC-PERP, b: short 10 ETH-PERP; flat IM 10%
    book.write_text("account,instrument,quantity\na,BTC-PERP,2\nb,ETH-PERP,-10\n")
    store = tmp_path / "s.duckdb"
    res = runner.invoke(app, ["stress", "--scenario", "spot-down-30,spot-up-30", "--book", str(book),
                              "--margin", "0.1", "--store", str(store), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    rows = {r["scenario"]: r for r in out["summary"]}
    assert out["provenance"]["market_as_of"]
    # spot -30% (log 0.7): a loses 2 S_btc 0.3 and holds 0.2 S_btc margin: shortfall 0.4 S_btc; b gains
    m = market_from_samples()
    s_btc, s_eth = m.spot["BTC"], m.spot["ETH"]
    assert rows["spot-down-30"]["cover1"] == pytest.approx(0.4 * s_btc, rel=1e-9)
    assert rows["spot-down-30"]["cover1_account"] == "a"
    # spot +30%: b loses 10 S_eth 0.3 beyond margin S_eth: 2 S_eth
    assert rows["spot-up-30"]["cover2"] == pytest.approx(2.0 * s_eth, rel=1e-9)
    con = connect(store)
    stored = latest_result(con, "stress")
    con.close()
    assert stored["run_id"] == out["run_id"] and stored["params"]["margin"] == "flat 0.1"


def test_stress_command_errors_are_one_line(tmp_path):
    res = runner.invoke(app, ["stress", "--store", str(tmp_path / "none.duckdb"), "--accounts", "50"])
    assert res.exit_code == 2
    assert "margincal run" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["stress", "--scenario", "nope", "--margin", "0.1", "--store", str(tmp_path / "x.db")])
    assert res.exit_code == 2 and "not in the library" in res.output


def test_cascade_command(tmp_path):
    store = tmp_path / "c.duckdb"
    res = runner.invoke(app, ["cascade", "--policy", "static", "--event", "2025-10-10", "--accounts", "200",
                              "--store", str(store), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    (row,) = out["rows"]
    assert row["event"] == "2025-10-10" and row["policy"] == "static"
    assert row["bad_debt"] >= 0 and row["liquidations"] >= 1
    con = connect(store)
    stored = latest_result(con, "cascade")
    con.close()
    assert stored["payload"]["rows"][0]["policy"] == "static"
    bad = runner.invoke(app, ["cascade", "--policy", "lax", "--store", str(store)])
    assert bad.exit_code == 2 and "--policy" in bad.output


def test_cascade_v2_command_and_its_errors(tmp_path):
    store = tmp_path / "c2.duckdb"
    res = runner.invoke(app, ["cascade", "--engine", "v2", "--event", "2025-10-10", "--accounts", "60",
                              "--depth-draws", "8", "--no-stop-losses", "--store", str(store), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    (row,) = out["rows"]
    assert row["event"] == "2025-10-10" and out["config"]["agents"]["stop_losses"] is False
    from margincal.stress.figures import cascade_figures

    figs = cascade_figures(out)
    assert figs[0].layout.xaxis.type == "category" and list(figs[0].data[0].x) == ["2025-10-10"]
    rep = out["replays"]["2025-10-10"]
    assert rep["mark"]["bad_debt_pct_oi"]["p05"] <= rep["mark"]["bad_debt_pct_oi"]["p95"]
    res = runner.invoke(app, ["cascade", "--engine", "v2", "--event", "mc", "--accounts", "40", "--paths", "50",
                              "--store", str(store), "--json"])
    assert res.exit_code == 0, res.output
    mc = json.loads(res.stdout)["rows"][0]
    assert mc["paths"] == 50 and mc["insolvency_var99"] >= mc["insolvency_var95"] >= 0
    # --adl reaches the market config (the result records it); pro rata is accepted
    res = runner.invoke(app, ["cascade", "--engine", "v2", "--event", "2025-10-10", "--accounts", "60",
                              "--depth-draws", "8", "--adl", "pro_rata", "--store", str(store), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["config"]["adl"] == "pro_rata"
    for args, msg in ((["--engine", "v3"], "--engine"), (["--engine", "v2", "--trigger", "mid"], "--trigger"),
                      (["--engine", "v2", "--mm", "0.6"], "--mm"), (["--engine", "v2", "--adl", "fifo"], "--adl")):
        bad = runner.invoke(app, ["cascade", *args, "--store", str(store)])
        assert bad.exit_code == 2 and msg in bad.output and "Traceback" not in bad.output
