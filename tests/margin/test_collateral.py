"""Collateral haircuts from the margin tail models; wrong-way, own token, concentration; depeg scenario."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from margincal.errors import ConfigError, DataError
from margincal.margin.account import Account, AccountPosition
from margincal.margin.collateral import HaircutPolicy, collateral_haircuts, haircut_fractions
from margincal.risk.measures import expected_shortfall
from margincal.stress.library import StablecoinDepeg, daily_closes, depeg_scenarios, get_scenarios


def _logret(coin: str) -> pd.Series:
    c = daily_closes(coin)["close"]
    c.index = pd.DatetimeIndex(c.index).tz_localize("UTC")
    return np.log(c).diff().dropna()


@pytest.fixture(scope="module")
def rets():
    return {c: _logret(c) for c in ("BTC", "ETH", "BNB")}


def test_market_part_is_the_es_of_the_margin_model(rets):
    # historical simulation over one daily bar: ES of the simple-return losses of holding the coin
    pol = HaircutPolicy(model="hs", horizon_hours=24.0, level=0.99, half_spread=0.0, concentration_limit=1.0)
    hc = collateral_haircuts({"BTC": 1.0}, {"BTC": 60_000.0}, rets, policy=pol)
    losses = -np.expm1(rets["BTC"].to_numpy())
    assert hc["BTC"].market_es == pytest.approx(expected_shortfall(losses, 0.99), rel=1e-12)
    assert hc["BTC"].haircut == pytest.approx(hc["BTC"].market_es, rel=1e-12)


def test_liquidity_cost_grows_with_the_amount(rets):
    pol = HaircutPolicy(model="hs", horizon_hours=24.0, concentration_limit=1.0)
    small = collateral_haircuts({"ETH": 10.0}, {"ETH": 3_000.0}, rets, adv_usd={"ETH": 1e9}, policy=pol)["ETH"]
    big = collateral_haircuts({"ETH": 100_000.0}, {"ETH": 3_000.0}, rets, adv_usd={"ETH": 1e9}, policy=pol)["ETH"]
    sd = float(np.std(rets["ETH"].to_numpy(), ddof=1))  # daily bars
    # half spread 5 bp + 1.0 x sigma_daily x sqrt(value / ADV): 300 M of 1 bn ADV
    assert big.liquidity == pytest.approx(0.0005 + sd * math.sqrt(3e8 / 1e9), rel=1e-9)
    assert big.haircut > small.haircut


def test_wrong_way_own_token_and_stablecoin_floor(rets):
    pol = HaircutPolicy(model="hs", horizon_hours=24.0, own_tokens=("BNB",), concentration_limit=1.0,
                        stress_floors={"USDE": StablecoinDepeg("usde", price=0.65).haircut_floor})
    long_btc = rets["BTC"] * 2.0  # the account's P&L moves with BTC: BTC collateral is wrong-way
    short_btc = -rets["BTC"]
    prices = {"BTC": 60_000.0, "BNB": 600.0}
    bal = {"BTC": 1.0, "BNB": 10.0, "USDE": 5_000.0, "USDT": 5_000.0}
    ww = collateral_haircuts(bal, prices, rets, exposure_pnl=long_btc, policy=pol)
    rw = collateral_haircuts(bal, prices, rets, exposure_pnl=short_btc, policy=pol)
    base = ww["BTC"].market_es + ww["BTC"].liquidity
    assert ww["BTC"].correlation == pytest.approx(1.0)
    assert ww["BTC"].haircut == pytest.approx(min(1.0, base + (1.0 - base) * 1.0))  # rho = 1: no credit left
    assert rw["BTC"].correlation == pytest.approx(-1.0) and rw["BTC"].wrong_way_add == 0.0
    assert ww["BNB"].haircut == 1.0 and ww["BNB"].floor == "venue's own token"  # the FTT lesson
    assert ww["USDE"].haircut == pytest.approx(0.35) and ww["USDE"].floor == "stress scenario"
    assert ww["USDT"].haircut == 0.0
    assert set(haircut_fractions(ww)) == set(bal)


def test_concentration_cap(rets):
    pol = HaircutPolicy(model="hs", horizon_hours=24.0, half_spread=0.0, concentration_limit=0.5)
    hc = collateral_haircuts({"USDT": 1_000.0, "ETH": 10.0}, {"ETH": 3_000.0}, rets, policy=pol)
    total = 1_000.0 + 30_000.0 * (1 - hc["ETH"].market_es)
    assert hc["ETH"].credited_usd == pytest.approx(0.5 * total)
    assert "concentration cap 50%" in hc["ETH"].floor
    with pytest.raises(ConfigError, match="concentration_limit"):
        HaircutPolicy(concentration_limit=0.0)
    with pytest.raises(DataError, match="no return history for collateral SOL"):
        collateral_haircuts({"SOL": 1.0}, {"SOL": 150.0}, rets)


def test_depeg_scenarios_in_the_library_and_applied_to_an_account():
    names = [s.name for s in get_scenarios("depeg")]
    assert names == ["usde-depeg-2025-10-10", "usdc-depeg-2023-03-11"]
    assert set(names) <= {s.name for s in get_scenarios("all")}
    usde = depeg_scenarios()[0]
    assert usde.price == 0.65 and usde.spot_move == pytest.approx(math.log(112774.5 / 121662.4))
    # an account with USDe collateral, long 1 BTC perp: equity falls by 35% of the USDe and by the BTC move
    acc = Account((AccountPosition("BTCUSDT", "BTC", 1.0, 100_000.0, mmr=0.005),), {"USDE": 20_000.0})
    before = acc.view({"BTC": 100_000.0, "USDE": 1.0})
    after = usde.apply_to_account(acc, {"BTC": 100_000.0, "USDE": 1.0})
    btc1 = 100_000.0 * math.exp(usde.spot_move)
    assert after.equity == pytest.approx(0.65 * 20_000.0 + (btc1 - 100_000.0))
    assert after.margin_ratio > before.margin_ratio
    assert after.liquidation_prices["BTCUSDT"] > before.liquidation_prices["BTCUSDT"]
    with pytest.raises(ConfigError, match="price"):
        StablecoinDepeg("bad", price=1.5)
