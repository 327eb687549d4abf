"""`margincal params show|diff|export|history` through Typer's CliRunner."""

from __future__ import annotations

import csv
import io
import json

import pytest
from typer.testing import CliRunner

from margincal.cli.app import app
from margincal.data.store import open_store
from margincal.margin import params as P
from margincal.margin import presets
from margincal.margin.params import InstrumentParams, ParameterSet

runner = CliRunner()


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "s.duckdb"
    with open_store(path) as con:
        P.publish(con, presets.parameter_set(["binance_btcusdt", "deribit_btc_future"]), created_by="alice",
                  source="test", note="first")
        v1 = P.load(con, 1)
        changed = v1.with_changes({"BTC-FUTURE": InstrumentParams("BTC-FUTURE", 0.03, 0.015, {})})
        P.publish(con, ParameterSet(params=changed.params, provenance={"k": 1}), created_by="bob", source="test")
    return path


def test_show_latest_and_json(store):
    r = runner.invoke(app, ["params", "show", "--store", str(store)])
    assert r.exit_code == 0, r.output
    assert "parameter set v2" in r.output and "BTCUSDT tiers" in r.output
    r = runner.invoke(app, ["params", "show", "1", "--json", "--store", str(store)])
    assert r.exit_code == 0
    doc = json.loads(r.output)
    assert doc["version"] == 1
    fut = next(i for i in doc["instruments"] if i["instrument"] == "BTC-FUTURE")
    assert fut["im_rate"] == 0.02


def test_diff_json(store):
    r = runner.invoke(app, ["params", "diff", "1", "2", "--json", "--store", str(store)])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["changes"] == [{"instrument": "BTC-FUTURE", "change": "changed", "im_before": 0.02, "im_after": 0.03,
                               "mm_before": 0.01, "mm_after": 0.015, "im_change_pct": pytest.approx(50.0)}]


def test_export_csv_and_json(store, tmp_path):
    out = tmp_path / "brackets.csv"
    r = runner.invoke(app, ["params", "export", "1", "--format", "csv", "--out", str(out), "--store", str(store)])
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    btc = [x for x in rows if x["instrument"] == "BTCUSDT"]
    assert len(btc) == 10 and float(btc[3]["maintenance_amount"]) == 46300.0  # Binance cum of bracket 4
    r = runner.invoke(app, ["params", "export", "--format", "json", "--store", str(store)])
    assert json.loads(r.output)["version"] == 2


def test_history_json(store):
    r = runner.invoke(app, ["params", "history", "--json", "--store", str(store)])
    assert r.exit_code == 0
    rows = json.loads(r.output)
    assert [x["version"] for x in rows] == [1, 2] and rows[0]["created_by"] == "alice"


def test_errors_are_one_line_exit_2(store, tmp_path):
    r = runner.invoke(app, ["params", "show", "9", "--store", str(store)])
    assert r.exit_code == 2 and "version 9 does not exist" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["params", "export", "--format", "xml", "--store", str(store)])
    assert r.exit_code == 2 and "--format" in r.output
    r = runner.invoke(app, ["params", "history", "--store", str(tmp_path / "missing.duckdb")])
    assert r.exit_code == 2 and "does not exist" in r.output
