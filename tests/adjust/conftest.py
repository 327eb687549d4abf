"""A small real-data store for the monitor tests: BTC/ETH perpetual hourly bars, funding, BTC open interest."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from margincal.config import CalibrationSettings, sample_data_dir
from margincal.data.store import connect, load_bars, transaction
from margincal.margin.params import new_run_id, publish
from margincal.margin.published import calibrate_bars, to_parameter_set

FIRST, LAST = "2022-08-20", "2022-11-21"


def build_store(path: Path, *, first: str = FIRST, last: str = LAST, calibrate_before: str | None = "2022-11-01"
                ) -> Path:
    d = sample_data_dir()
    con = connect(path)
    with transaction(con):
        for f, inst in [("btcusdt_perp_1h.csv.gz", "BTC-PERP"), ("ethusdt_perp_1h.csv.gz", "ETH-PERP")]:
            df = pd.read_csv(d / f)
            df["ts"] = pd.to_datetime(df["timestamp"])
            df = df[(df["ts"] >= first) & (df["ts"] < last)]
            frame = pd.DataFrame({"instrument": inst, "timeframe": "1h", "ts": df["ts"].dt.tz_localize(None),
                                  "open": df["open"], "high": df["high"], "low": df["low"], "close": df["close"],
                                  "volume": df["volume"]})
            con.register("frame", frame)
            con.execute("INSERT INTO bars SELECT * FROM frame")
            con.unregister("frame")
        for f, inst in [("btcusdt_funding.csv", "BTC-PERP"), ("ethusdt_funding.csv", "ETH-PERP")]:
            df = pd.read_csv(d / f)
            df["ts"] = pd.to_datetime(df["funding_time"]).dt.tz_localize(None)
            df = df[(df["ts"] >= first) & (df["ts"] < last)]
            frame = pd.DataFrame({"instrument": inst, "ts": df["ts"], "rate": df["funding_rate"]})
            con.register("frame", frame)
            con.execute("INSERT INTO funding SELECT * FROM frame")
            con.unregister("frame")
        df = pd.read_csv(d / "btc_open_interest_daily.csv")
        df["ts"] = pd.to_datetime(df["date"])
        df = df[(df["ts"] >= first) & (df["ts"] < last)]
        frame = pd.DataFrame({"instrument": "BTC-PERP", "ts": df["ts"], "oi": df["open_interest_usd"]})
        con.register("frame", frame)
        con.execute("INSERT INTO open_interest SELECT instrument, ts, oi, NULL FROM frame")
        con.unregister("frame")
    if calibrate_before is not None:
        settings = CalibrationSettings()
        before = pd.Timestamp(calibrate_before, tz="UTC") - pd.Timedelta(hours=1)
        cals = [calibrate_bars(load_bars(con, i, "1h", end=before), i, "1h", settings)
                for i in ("BTC-PERP", "ETH-PERP")]
        publish(con, to_parameter_set(cals, settings, new_run_id()), created_by="calibrator", source="calibration")
    con.close()
    return path


@pytest.fixture(scope="session")
def ftx_store_template(tmp_path_factory) -> Path:
    return build_store(tmp_path_factory.mktemp("ftx") / "template.duckdb")


@pytest.fixture
def ftx_store(ftx_store_template, tmp_path) -> Path:
    p = tmp_path / "ftx.duckdb"
    shutil.copy(ftx_store_template, p)
    return p
