"""Exchange presets reproduce the venues' published rules (worked examples from their pages)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from margincal.data.store import connect
from margincal.errors import ConfigError
from margincal.margin import params as P
from margincal.margin import presets
from margincal.margin.tiers import TierSchedule

REF = Path(__file__).resolve().parents[1] / "reference"


def test_deribit_btc_preset_examples():
    p = presets.get("deribit_btc_future")
    # 350 BTC at 100,000 USD = 35,000,000 notional: IM 2% + 350 * 0.005% = 3.75%, MM 1% + 1.75% = 2.75%
    r = p.margin_rate(35_000_000, price=100_000)
    assert r.im == pytest.approx(0.0375) and r.mm == pytest.approx(0.0275)
    # 25 BTC: 2.125% / 1.125%; amounts 25 * 2.125% = 0.53125 BTC = 53,125 USD
    r = p.margin_rate(2_500_000)
    assert r.im == pytest.approx(0.02125) and r.mm == pytest.approx(0.01125)
    assert p.margin(2_500_000).im == pytest.approx(53_125.0)
    np.testing.assert_allclose(p.margin_rate(np.array([0.0, 3e7]), price=1e5).im, [0.02, 0.035])


def test_deribit_eth_preset():
    # 10,000 ETH: IM 2% + 10,000 * 0.0004% = 6%, MM 1% + 4% = 5%
    r = presets.get("deribit_eth_future").margin_rate(10_000 * 3_000, price=3_000)
    assert r.im == pytest.approx(0.06) and r.mm == pytest.approx(0.05)


def test_binance_preset_matches_reference_table():
    p = presets.get("binance_btcusdt")
    ref = TierSchedule.from_brackets(REF / "binance_btcusdt_brackets.csv")
    np.testing.assert_allclose(p.schedule.maintenance_amounts, ref.maintenance_amounts)
    df = pd.read_csv(REF / "binance_btcusdt_brackets.csv")
    np.testing.assert_allclose(p.schedule.max_leverages, df["initialLeverage"])
    # 1,000,000: IM = 1/50 = 2%; MM = (1e6 * 1% - 1,300) / 1e6 = 0.87%
    r = p.margin_rate(1_000_000)
    assert r.im == pytest.approx(0.02) and r.mm == pytest.approx(0.0087)


def test_dydx_presets():
    # Small-Cap at OI 35M: 10% + (35-20)/(50-20) * 90% = 55%; MMF stays 10% * 0.5 = 5%
    r = presets.get("dydx_small_cap").margin_rate(1e5, open_interest=35e6)
    assert r.im == pytest.approx(0.55) and r.mm == pytest.approx(0.05)
    lc = presets.get("dydx_large_cap").margin_rate(np.array([1e3, 1e9]), open_interest=1e12)
    np.testing.assert_allclose(lc.im, [0.02, 0.02])
    np.testing.assert_allclose(lc.mm, [0.012, 0.012])  # 2% * 0.6
    assert presets.get("dydx_mid_cap").margin_rate(1.0).im == pytest.approx(0.05)  # OI unknown -> 0


def test_registry_and_parameter_set_publishes():
    assert "binance_btcusdt" in presets.names()
    with pytest.raises(ConfigError, match="unknown margin preset"):
        presets.get("nope")
    pset = presets.parameter_set()
    for name in presets.names():
        d = pset[presets.get(name).instrument].details
        assert d["source"].startswith(("http", "GET")) and d["retrieved"]
    con = connect(":memory:")
    try:
        v = P.publish(con, pset, created_by="test", source="presets")
        back = P.load(con, v)
        assert back["BTCUSDT"].details["tiers"][-1]["maintenance_amount"] == pytest.approx(103_046_300.0)
        assert sum(line.startswith("BTCUSDT,") for line in back.to_csv().splitlines()) == 10
    finally:
        con.close()
