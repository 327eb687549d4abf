"""Account model: venue liquidation formulas and published examples, cross vs isolated, collateral."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from margincal.errors import ConfigError, DataError
from margincal.margin.account import (
    Account,
    AccountPosition,
    brackets_from_table,
    inverse_liquidation_price,
    linear_liquidation_price,
    liquidation_price_with_brackets,
    maintenance_amounts,
)

REF = json.loads((Path(__file__).parents[1] / "reference" / "venue_liquidation_examples.json").read_text())
BRACKETS = pd.read_csv(Path(__file__).parents[1] / "reference" / "binance_btcusdt_brackets.csv")


def test_maintenance_amounts_reproduce_binance_examples():
    e = REF["binance_usdm_maintenance_amount_level3"]
    assert maintenance_amounts([0, e["floor"]], [e["prev_mmr"], e["mmr"]])[1] + e["prev_cum"] == pytest.approx(e["cum"])
    c = REF["binance_coinm_maintenance_amount_level5"]
    assert c["floor"] * (c["mmr"] - c["prev_mmr"]) + c["prev_cum"] == pytest.approx(c["cum"])
    # the whole published BTCUSDT table: our amounts equal Binance's `cum` column
    cums = maintenance_amounts(BRACKETS["notionalFloor"], BRACKETS["maintMarginRatio"])
    np.testing.assert_allclose(cums, BRACKETS["cum"], rtol=0, atol=1e-6)


def test_coinm_maintenance_margin_example():
    e = REF["binance_coinm_maintenance_margin"]
    p = AccountPosition("BTCUSD_PERP", "BTC", e["contracts"], 25000.0, inverse=True, contract_size=e["contract_size"],
                        settlement="BTC", mmr=e["mmr"])
    assert p.maintenance_margin(e["mark"]) == pytest.approx(e["mm_btc"], rel=1e-12)


def test_usdm_position_risk_response():
    e = REF["binance_usdm_position_risk"]
    # the wallet balance that puts the formula's LP at the API's liquidationPrice, to the poster's 2 decimals
    lp = e["liquidation_price"]
    q = e["position_amt"]
    wb = lp * (q * e["mmr"] - q) + q * e["entry_price"] - e["cum"]
    assert wb == pytest.approx(e["wallet_balance_2dp"], abs=0.01)  # the poster truncates to 2 decimals
    assert linear_liquidation_price(wb, q, e["entry_price"], e["mmr"]) == pytest.approx(lp, rel=1e-12)


def test_coinm_calculator_example():
    e = REF["binance_coinm_calculator"]
    lp = inverse_liquidation_price(e["wallet_btc"], e["contracts"], e["contract_size"], e["entry_price"], e["mmr"],
                                   e["cum_btc"])
    assert lp == pytest.approx(e["formula_lp"], abs=1e-6)
    assert lp == pytest.approx(e["binance_calculator_lp"], rel=1e-3)
    # the notional at the liquidation price (~297.6 BTC) is in the 300-BTC bracket of the example
    assert e["contracts"] * e["contract_size"] / lp == pytest.approx(297.8, abs=0.5)


def test_kucoin_isolated_short_example():
    e = REF["kucoin_isolated_short"]
    margin = e["entry_price"] / e["leverage"]
    lp = linear_liquidation_price(margin, -1.0, e["entry_price"], e["mmr"])
    assert lp == pytest.approx(e["liquidation_price"], rel=5e-5)  # KuCoin charges MM on the entry notional (md)


def test_bracket_switch_at_the_liquidation_price():
    br = brackets_from_table(BRACKETS["notionalFloor"], BRACKETS["notionalCap"], BRACKETS["maintMarginRatio"])
    # 10 BTC long at 60,000 (600k notional, bracket 3) with 70k wallet: at the LP the notional is below 250k? no:
    lp = liquidation_price_with_brackets(70_000.0, 10.0, 60_000.0, br)
    n = 10.0 * lp
    b = next(x for x in br if x.floor <= n < x.cap)
    # self-consistent: the LP solves the formula with ITS OWN bracket, and the account health is 0 there
    assert lp == pytest.approx(linear_liquidation_price(70_000.0, 10.0, 60_000.0, b.mmr, b.cum), rel=1e-12)
    acc = Account((AccountPosition("BTCUSDT", "BTC", 10.0, 60_000.0, brackets=br, mmr=None),), {"USDT": 70_000.0})
    assert acc.liquidation_price("BTCUSDT", {"BTC": 60_000.0}) == pytest.approx(lp, rel=1e-9)


def test_cross_numeric_equals_closed_forms_with_other_positions():
    # cross wallet 5,000 USDT, long 1 BTC at 60k (mmr 0.5%) and short 10 ETH at 3k (mmr 1%) marked at 3.1k
    btc = AccountPosition("BTCUSDT", "BTC", 1.0, 60_000.0, mmr=0.005)
    eth = AccountPosition("ETHUSDT", "ETH", -10.0, 3_000.0, mmr=0.01)
    acc = Account((btc, eth), {"USDT": 5_000.0})
    prices = {"BTC": 60_000.0, "ETH": 3_100.0}
    tmm = 10 * 3_100.0 * 0.01
    upnl = -10 * (3_100.0 - 3_000.0)
    ref = linear_liquidation_price(5_000.0, 1.0, 60_000.0, 0.005, other_mm=tmm, other_upnl=upnl)
    assert acc.liquidation_price("BTCUSDT", prices) == pytest.approx(ref, rel=1e-10)
    # COIN-M cross: wallet 1 BTC, short 1,000 contracts of 100 USD at 50k
    inv = AccountPosition("BTCUSD_PERP", "BTC", -1_000.0, 50_000.0, inverse=True, contract_size=100.0,
                          settlement="BTC", mmr=0.01)
    acc2 = Account((inv,), {"BTC": 1.0})
    ref2 = inverse_liquidation_price(1.0, -1_000.0, 100.0, 50_000.0, 0.01)
    # the wallet is in BTC: health in USD is (coin health) * P, so the same root
    assert acc2.liquidation_price("BTCUSD_PERP", {"BTC": 50_000.0}) == pytest.approx(ref2, rel=1e-10)


def test_isolated_position_ignores_the_cross_wallet_and_dydx_rule():
    iso = AccountPosition("BTCUSDT", "BTC", 2.0, 60_000.0, mode="isolated", isolated_margin=12_000.0, mmr=0.03)
    acc = Account((iso,), {"USDT": 1e9})
    # dYdX-style rule (equity = |S| P MMF, no maintenance amount) is the linear form with cum = 0
    ref = (12_000.0 - 2.0 * 60_000.0) / (2.0 * 0.03 - 2.0)
    assert acc.liquidation_price("BTCUSDT", {"BTC": 60_000.0}) == pytest.approx(ref, rel=1e-10)
    v = acc.view({"BTC": 55_000.0})
    eq = 12_000.0 + 2.0 * (55_000.0 - 60_000.0)
    assert v.isolated["BTCUSDT"]["margin_balance"] == pytest.approx(eq)
    assert v.isolated["BTCUSDT"]["margin_ratio"] == pytest.approx(2 * 55_000.0 * 0.03 / eq)


def test_collateral_in_the_same_coin_is_wrong_way():
    # long BTC perp backed by BTC collateral liquidates HIGHER than the same perp backed by USDT of equal value
    p = AccountPosition("BTCUSDT", "BTC", 1.0, 60_000.0, mmr=0.005)
    usd = Account((p,), {"USDT": 20_000.0})
    coin = Account((p,), {"BTC": 20_000.0 / 60_000.0})
    px = {"BTC": 60_000.0}
    lp_usd, lp_coin = usd.liquidation_price("BTCUSDT", px), coin.liquidation_price("BTCUSDT", px)
    assert lp_coin > lp_usd
    # by hand: (1/3) x + (x - 60000) = 0.005 x  ->  x = 60000 / (4/3 - 0.005)
    assert lp_coin == pytest.approx(60_000.0 / (1 + 1 / 3 - 0.005), rel=1e-10)
    # haircuts reduce the collateral value and raise the liquidation price of a long
    hc = Account((p,), {"USDT": 20_000.0}, haircuts={"USDT": 0.1})
    assert hc.liquidation_price("BTCUSDT", px) > lp_usd
    v = hc.view(px)
    assert v.collateral_after_haircuts == pytest.approx(18_000.0)
    assert v.margin_ratio == pytest.approx(300.0 / 18_000.0)


def test_view_and_errors():
    p = AccountPosition("BTCUSDT", "BTC", -1.0, 60_000.0, mmr=0.005)
    acc = Account((p,), {"USDT": 10_000.0, "ETH": 1.0})
    v = acc.view({"BTC": 61_000.0, "ETH": 3_000.0})
    assert v.equity == pytest.approx(13_000.0 - 1_000.0)
    assert v.maintenance_margin == pytest.approx(305.0)
    assert math.isfinite(v.liquidation_prices["BTCUSDT"]) and v.liquidation_prices["BTCUSDT"] > 61_000.0
    with pytest.raises(DataError, match="no USD price for ETH"):
        acc.view({"BTC": 61_000.0})
    with pytest.raises(ConfigError, match="mode"):
        AccountPosition("X", "BTC", 1.0, 1.0, mode="portfolio")
    with pytest.raises(ConfigError, match="settles in BTC"):
        AccountPosition("BTCUSD_PERP", "BTC", 1.0, 1.0, inverse=True, settlement="USDT")
    with pytest.raises(DataError, match="no position"):
        acc.liquidation_price("ETHUSDT", {"BTC": 1.0})
