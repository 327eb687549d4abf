"""`margincal backtest` through Typer's CliRunner: table, --json, --store, errors, hourly horizon."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from margincal.backtest import backtest_figures
from margincal.cli.app import app
from margincal.config import sample_data_dir
from margincal.data.store import connect, latest_result

runner = CliRunner()


@pytest.fixture(autouse=True)
def _no_default_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARGINCAL_STORE", str(tmp_path / "absent.duckdb"))


def test_json_without_store_uses_bundled_data(tmp_path: Path) -> None:
    res = runner.invoke(app, ["backtest", "-i", "btc", "-i", "ETHUSDT", "-m", "fhs", "-m", "normal",
                              "-p", "raw", "-p", "static", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["stored"] is None and not (tmp_path / "absent.duckdb").exists()
    assert {i["instrument"] for i in out["instruments"]} == {"BTC-USDT", "ETH-USDT"}
    assert all(i["source"].startswith("bundled:") for i in out["instruments"])
    summary = {(r["model"], r["policy"]): r for r in out["summary"]}
    assert set(summary) == {("fhs", "raw"), ("normal", "raw"), ("-", "static")}
    assert summary[("fhs", "raw")]["instruments"] == 2
    assert len(out["rows"]) == 6
    # static is tuned in sample: its pooled breach rate is within rounding of 1%
    assert summary[("-", "static")]["breach_rate"] == pytest.approx(0.01, abs=0.001)
    assert {c["day"] for c in out["crash"]} >= {"2020-03-12", "2022-11-09"}


def test_table_output_and_store(tmp_path: Path) -> None:
    store = tmp_path / "bt.duckdb"
    res = runner.invoke(app, ["backtest", "-i", "sol", "-m", "fhs", "-m", "cf", "-p", "raw", "-p", "static",
                              "--store", str(store), "--run-id", "bt-test", "--worst", "2"])
    assert res.exit_code == 0, res.output
    assert "margin backtest bt-test" in res.stdout and "crash days" in res.stdout and "fhs" in res.stdout
    assert "stored in" in res.stdout
    con = connect(store, read_only=True)
    try:
        stored = latest_result(con, "backtest")
    finally:
        con.close()
    assert stored is not None and stored["run_id"] == "bt-test"
    assert stored["params"]["models"] == ["fhs", "cf"]
    payload = stored["payload"]
    assert {s["policy"] for s in payload["series"]} == {"raw", "static"}
    figs = backtest_figures(payload)
    assert len(figs) == 1
    names = [t.name for t in figs[0].data]
    assert names[0].startswith("realised loss") and any(n.startswith("margin fhs") for n in names)
    assert any(n.startswith("breaches static") for n in names)


def test_reads_bars_from_the_store_when_it_has_them(tmp_path: Path) -> None:
    from margincal.data.ingest import ingest_file

    store = tmp_path / "bars.duckdb"
    con = connect(store)
    try:
        ingest_file(con, sample_data_dir() / "ltc_daily.csv", instrument="LTC-USDT", timeframe="1d")
    finally:
        con.close()
    res = runner.invoke(app, ["backtest", "-i", "ltc", "-m", "normal", "-p", "raw", "--store", str(store),
                              "--json", "--no-crash"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["instruments"][0]["source"].startswith("store:")
    assert out["stored"] == str(store)


def test_hourly_horizon_uses_hourly_bars() -> None:
    res = runner.invoke(app, ["backtest", "-i", "btc", "-m", "normal", "-p", "raw", "--horizon", "1",
                              "--json", "--worst", "0"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["instruments"][0]["bar_hours"] == 1.0
    assert out["instruments"][0]["source"] == "bundled:btcusdt_1h.csv.gz"
    crash = {c["day"]: c for c in out["crash"]}
    # the worst hour of 2025-10-10 starts that day (UTC) and is compared with the margin in force before it
    assert crash["2025-10-10"]["start"].startswith("2025-10-10T")
    assert out["summary"][0]["horizon_hours"] == 1.0


@pytest.mark.parametrize("args,msg", [
    (["-m", "nope"], "unknown model"),
    (["-p", "preset:nowhere"], "unknown preset"),
    (["-i", "unknowncoin"], "available"),
    (["--horizon", "0.5"], "whole number"),
])
def test_errors_are_one_line_exit_2(args: list[str], msg: str) -> None:
    full = ["backtest", *args] if args[0] == "-i" else ["backtest", "-i", "btc", "-m", "normal", *args]
    res = runner.invoke(app, full)
    assert res.exit_code == 2, res.output
    assert msg in res.output and "Traceback" not in res.output
