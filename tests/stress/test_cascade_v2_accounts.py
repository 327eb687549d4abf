"""Cascade v2 accounts from the account model, option positions, collateral depeg (issue 19 item 5)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from scipy.stats import norm

from margincal.errors import ConfigError
from margincal.margin.account import Account, AccountPosition
from margincal.stress.cascade import (
    Agents,
    MarketConfig,
    MarkRule,
    OptionLeg,
    accounts_from_model,
    simulate_paths,
)

OFF = Agents(market_makers=False, arbitrageurs=False, stop_losses=False)
QUIET = MarketConfig(liquidation="full", fee_rate=0.0, fund_ratio=1.0, half_spread=0.0, depth_ratio=1e6,
                     mark=MarkRule("last"), agents=OFF)


def _b76(F, K, T, vol, call):
    """Black (1976), r = 0, written out here from the textbook formula (Hull, Options, Futures and Other
    Derivatives, ch. 18) with scipy's normal cdf, independent of margincal.pricing."""
    d1 = (math.log(F / K) + 0.5 * vol * vol * T) / (vol * math.sqrt(T))
    d2 = d1 - vol * math.sqrt(T)
    return F * norm.cdf(d1) - K * norm.cdf(d2) if call else K * norm.cdf(-d2) - F * norm.cdf(-d1)


def _cross_long():
    return Account((AccountPosition("BTCUSDT", "BTC", 1.0, 20_000.0, mmr=0.01),),
                   {"USDT": 1_500.0, "BTC": 0.02, "USDE": 500.0}, {"BTC": 0.10, "USDE": 0.05}, name="cross")


def _iso_short():
    return Account((AccountPosition("BTCUSD_PERP", "BTC", -200, 20_000.0, inverse=True, contract_size=100.0,
                                    settlement="BTC", mode="isolated", isolated_margin=0.05, mmr=0.005),),
                   {}, name="iso")


def test_accounts_from_model_maps_wallets_positions_and_haircuts():
    acc = accounts_from_model([_cross_long(), _iso_short()], 20_000.0)
    assert acc.labels["names"] == ["cross", "iso/BTCUSD_PERP"]
    assert list(acc.lin_qty) == [1.0, 0.0] and list(acc.inv_contracts) == [0.0, -20_000.0]
    assert list(acc.cash_c) == [150_000, 0] and list(acc.btc_sats) == [2_000_000, 5_000_000]
    assert list(acc.stable_c) == [50_000, 0]
    assert list(acc.haircut_btc) == [0.10, 0.0] and list(acc.haircut_stable) == [0.05, 0.0]
    assert acc.mm_rate == pytest.approx([0.01, 0.005]) and list(acc.isolated) == [False, True]
    with pytest.raises(ConfigError, match="ETH"):
        accounts_from_model([Account((AccountPosition("ETHUSDT", "ETH", 1.0, 2_000.0),), {"USDT": 100.0})], 20_000.0)
    with pytest.raises(ConfigError, match="unknown accounts"):
        accounts_from_model([_cross_long()], 20_000.0, options={"nobody": OptionLeg(-1, 1, 1, True, 0.5)})


def test_v2_triggers_at_the_account_models_liquidation_prices():
    """The account model's liquidation prices (Binance's formulas; cross: brentq, BTC collateral moving with
    the price) bracket v2's trigger: 0.1% on the safe side nothing happens, 0.1% beyond it is liquidated."""
    prices = {"BTC": 20_000.0, "USDE": 1.0}
    p_long = _cross_long().liquidation_price("BTCUSDT", prices)
    p_short = _iso_short().liquidation_price("BTCUSD_PERP", prices)
    assert 17_000 < p_long < 20_000 < p_short < 24_000
    acc = accounts_from_model([_cross_long(), _iso_short()], 20_000.0)
    moves = [p_long * 1.001, p_long * 0.999, p_short * 0.999, p_short * 1.001]
    r = simulate_paths(acc, np.array([[20_000.0, m] for m in moves]), QUIET)
    liquidated = r.final["lin_qty"][:, 0] == 0, r.final["inv_contracts"][:, 1] == 0
    assert list(liquidated[0]) == [False, True, False, False]
    assert list(liquidated[1]) == [False, False, False, True]
    assert np.all(r.conservation_c == 0) and np.all(r.conservation_sats == 0)


def _put_seller(cash=3_000.0, ccy="USDT", strike=18_000.0):
    return Account((), {ccy: cash}, {"USDE": 0.05}, name="put")


def test_short_put_liquidated_in_a_crash_settles_in_cents():
    """Short 1 BTC put K 18,000, 30 days, vol 60%, USDT 3,000 of margin; index 20,000 -> 19,000 -> 17,000
    -> 15,500 (15-minute steps). Equity = 3,000 - (v_t - v_0); MM = Derive's short-put rule
    v_t + max(0.09 S, 0.09 v_t). Expected step and cash below use an independent Black-76 (scipy)."""
    leg = OptionLeg(-1.0, 18_000.0, 30 / 365, False, 0.6)
    acc = accounts_from_model([_put_seller()], 20_000.0, options={"put": leg})
    path = [20_000.0, 19_000.0, 17_000.0, 15_500.0]
    v0 = _b76(20_000.0, 18_000.0, 30 / 365, 0.6, False)
    assert acc.opt_entry[0] == pytest.approx(v0, rel=1e-9)
    hit = None
    for t, S in enumerate(path):
        v = _b76(S, 18_000.0, 30 / 365 - t * 900 / (365 * 86400), 0.6, False)
        if 3_000.0 - (v - v0) < v + max(0.09 * S, 0.09 * v):
            hit = (t, v)
            break
    assert hit is not None and hit[0] == 2  # solvent at 19,000, liquidated at 17,000
    r = simulate_paths(acc, np.array([path]), QUIET)
    assert r.n_liquidations[0] == 1 and r.final["opt_qty"][0, 0] == 0
    assert r.final["cash_c"][0, 0] == 300_000 + math.floor(100 * -1.0 * (hit[1] - v0) + 1e-6)
    assert r.liquidated_notional[0] == pytest.approx(hit[1], rel=1e-9)
    assert r.conservation_c[0] == 0 and r.bad_debt_c[0] == 0
    # partial liquidation buys back only part of the put
    p = simulate_paths(acc, np.array([path]), replace(QUIET, liquidation="partial"))
    assert -1.0 < p.final["opt_qty"][0, 0] < 0 and p.conservation_c[0] == 0


def test_options_with_perps_on_many_crash_paths_conserve_money_exactly():
    """40 model accounts (cross longs / shorts with USDT, BTC and USDE collateral, isolated inverse shorts),
    a third of them also short or long puts and calls; 32 fat-tailed crash paths with a USDe wobble, a thin
    fund (ranked ADL fires): cents, satoshis and stablecoin cents are conserved on every path."""
    rng = np.random.default_rng(4)
    accounts, options = [], {}
    for i in range(40):
        side = 1.0 if i % 2 == 0 else -1.0
        if i % 5 == 4:
            pos = AccountPosition("INV", "BTC", -side * rng.integers(50, 400), 20_000.0, inverse=True,
                                  contract_size=100.0, settlement="BTC", mode="isolated",
                                  isolated_margin=float(rng.uniform(0.05, 0.3)), mmr=0.01)
            accounts.append(Account((pos,), {}, name=f"a{i}"))
            continue
        pos = AccountPosition("LIN", "BTC", side * float(rng.uniform(0.2, 3.0)), 20_000.0, mmr=0.02)
        bal = {"USDT": float(rng.uniform(1_000, 8_000)), "BTC": float(rng.uniform(0, 0.1)),
               "USDE": float(rng.uniform(0, 2_000))}
        accounts.append(Account((pos,), bal, {"BTC": 0.1, "USDE": 0.05}, name=f"a{i}"))
        if i % 3 == 0:
            options[f"a{i}"] = OptionLeg(float(rng.choice([-1.0, -0.5, 0.5])), float(rng.uniform(15_000, 24_000)),
                                         float(rng.uniform(0.01, 0.2)), bool(rng.random() < 0.5), 0.6)
    acc = accounts_from_model(accounts, 20_000.0, options=options)
    assert acc.has_options and int((acc.opt_qty != 0).sum()) == len(options)
    P, T = 32, 20
    idx = 20_000.0 * np.exp(np.c_[np.zeros(P), np.cumsum(-0.01 + 0.03 * rng.standard_t(3, (P, T - 1)), axis=1)])
    stable = np.clip(1.0 - 0.2 * rng.random((P, T)), 0.65, 1.0)
    for liq in ("full", "partial"):
        r = simulate_paths(acc, idx, MarketConfig(liquidation=liq, fund_ratio=0.0002, depth_ratio=0.05),
                           stable=stable, funding=2e-4)
        opt_cols = acc.opt_qty != 0
        assert (r.final["opt_qty"][:, opt_cols] != acc.opt_qty[opt_cols]).any()  # options were liquidated
        assert np.all(r.conservation_c == 0) and np.all(r.conservation_sats == 0)
        assert np.all(r.conservation_stable == 0)
        assert np.all(r.bad_debt_c == r.fund_paid_c + r.socialised_c + r.uncovered_c)


def test_usde_depeg_to_0_65_liquidates_the_option_account_holding_it():
    """Flat BTC at 20,000; USDe 1 -> 0.80 -> 0.65 (its Binance low on 2025-10-10). Two put sellers (K 15,000,
    30 days, vol 60%: v about 17 USD, MM about v + 1,800): 2,500 of USDe (haircut 5%) vs 2,500 USDT.
    At 0.65 the USDe account's equity 2,500 x 0.65 x 0.95 = 1,543.75 < MM: liquidated; the USDT one is not."""
    leg = OptionLeg(-1.0, 15_000.0, 30 / 365, False, 0.6)
    acc = accounts_from_model([Account((), {"USDE": 2_500.0}, {"USDE": 0.05}, name="usde"),
                               Account((), {"USDT": 2_500.0}, name="usdt")], 20_000.0,
                              options={"usde": leg, "usdt": leg})
    idx = np.full((1, 3), 20_000.0)
    r = simulate_paths(acc, idx, QUIET, stable=np.array([[1.0, 0.80, 0.65]]))
    assert list(r.final["opt_qty"][0]) == [0.0, -1.0]
    assert r.n_liquidations[0] == 1 and r.final["stable_c"][0, 0] == 0
    assert r.conservation_c[0] == 0 and r.conservation_stable[0] == 0
    calm = simulate_paths(acc, idx, QUIET)
    assert calm.n_liquidations[0] == 0
