"""Plausibility at the door: implausible timestamps, epoch units, prices and calibration settings are
rejected with one line (exit 2) and write nothing; `margincal data delete` removes mistaken rows, audited."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from margincal.adjust import audit
from margincal.cli.app import app
from margincal.config import CalibrationSettings
from margincal.data.ingest import ingest_file
from margincal.data.store import connect
from margincal.errors import ConfigError, DataError

run = CliRunner().invoke


def _funding(tmp_path, ts_values):
    p = tmp_path / "f.csv"
    p.write_text("funding_time,funding_rate\n" + "".join(f"{t},0.0001\n" for t in ts_values))
    return p


@pytest.mark.parametrize("ts, why", [
    ("0001-01-01T00:00:00Z", "not a timestamp|outside the plausible range"),
    ("2200-01-01T00:00:00Z", "outside the plausible range"),
    ("1900-01-01T00:00:00Z", "outside the plausible range"),
    (str(1_700_000_000_000 * 1000 * 1000 // 1000 * 1000 * 31), "outside the plausible range|not a timestamp"),
])
def test_implausible_timestamps_are_rejected(con, tmp_path, ts, why):
    p = _funding(tmp_path, ["2024-01-01T00:00:00Z", ts])
    with pytest.raises(DataError, match=why):
        ingest_file(con, p, instrument="BTC-PERP", kind="funding")
    assert con.execute("SELECT count(*) FROM funding").fetchone()[0] == 0


def test_epoch_in_the_wrong_unit_is_caught(con, tmp_path):
    # seconds for most rows, one row in milliseconds: the ms row lands ~54,000 years out
    p = _funding(tmp_path, [1_700_000_000, 1_700_028_800, 1_700_057_600 * 1000])
    with pytest.raises(DataError, match="line 4: funding_time .1700057600000. is not a timestamp"):
        ingest_file(con, p, instrument="BTC-PERP", kind="funding")
    # all in microseconds: read as such
    p = _funding(tmp_path, [1_700_000_000_000_000, 1_700_028_800_000_000])
    rep = ingest_file(con, p, instrument="BTC-PERP", kind="funding")
    assert rep.rows_inserted == 2 and rep.first_ts.startswith("2023-11-14")


def test_denormal_and_absurd_prices_are_rejected(con, tmp_path):
    p = tmp_path / "b.csv"
    p.write_text("timestamp,open,high,low,close,volume\n2024-01-01,1,1,1,1,1\n2024-01-02,5e-324,5e-324,5e-324,5e-324,1\n")
    with pytest.raises(DataError, match="line 3: open is 4.94066e-324; prices must lie in"):
        ingest_file(con, p, instrument="X-USDT", timeframe="1d")


def test_daily_bars_labelled_hourly_are_rejected(con, tmp_path):
    p = tmp_path / "b.csv"
    p.write_text("timestamp,open,high,low,close,volume\n" + "".join(
        f"2024-01-0{d},1,1,1,1,1\n" for d in range(1, 6)))
    with pytest.raises(DataError, match="not 1h bars.*--timeframe 1d"):
        ingest_file(con, p, instrument="X-USDT", timeframe="1h")


@pytest.mark.parametrize("kw, match", [
    ({"horizon_hours": 0.0001}, "horizon_hours"), ({"level": 0.9999999999}, "level"),
    ({"buffer": 1e300}, "buffer"), ({"level": float("nan")}, "level"),
])
def test_calibration_bounds(kw, match):
    with pytest.raises(ConfigError, match=match):
        CalibrationSettings(**kw)


def test_cli_calibration_bounds_one_line(store_path):
    connect(store_path).close()
    for args in (["--horizon", "0.0001h"], ["--buffer", "1e300"], ["--level", "0.9999999999"]):
        r = run(app, ["calibrate", *args, "--store", str(store_path)])
        assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1, r.output


def test_data_delete_removes_rows_with_an_audit_entry(con, store_path, tmp_path):
    p = tmp_path / "b.csv"
    p.write_text("timestamp,open,high,low,close,volume\n" + "".join(
        f"2024-01-{d:02d},1,1,1,1,1\n" for d in range(1, 11)))
    ingest_file(con, p, instrument="X-USDT", timeframe="1d")
    con.close()
    s = ["--store", str(store_path)]
    r = run(app, ["data", "delete", "-i", "X-USDT", "--kind", "bars", "--from", "2024-01-08", "--reason", "bad file",
                  "--dry-run", "--json", *s])
    assert r.exit_code == 0 and json.loads(r.output)["rows"] == 3
    r = run(app, ["data", "delete", "-i", "X-USDT", "--kind", "bars", "--from", "2024-01-08", "--to", "2024-01-09",
                  "--reason", "bad file", *s])
    assert r.exit_code == 0, r.output
    r = run(app, ["data", "delete", "-i", "X-USDT", "--kind", "parameter_sets", "--reason", "x", *s])
    assert r.exit_code == 2 and "not one of" in r.output
    r = run(app, ["data", "delete", "-i", "NOPE", "--kind", "bars", "--reason", "x", *s])
    assert r.exit_code == 2 and "nothing to delete" in r.output
    c = connect(store_path)
    try:
        assert c.execute("SELECT count(*) FROM bars").fetchone()[0] == 8
        row = c.execute("SELECT action, details FROM audit_log WHERE action = 'data_delete'").fetchone()
        assert json.loads(row[1])["rows"] == 2 and json.loads(row[1])["reason"] == "bad file"
        assert audit.verify_chain(c).ok
    finally:
        c.close()
