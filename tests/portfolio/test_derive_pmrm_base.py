"""Derive's base-asset collateral inside the PMRM scenarios (tests/reference/derive_pmrm_base.md)."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from scipy.stats import norm
from typer.testing import CliRunner

from margincal.cli.app import app
from margincal.errors import ConfigError, DataError
from margincal.margin.portfolio import (
    HistoricalPortfolioMargin,
    InstrumentSpec,
    MarketState,
    Portfolio,
    RiskMatrixConfig,
    RiskMatrixMargin,
    account_view,
    book_from_frame,
    deribit_like,
    derive_like,
    parse_instrument,
    portfolio_margin,
    scenario_pnl_matrix,
    standard_margin,
    what_if,
)
from margincal.margin.portfolio.engine import portfolio_margin_reference

ASOF = "2024-05-24T13:00Z"
S, VOL = 68800.0, 0.6
MKT = MarketState(spot={"BTC": S, "ETH": 3725.0}, valuation_time=ASOF, flat_vol=VOL)
BASE, PERP, SEP = "BTC-USDC", "BTC-PERP", "BTC-27SEP24-70000-C"
WORST = "BTC: spot -20%, vol +60%"

# tests/reference/derive_pmrm_base.md (hand-computed; the covered call with scipy's normal cdf)
ALONE_MM, ALONE_IM = 31648.0, 39560.0
HEDGED_MM, HEDGED_IM = 4128.0, 5160.0
DEPEG_ALONE_CHARGE = 2 * S * 0.2 / 0.97  # 28,371.134021
DEPEG_HEDGED_CHARGE = S * 0.2 * (1 / 0.97 - 1)  # 425.567010
COVERED_CHARGE, COVERED_BASIS = 11465.262127219521, 2810.442642053327


def _run(book: dict[str, float], market: MarketState = MKT, cfg: RiskMatrixConfig | None = None):
    pnl = scenario_pnl_matrix([parse_instrument(n) for n in book], market, cfg or derive_like())
    res = portfolio_margin(book, pnl)
    ref = portfolio_margin_reference(book, pnl)
    assert ref.im[0] == pytest.approx(res.im[0], rel=1e-12, abs=1e-9)
    assert ref.mm[0] == pytest.approx(res.mm[0], rel=1e-12, abs=1e-9)
    return res, pnl


def _call(f: float, k: float, t: float, v: float) -> float:
    sd = v * math.sqrt(t)
    d1 = math.log(f / k) / sd + 0.5 * sd
    return f * norm.cdf(d1) - k * norm.cdf(d1 - sd)


def test_preset_parameters_and_names():
    cfg = derive_like()
    assert cfg.base_in_scenarios and cfg.base_contingency == 0.03  # basePercent, config-mainnet.sol @037ee3ac
    assert not deribit_like().base_in_scenarios and deribit_like().base_contingency == 0.0
    assert RiskMatrixConfig().base_contingency == 0.0 and not RiskMatrixConfig().base_in_scenarios
    doc = (derive_like.__doc__ or "").lower()
    assert "basepercent" in doc and "not modelled: base" not in doc
    for name in ("BTC-USDC", "BTC/USDT", "ETH_USDC", "BTCUSDT", "BTC-USD"):
        s = parse_instrument(name)
        assert s.kind == "base" and s.is_base and not s.inverse and s.expiry is None
        assert s.underlying == name[:3]
    with pytest.raises(DataError, match="quoted in BTC"):
        parse_instrument("ETH-BTC")
    with pytest.raises(DataError, match="cannot be inverse"):
        parse_instrument(BASE, inverse=True)
    with pytest.raises(ConfigError, match="cannot be inverse"):
        InstrumentSpec("X", "base", "BTC", inverse=True)
    with pytest.raises(ConfigError, match="base_contingency"):
        RiskMatrixConfig(base_contingency=1.5)
    with pytest.raises(ConfigError, match="base_contingency"):
        RiskMatrixConfig(base_contingency=-0.01)


def test_base_alone_worked_example():
    res, _ = _run({BASE: 2.0})
    assert res.scenario_charge[0] == pytest.approx(2 * S * 0.20, rel=1e-12)  # 27,520 at spot -20%
    assert res.contingency[0] == pytest.approx(0.03 * 2 * S, rel=1e-12)  # 4,128
    assert res.mm[0] == pytest.approx(ALONE_MM, rel=1e-12)
    assert res.im[0] == pytest.approx(ALONE_IM, rel=1e-12)
    assert res.driving_label[0] == WORST
    assert res.confidence is None
    low = dataclasses.replace(MKT, confidence={"BTC": 0.5})
    r2, _ = _run({BASE: 2.0}, low)
    assert r2.confidence[0] == pytest.approx(0.5 * 1.0 * 2 * S, rel=1e-12)  # 68,800, IM only
    assert r2.im[0] == pytest.approx(ALONE_IM + 68800.0, rel=1e-12)
    assert r2.mm[0] == pytest.approx(ALONE_MM, rel=1e-12)
    # no contingencies: the scenario loss alone
    pnl = scenario_pnl_matrix([parse_instrument(BASE)], MKT, derive_like())
    r3 = portfolio_margin({BASE: 2.0}, pnl, include_contingency=False)
    assert r3.mm[0] == pytest.approx(2 * S * 0.20, rel=1e-12)


def test_base_hedged_by_short_perp_nets_in_scenarios_contingencies_add():
    res, pnl = _run({BASE: 1.0, PERP: -1.0})
    assert res.scenario_charge[0] == 0.0 and res.driving_label[0] == ""
    assert res.contingency[0] == pytest.approx(0.03 * S + 0.03 * S, rel=1e-12)  # basePercent + perpPercent
    assert res.mm[0] == pytest.approx(HEDGED_MM, rel=1e-12)
    assert res.im[0] == pytest.approx(HEDGED_IM, rel=1e-12)
    # the base row is the linear perpetual's row (stable price 1)
    i_b, i_p = pnl.instruments.index(BASE), pnl.instruments.index(PERP)
    np.testing.assert_allclose(pnl.matrix[i_b], pnl.matrix[i_p], rtol=0, atol=1e-9)
    low = dataclasses.replace(MKT, confidence={"BTC": 0.4})
    r2, _ = _run({BASE: 1.0, PERP: -1.0}, low)
    assert r2.confidence[0] == pytest.approx(0.6 * (1 + 1) * S, rel=1e-12)  # |perp| + base: 82,560
    assert r2.mm[0] == pytest.approx(HEDGED_MM, rel=1e-12)


def test_stable_below_peg_divides_the_base_and_raises_the_im_factor():
    depeg = dataclasses.replace(MKT, spot={**MKT.spot, "USDC": 0.97})
    res, pnl = _run({BASE: 2.0}, depeg)
    assert pnl.base_value_scale == pytest.approx(1 / 0.97, rel=1e-15)
    assert pnl.im_multiplier == pytest.approx(1.25 + (0.99 - 0.97) * 4.0, rel=1e-12)  # 1.33
    assert res.scenario_charge[0] == pytest.approx(DEPEG_ALONE_CHARGE, rel=1e-12)
    assert res.contingency[0] == pytest.approx(4128.0, rel=1e-12)  # basePercent x spot: not divided
    assert res.mm[0] == pytest.approx(DEPEG_ALONE_CHARGE + 4128.0, rel=1e-12)  # 32,499.134021
    assert res.im[0] == pytest.approx(1.33 * (DEPEG_ALONE_CHARGE + 4128.0), rel=1e-12)  # 43,223.848247
    # hedged: the perpetual is not divided, so the hedge leaves (1/0.97 - 1) of the base move
    hedged, _ = _run({BASE: 1.0, PERP: -1.0}, depeg)
    assert hedged.scenario_charge[0] == pytest.approx(DEPEG_HEDGED_CHARGE, rel=1e-12)
    assert hedged.driving_label[0] == WORST
    assert hedged.mm[0] == pytest.approx(DEPEG_HEDGED_CHARGE + 4128.0, rel=1e-12)  # 4,553.567010
    assert hedged.im[0] == pytest.approx(1.33 * (DEPEG_HEDGED_CHARGE + 4128.0), rel=1e-12)  # 6,056.244124
    # the figures of tests/reference/derive_pmrm_base.md
    assert (res.mm[0], res.im[0], hedged.mm[0], hedged.im[0]) == pytest.approx(
        (32499.134021, 43223.848247, 4553.567010, 6056.244124), abs=1e-6)
    # above the peg threshold but below 1: divided, no extra IM factor
    near = dataclasses.replace(MKT, spot={**MKT.spot, "USDC": 0.995})
    r3, p3 = _run({BASE: 2.0}, near)
    assert p3.im_multiplier == 1.25
    assert r3.scenario_charge[0] == pytest.approx(2 * S * 0.2 / 0.995, rel=1e-12)


def test_covered_call_worked_example():
    res, pnl = _run({BASE: 1.0, SEP: -1.0})
    t = parse_instrument(SEP).years_to_expiry(MKT.valuation_time)
    up = 1 + 0.6 * (30 / (t * 365)) ** 0.13
    c0 = _call(S, 70000.0, t, VOL)
    worst = S * 0.2 + _call(0.8 * S, 70000.0, t, VOL * up) - c0
    basis = (_call(1.05 * S, 70000.0, t, VOL) - c0) * (1 + 1.2 * t)
    assert worst == pytest.approx(COVERED_CHARGE, rel=1e-12)
    assert basis == pytest.approx(COVERED_BASIS, rel=1e-12)
    assert res.scenario_charge[0] == pytest.approx(COVERED_CHARGE, rel=1e-9)
    assert res.driving_label[0] == WORST
    assert res.contingency[0] == pytest.approx(0.03 * S + 0.02 * S, rel=1e-12)  # basePercent + naked short
    assert res.mm[0] == pytest.approx(COVERED_CHARGE + 3440.0, rel=1e-9)  # 14,905.262127
    assert res.im[0] == pytest.approx(1.25 * (COVERED_CHARGE + 3440.0), rel=1e-9)  # 18,631.577659
    assert (res.mm[0], res.im[0]) == pytest.approx((14905.262127, 18631.577659), abs=1e-6)
    assert _call(S, 70000.0, t, VOL) == pytest.approx(9113.535366, abs=1e-6)
    # the base is in no expiry group: not discounted, no basis contingency of its own
    i_b = pnl.instruments.index(BASE)
    assert pnl.discount_group[i_b] == -1
    assert pnl.basis_up.tocsr()[i_b].nnz == 0


def test_refusals_name_the_problem():
    with pytest.raises(ConfigError, match="BTC-USDC is base-asset collateral.*deribit_like.*account view"):
        scenario_pnl_matrix([parse_instrument(BASE)], MKT, deribit_like())
    pnl = scenario_pnl_matrix([parse_instrument(BASE), parse_instrument(PERP)], MKT, derive_like())
    with pytest.raises(DataError, match="base collateral BTC-USDC is -1 in position row 1.*cannot be negative"):
        portfolio_margin(np.array([[1.0, 0.0], [-1.0, 2.0]]), pnl)
    with pytest.raises(DataError, match="cannot be negative"):
        portfolio_margin_reference({BASE: -0.5}, pnl)
    with pytest.raises(DataError, match="base-asset collateral"):
        standard_margin({BASE: 1.0}, MKT, venue="derive")
    idx = pd.date_range("2024-01-01", periods=80, freq="D", tz="UTC")
    prices = pd.DataFrame({"BTC": S * np.exp(np.cumsum(np.random.default_rng(3).normal(0, 0.02, 80)))}, index=idx)
    hist = HistoricalPortfolioMargin(level=0.99, horizon_hours=24, offset=1.0).fit(prices)
    with pytest.raises(ConfigError, match="historical method margins derivatives only"):
        hist.scenario_pnl([parse_instrument(BASE)])


def test_deribit_preset_unchanged_by_the_base_fields(specs, market):
    a = scenario_pnl_matrix(specs, market, deribit_like())
    b = scenario_pnl_matrix([*specs, parse_instrument(BASE)], market,
                            dataclasses.replace(deribit_like(), base_in_scenarios=True))
    np.testing.assert_array_equal(a.matrix, b.matrix[:-1])
    np.testing.assert_array_equal(a.futures_charge, b.futures_charge[:-1])
    assert b.futures_charge[-1] == 0.0  # base_contingency default 0


@pytest.mark.parametrize("mode", ["segregated", "cross"])
def test_vectorised_equals_reference_with_base_holdings(specs, market, mode):
    cfg = dataclasses.replace(derive_like(), settlement_mode=mode)
    all_specs = [*specs, parse_instrument("BTC-USDC"), parse_instrument("ETH/USDT")]
    mkt = dataclasses.replace(market, spot={**market.spot, "USDC": 0.98}, rate=0.02,
                              confidence={"BTC": 0.5, "BTC-28JUN24": 0.3, "ETH": 0.9})
    pnl = scenario_pnl_matrix(all_specs, mkt, cfg)
    assert pnl.base_mask is not None and pnl.base_mask.sum() == 2
    rng = np.random.default_rng(11)
    n = 400
    P = rng.normal(0.0, 3.0, size=(n, len(all_specs)))
    P[rng.random(P.shape) < 0.6] = 0.0
    P[:, -2:] = np.abs(P[:, -2:])  # base balances are >= 0
    P[:30, :-2] = 0.0  # base-only accounts
    P[30] = 0.0  # an empty account
    fast = portfolio_margin(sparse.csr_matrix(P), pnl, block_size=53)
    slow = portfolio_margin_reference(P, pnl)
    np.testing.assert_allclose(fast.im, slow.im, rtol=1e-10, atol=1e-8)
    np.testing.assert_allclose(fast.mm, slow.mm, rtol=1e-10, atol=1e-8)
    np.testing.assert_allclose(fast.contingency, slow.contingency, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(fast.confidence, slow.confidence, rtol=1e-12, atol=1e-9)
    np.testing.assert_array_equal(fast.driving_scenario, slow.driving_scenario)
    assert fast.im[30] == 0.0
    # base-only accounts: the loss of the -20% move of each coin (in the stablecoin) plus 3% of its value
    b, e = P[:30, -2], P[:30, -1]
    expected_mm = (b * 68800.0 + e * 3725.0) * (0.2 / 0.98 + 0.03)
    np.testing.assert_allclose(fast.mm[:30], expected_mm, rtol=1e-12)
    # the confidence contingency of base-only accounts: BTC at 0.5, ETH at 0.9 (above 0.55: none)
    np.testing.assert_allclose(fast.confidence[:30], 0.5 * b * 68800.0, rtol=1e-12)


def test_account_view_counts_base_at_spot_and_what_if_adds_a_hedge():
    pf = Portfolio(positions={BASE: 1.0}, market=MKT, engine=RiskMatrixMargin(config=derive_like()))
    v = account_view(pf, {"USDC": 0.0})
    assert v["base_collateral_value"] == pytest.approx(S)
    assert v["equity"] == pytest.approx(S)
    assert v["mm"] == pytest.approx(ALONE_MM / 2, rel=1e-12)
    assert v["liquidation_moves"]["BTC"] is None  # the coin always covers its own 23% requirement
    r = what_if(pf, {PERP: -1.0}, collateral={"USDC": 0.0})
    assert r.im_before == pytest.approx(ALONE_IM / 2, rel=1e-12)
    assert r.im_after == pytest.approx(HEDGED_IM, rel=1e-12)
    assert r.account_after is not None and r.account_after["equity"] == pytest.approx(S)
    with pytest.raises(DataError, match="cannot be negative"):
        what_if(pf, {BASE: -2.0})


def test_book_rows_for_base_collateral():
    df = pd.DataFrame({"account": ["a", "a", "b"], "instrument": ["BTC-USDC", "BTC-PERP", "ETH-PERP"],
                       "quantity": [1.0, -1.0, 2.0]})
    bk = book_from_frame(df)
    assert [s.kind for s in bk.specs] == ["base", "perpetual", "perpetual"]
    bad = pd.DataFrame({"account": ["a", "b"], "instrument": ["BTC-PERP", "ETH-BTC"], "quantity": [1.0, 1.0]})
    with pytest.raises(DataError, match=r"book line 3: instrument 'ETH-BTC' is a spot pair quoted in BTC"):
        book_from_frame(bad)
    inv = pd.DataFrame({"account": ["a"], "instrument": ["BTC-USDC"], "quantity": [1.0], "inverse": ["true"]})
    with pytest.raises(DataError, match="line 2: .*cannot be inverse"):
        book_from_frame(inv)


def test_cli_book_with_base_rows(tmp_path):
    p = tmp_path / "book.csv"
    p.write_text("account,instrument,quantity\nalice,BTC-USDC,2\nbob,BTC-USDC,1\nbob,BTC-PERP,-1\n")
    runner = CliRunner()
    base = ["portfolio", str(p), "--spot", "BTC=68800", "--asof", "2024-05-24T13:00",
            "--store", str(tmp_path / "none.duckdb")]
    r = runner.invoke(app, [*base, "--preset", "derive", "--json"])
    assert r.exit_code == 0, r.output
    rows = {a["account"]: a for a in json.loads(r.output)["accounts"]}
    assert rows["alice"]["im"] == pytest.approx(ALONE_IM, rel=1e-12)
    assert rows["bob"]["im"] == pytest.approx(HEDGED_IM, rel=1e-12)
    r = runner.invoke(app, [*base, "--preset", "derive", "--spot", "USDC=0.97", "--json"])
    assert r.exit_code == 0, r.output
    rows = {a["account"]: a for a in json.loads(r.output)["accounts"]}
    assert rows["alice"]["im"] == pytest.approx(1.33 * (DEPEG_ALONE_CHARGE + 4128.0), rel=1e-12)
    r = runner.invoke(app, base)  # Deribit preset: refused, one line, exit 2
    assert r.exit_code == 2 and "BTC-USDC is base-asset collateral" in r.output
    assert "Traceback" not in r.output
    p.write_text("account,instrument,quantity\nalice,BTC-USDC,-2\n")
    r = runner.invoke(app, [*base, "--preset", "derive"])
    assert r.exit_code == 2 and "cannot be negative" in r.output
