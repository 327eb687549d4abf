"""Risk-matrix portfolio margin: scenario matrix vs QuantLib, worked examples, fast path vs loop, properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
import QuantLib as ql  # the independent reference, a test dependency: missing fails, never skips
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import sparse

from margincal.errors import ConfigError, DataError
from margincal.margin.portfolio import (
    InstrumentSpec,
    MarketState,
    RiskMatrixConfig,
    RiskMatrixMargin,
    deribit_like,
    derive_like,
    parse_instrument,
    portfolio_margin,
    portfolio_margin_blocks,
    portfolio_margin_reference,
    scenario_pnl_matrix,
)


def _ql_price(is_call: bool, K: float, F: float, T: float, vol: float) -> float:
    typ = ql.Option.Call if is_call else ql.Option.Put
    return ql.blackFormula(typ, K, F, vol * math.sqrt(T), 1.0)


def test_presets_scenario_counts_and_published_figures():
    d, v = deribit_like(), derive_like()
    # Deribit: +/-16% in 9 buckets x (up, same, down) + 8 extended moves (vol up only)
    assert d.spot_shocks == (-0.16, -0.12, -0.08, -0.04, 0.0, 0.04, 0.08, 0.12, 0.16)
    assert len(d.spot_shocks) * 3 + len(d.extended_shocks) == 35
    assert d.extended_shocks == (-0.66, -0.33, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0)
    # Derive mainnet getDefaultScenarios(): 23 scenarios, +/-15% x 3 vol states + (+/-20%, vol up)
    assert len(v.spot_shocks) * 3 + len(v.extended_shocks) == 23
    assert (v.vol_up, v.vol_down, v.vol_power_short, v.vol_power_long) == (0.6, 0.3, 0.3, 0.13)
    assert (v.short_option_contingency, v.futures_contingency, v.im_multiplier) == (0.02, 0.03, 1.25)
    assert any("derivexyz/v2-core" in s for s in v.sources)
    assert any("support.deribit.com" in s for s in d.sources)


def test_vol_multipliers_worked_example():
    d, v = deribit_like(), derive_like()
    up, down = d.vol_multipliers(np.array([15.0, 30.0, 0.25, 120.0]))
    # Deribit pme/simulate: up 0.5, down 0.25, short-term power 0.3, long-term 0.13
    # 15 days: 1 + 0.5 (30/15)^0.3 ; 30 days: 1.5 ; floor 1 day: 30^0.3 = 2.772 ; 120 days: (30/120)^0.13
    assert up.tolist() == pytest.approx([1.0 + 0.5 * 2 ** 0.3, 1.5, 1.0 + 0.5 * 30 ** 0.3, 1.0 + 0.5 * 0.25 ** 0.13])
    assert down.tolist() == pytest.approx([1.0 - 0.25 * 2 ** 0.3, 0.75, 1.0 - 0.25 * 30 ** 0.3,
                                           1.0 - 0.25 * 0.25 ** 0.13])
    assert (d.min_vol_shock_up, d.mm_fraction, d.delta_shock_max, d.delta_shock_threshold) == (0.5, 0.8, 0.1, 2e7)
    up2, down2 = v.vol_multipliers(np.array([60.0]))
    # Derive, longer than 30 days uses the long-term power 0.13: 1 + 0.6 * 0.5^0.13
    assert up2[0] == pytest.approx(1.0 + 0.6 * 0.5 ** 0.13)
    assert down2[0] == pytest.approx(1.0 - 0.3 * 0.5 ** 0.13)
    # vol down is floored at 0 when the scaled shock exceeds 100%
    harsh = RiskMatrixConfig(vol_down=0.9)
    assert harsh.vol_multipliers(np.array([1.0]))[1][0] == 0.0


def test_option_columns_match_quantlib_full_revaluation(specs, market):
    cfg = deribit_like()
    pnl = scenario_pnl_matrix(specs, market, cfg)
    idx = pnl.index()
    seg = dict((n, (a, z)) for n, a, z in pnl.segments)
    a, _ = seg["BTC"]
    i = idx["BTC-28JUN24-70000-C"]
    T = (pnl.specs[i].expiry - market.valuation_time).total_seconds() / (365 * 86400)
    up, down = cfg.vol_multipliers(np.array([T * 365]))
    base = _ql_price(True, 70000.0, 68800.0, T, 0.55)
    j = 0
    for s in cfg.spot_shocks:
        for mult in (up[0], 1.0, down[0]):
            ref = _ql_price(True, 70000.0, 68800.0 * (1 + s), T, 0.55 * mult) - base
            assert pnl.matrix[i, a + j] == pytest.approx(ref, abs=1e-7)
            j += 1
    for e, w in zip(cfg.extended_shocks, cfg.extended_weights, strict=True):
        ref = w * (_ql_price(True, 70000.0, 68800.0 * (1 + e), T, 0.55 * up[0]) - base)
        assert pnl.matrix[i, a + j] == pytest.approx(ref, abs=1e-7)
        j += 1
    # the explicit vol of the 90000 call (0.8) is used, not the flat 0.55
    k = idx["BTC-31MAY24-90000-C"]
    T2 = (pnl.specs[k].expiry - market.valuation_time).total_seconds() / (365 * 86400)
    ref = _ql_price(True, 90000.0, 68800.0 * 1.16, T2, 0.8 * cfg.vol_multipliers(np.array([T2 * 365]))[0][0])
    assert pnl.matrix[k, a + 8 * 3] == pytest.approx(ref - _ql_price(True, 90000.0, 68800.0, T2, 0.8), abs=1e-7)


def test_delta_one_and_inverse_columns_by_hand(specs, market):
    pnl = scenario_pnl_matrix(specs, market, deribit_like())
    idx = pnl.index()
    a = 0  # BTC segment comes first (underlyings sorted)
    # linear perp, 1 coin: P&L = 68800 * shock; "spot -16%" is column 0
    assert pnl.matrix[idx["BTC-PERP"], a] == pytest.approx(-0.16 * 68800.0)
    # inverse (BTC-settled) instruments live in their own segment, measured in coin x F0 (segregated PM)
    seg = {n: a0 for n, a0, _ in pnl.segments}
    c = seg["BTC (BTC-settled)"]
    # inverse perp, 10 USD face: coin P&L 10 (1/F0 - 1/F1); times F0: 10 (1 - 1/0.84) = -1.9048 (not -1.6)
    assert pnl.matrix[idx["BTC-PERP-INV"], c] == pytest.approx(10.0 * (1.0 - 1.0 / 0.84))
    assert np.all(pnl.matrix[idx["BTC-PERP-INV"], a:a + 35] == 0)
    # inverse option: F0 (c1 - c0) with c = V/F
    i = idx["BTC-28JUN24-65000-C"]
    T = (pnl.specs[i].expiry - market.valuation_time).total_seconds() / (365 * 86400)
    up = deribit_like().vol_multipliers(np.array([T * 365]))[0][0]
    up = 1.0 + (up - 1.0) * max(0.55, deribit_like().min_vol_shock_up) / 0.55
    v0 = _ql_price(True, 65000.0, 68800.0, T, 0.55)
    v1 = _ql_price(True, 65000.0, 68800.0 * 0.84, T, 0.55 * up)
    c0, c1 = v0 / 68800.0, v1 / (68800.0 * 0.84)
    assert pnl.matrix[i, c] == pytest.approx((c1 - c0) * 68800.0, abs=1e-7)
    # ETH instruments are zero in every BTC scenario and vice versa (segregated by underlying)
    eth = idx["ETH-PERP"]
    (_, b0, b1), _inv, (_, e0, e1) = pnl.segments
    assert np.all(pnl.matrix[eth, b0:b1] == 0) and np.all(pnl.matrix[idx["BTC-PERP"], e0:e1] == 0)


def test_worked_example_long_perp_and_short_call(specs, market):
    pnl = scenario_pnl_matrix(specs, market, deribit_like())
    res = portfolio_margin({"BTC-PERP": 1.0}, pnl)
    # worst loss: spot -16% -> 0.16 * 68800 = 11008; futures contingency 1.2% * 68800 = 825.6
    assert res.scenario_charge[0] == pytest.approx(11008.0)
    # delta-liquidity shock: |D| 0.1 min(1, |D| / 2e7) with D = 68,800 USD of delta
    dls = 68800.0 * 0.1 * 68800.0 / 2e7
    assert res.contingency[0] == pytest.approx(825.6 + dls)
    assert res.im[0] == pytest.approx(11833.6 + dls)
    assert res.mm[0] == pytest.approx(0.8 * (11833.6 + dls))
    assert res.driving_label[0] == "BTC: spot -16%, vol +50%"  # tie across vol states -> first (vol up)
    # a short call: contingency 1% * 68800 per net short option (per strike, calls and puts netted)
    res2 = portfolio_margin({"BTC-28JUN24-70000-C": -2.0, "BTC-28JUN24-70000-P": 1.0}, pnl)
    i, j = pnl.index()["BTC-28JUN24-70000-C"], pnl.index()["BTC-28JUN24-70000-P"]
    d = -2.0 * pnl.delta_notional[i] + pnl.delta_notional[j]
    assert res2.contingency[0] == pytest.approx(0.01 * 68800.0 * 1.0 + abs(d) * 0.1 * abs(d) / 2e7)
    # Derive: IM = 1.25 (worst loss + contingencies), MM = IM / 1.25
    pnl_d = scenario_pnl_matrix(specs, market, derive_like())
    rd = portfolio_margin({"BTC-PERP": -1.0}, pnl_d)
    # worst for a short: +20% (vol up scenario) = 13760, perp contingency 3% = 2064
    assert rd.im[0] == pytest.approx(1.25 * (0.20 * 68800.0 + 0.03 * 68800.0))
    assert rd.mm[0] == pytest.approx(0.20 * 68800.0 + 0.03 * 68800.0)
    assert rd.driving_label[0] == "BTC: spot +20%, vol +60%"


def _random_book(rng, n_accounts, n_instr, per_account=4):
    rows = np.repeat(np.arange(n_accounts), per_account)
    cols = rng.integers(0, n_instr, rows.size)
    vals = rng.normal(0.0, 3.0, rows.size).round(2)
    return sparse.csr_matrix((vals, (rows, cols)), shape=(n_accounts, n_instr))


def test_fast_path_equals_per_account_loop(specs, market):
    pnl = scenario_pnl_matrix(specs, market, deribit_like())
    P = _random_book(np.random.default_rng(7), 300, len(specs))
    fast = portfolio_margin(P, pnl, block_size=64)
    ref = portfolio_margin_reference(P, pnl)
    np.testing.assert_allclose(fast.im, ref.im, rtol=1e-12, atol=1e-8)
    np.testing.assert_allclose(fast.contingency, ref.contingency, rtol=1e-12, atol=1e-8)
    # the driving scenario carries the worst loss of its account (ties may pick another index)
    G = P @ pnl.matrix
    for r in range(P.shape[0]):
        if fast.driving_scenario[r] >= 0:
            assert -G[r, fast.driving_scenario[r]] == pytest.approx(-G[r, ref.driving_scenario[r]], rel=1e-12)
    assert np.mean(fast.driving_scenario == ref.driving_scenario) > 0.95


def test_blocks_path_is_order_invariant_and_accepts_ids(specs, market):
    pnl = scenario_pnl_matrix(specs, market, derive_like())
    P = _random_book(np.random.default_rng(3), 250, len(specs))
    ids = np.array([f"acc{i}" for i in range(250)], dtype=object)
    one = portfolio_margin(P, pnl, accounts=ids)
    perm = np.random.default_rng(4).permutation(250)
    seen = []
    blocks = ((ids[perm[a:a + 40]], P[perm[a:a + 40]]) for a in range(0, 250, 40))
    res = portfolio_margin_blocks(blocks, pnl, progress=seen.append)
    assert sum(seen) == 250 and len(seen) == 7
    order = {a: i for i, a in enumerate(res.accounts)}
    np.testing.assert_allclose(res.im[[order[a] for a in ids]], one.im, rtol=1e-13)


def test_errors_name_the_problem(specs, market):
    pnl = scenario_pnl_matrix(specs, market, deribit_like())
    with pytest.raises(DataError, match="instrument columns"):
        portfolio_margin(np.zeros((2, 3)), pnl)
    with pytest.raises(DataError, match="not in the scenario matrix"):
        portfolio_margin({"SOL-PERP": 1.0}, pnl)
    late = MarketState(spot={"BTC": 68800.0}, valuation_time="2024-07-01", flat_vol=0.5)
    with pytest.raises(DataError, match="expired"):
        scenario_pnl_matrix([parse_instrument("BTC-28JUN24-70000-C")], late)
    with pytest.raises(ConfigError, match="extended_weights"):
        RiskMatrixConfig(extended_shocks=(1.0,), extended_weights=())
    with pytest.raises(DataError, match="no volatility"):
        scenario_pnl_matrix([parse_instrument("BTC-28JUN24-70000-C")],
                            MarketState(spot={"BTC": 1.0}, valuation_time="2024-05-24"))
    with pytest.raises(DataError, match="not fitted"):
        RiskMatrixMargin().margin({"BTC-PERP": 1.0})


# ---------------------------------------------------------------- properties

BASE = MarketState(spot={"BTC": 68800.0, "ETH": 3725.0}, valuation_time="2024-05-24T13:00Z", flat_vol=0.6)
EXPIRIES = ["31MAY24", "28JUN24", "27SEP24", "27DEC24"]
STRIKES = [40000, 55000, 65000, 70000, 80000, 100000]


@settings(max_examples=60, deadline=None)
@given(
    expiry=st.sampled_from(EXPIRIES),
    strike=st.sampled_from(STRIKES),
    qty=st.floats(0.1, 50.0),
    preset=st.sampled_from([deribit_like, derive_like]),
)
def test_exact_hedge_has_zero_margin_without_contingencies(expiry, strike, qty, preset):
    # long call + short put + short future (same strike/expiry) is riskless by put-call parity (r = 0);
    # a dated future against the perpetual is riskless when both price off the index (r = 0)
    names = [f"BTC-{expiry}-{strike}-C", f"BTC-{expiry}-{strike}-P", f"BTC-{expiry}", "BTC-PERP"]
    pnl = scenario_pnl_matrix([parse_instrument(n) for n in names], BASE, preset())
    book = np.array([[qty, -qty, -qty, 0.0], [0.0, 0.0, qty, -qty]])
    res = portfolio_margin(book, pnl, include_contingency=False)
    cfg = preset()
    # Derive's basis contingency moves the expiry's forward +/-5% but not the perpetual: a dated future
    # against the perp then loses 5% x notional x (1.0 + 1.2 T), which competes with the scenarios
    T = pnl.specs[2].years_to_expiry(BASE.valuation_time)
    basis = cfg.basis_shock * qty * 68800.0 * (cfg.basis_add_factor + cfg.basis_mult_factor * T)
    # Derive's static discount: the options of the expiry (a synthetic long forward worth F_s - K) count only
    # d x their value when it is positive, the short future is not in the group (Derive's expiries hold options):
    # the hedge loses (1 - d) max(F_s - K, 0), largest at the +20% scenario
    d = float(cfg.static_discount_factor(T))
    disc = (1.0 - d) * qty * max(68800.0 * (1.0 + max(cfg.spot_shocks + cfg.extended_shocks)) - strike, 0.0)
    if cfg.static_discount_on:
        assert res.scenario_charge[0] == pytest.approx(disc, rel=1e-9, abs=1e-9 * 68800.0 * qty)
    else:
        assert abs(res.im[0]) <= 1e-9 * 68800.0 * qty
    if cfg.basis_shock > 0:
        assert res.scenario_charge[1] == pytest.approx(max(basis, cfg.spot_shocks[0] * 0.0), rel=1e-9)
        assert res.driving_label[1] == "BTC: basis contingency"
    else:
        assert abs(res.im[1]) <= 1e-9 * 68800.0 * qty
    # with contingencies only the documented add-ons remain: gross futures notional (options net per strike)
    with_c = portfolio_margin(book, pnl)
    rate = cfg.futures_contingency * cfg.im_multiplier
    disc_im = cfg.im_multiplier * disc if cfg.static_discount_on else 0.0
    assert with_c.im[0] == pytest.approx(rate * qty * 68800.0 + disc_im, rel=1e-9, abs=1e-6)
    extra = cfg.im_multiplier * basis if cfg.basis_shock > 0 else 0.0
    assert with_c.im[1] == pytest.approx(rate * 2 * qty * 68800.0 + extra, rel=1e-9, abs=1e-6)


def _coin_worst(cfg, coin_loss):
    """Worst weighted coin loss over the regular and extended spot shocks (vol does not move delta-one)."""
    regular = [coin_loss(1 + x) for x in cfg.spot_shocks]
    extended = [w * coin_loss(1 + x) for x, w in zip(cfg.extended_shocks, cfg.extended_weights, strict=True)]
    return max(0.0, *regular, *extended)


def test_inverse_perp_against_linear_perp_is_margined_per_settlement_currency():
    # Deribit S:PM treats each settlement currency separately: a long inverse (BTC-settled) perp is NOT a hedge
    # of a short linear (USD-settled) perp; each is charged in its own currency.
    cfg = deribit_like()
    inv = InstrumentSpec("BTC-PERPETUAL", "perpetual", "BTC", inverse=True, contract_size=10.0)
    pnl = scenario_pnl_matrix([inv, parse_instrument("BTC-PERP")], BASE, cfg)
    res = portfolio_margin(np.array([[6880.0, -1.0], [6880.0, 0.0], [0.0, -1.0]]), pnl, include_contingency=False)
    # 6,880 x 10 USD = 68,800 USD face. Coin P&L at F1 = m F0: 68,800 (1/F0 - 1/F1) = -(1/m - 1) BTC
    btc = _coin_worst(cfg, lambda m: (1.0 / m - 1.0))
    usd = _coin_worst(cfg, lambda m: 68800.0 * (m - 1.0))  # short 1 BTC linear: loses when up
    assert res.im[1] == pytest.approx(btc * 68800.0, rel=1e-12)  # BTC requirement x F0
    assert res.im[2] == pytest.approx(usd, rel=1e-12)
    assert res.im[0] == pytest.approx(res.im[1] + res.im[2], rel=1e-12)
    # the -16% bucket: 0.1905 BTC, 19% more than the 16% a USD measure shows (the convexity of inverse P&L)
    assert pytest.approx(0.190476, abs=1e-6) == 1.0 / 0.84 - 1.0
    # only with cross-collateral settlement (opt-in) do the two net, at the scenario price
    from dataclasses import replace
    cross = scenario_pnl_matrix([inv, parse_instrument("BTC-PERP")], BASE, replace(cfg, settlement_mode="cross"))
    assert portfolio_margin(np.array([[6880.0, -1.0]]), cross, include_contingency=False).im[0] == pytest.approx(
        0.0, abs=1e-7)


def test_short_inverse_put_is_margined_in_coin_against_quantlib():
    # the example: short 1 inverse BTC-28JUN24-60000-P, contingencies off, requirement in BTC x F0
    cfg = deribit_like()
    spec = parse_instrument("BTC-28JUN24-60000-P", inverse=True)
    pnl = scenario_pnl_matrix([spec], BASE, cfg)
    res = portfolio_margin({spec.name: -1.0}, pnl, include_contingency=False)
    F0, vol = 68800.0, 0.6
    T = (spec.expiry - BASE.valuation_time).total_seconds() / (365 * 86400)
    scale = (30.0 / max(T * 365, 1.0)) ** (cfg.vol_power_short if T * 365 <= 30 else cfg.vol_power_long)
    v_up = vol + max(vol, cfg.min_vol_shock_up) * cfg.vol_up * scale
    v_dn = vol * max(0.0, 1.0 - cfg.vol_down * scale)
    c0 = _ql_price(False, 60000.0, F0, T, vol) / F0
    losses = []
    for x in cfg.spot_shocks:
        for v in (v_up, vol, v_dn):
            losses.append(_ql_price(False, 60000.0, F0 * (1 + x), T, v) / (F0 * (1 + x)) - c0)
    for x, w in zip(cfg.extended_shocks, cfg.extended_weights, strict=True):
        losses.append(w * (_ql_price(False, 60000.0, F0 * (1 + x), T, v_up) / (F0 * (1 + x)) - c0))
    coin_req = max(losses)
    assert res.im[0] == pytest.approx(coin_req * F0, rel=1e-9)
    # the USD measure of the same option (cross settlement) is lower: coin convexity adds margin
    from dataclasses import replace
    usd = portfolio_margin({spec.name: -1.0}, scenario_pnl_matrix([spec], BASE, replace(cfg, settlement_mode="cross")),
                           include_contingency=False)
    assert res.im[0] > 1.1 * usd.im[0]


_ALL = [*(f"BTC-{e}-{k}-{cp}" for e in EXPIRIES[:2] for k in STRIKES[1:5] for cp in "CP"), "BTC-PERP",
        "BTC-28JUN24", "ETH-PERP", "ETH-28JUN24-3800-C", "ETH-28JUN24-3500-P"]
_PNL = {}


def _pnl(preset):
    if preset not in _PNL:
        # the delta-liquidity shock grows faster than size by design; the properties are of the scenario part
        from dataclasses import replace
        _PNL[preset] = scenario_pnl_matrix([parse_instrument(n) for n in _ALL], BASE,
                                           replace(PRESETS_[preset](), delta_shock_max=0.0))
    return _PNL[preset]


PRESETS_ = {"deribit": deribit_like, "derive": derive_like}
positions = st.lists(st.floats(-20.0, 20.0, allow_nan=False), min_size=len(_ALL), max_size=len(_ALL))


@settings(max_examples=80, deadline=None)
@given(a=positions, b=positions, preset=st.sampled_from(["deribit", "derive"]))
def test_portfolio_margin_never_exceeds_sum_of_standalone(a, b, preset):
    pnl = _pnl(preset)
    res = portfolio_margin(np.array([a, b, np.add(a, b)]), pnl)
    assert res.im[2] <= res.im[0] + res.im[1] + 1e-7 * (1.0 + res.im[0] + res.im[1])


@settings(max_examples=60, deadline=None)
@given(a=positions, lam=st.floats(0.01, 100.0), preset=st.sampled_from(["deribit", "derive"]))
def test_margin_is_positively_homogeneous(a, lam, preset):
    pnl = _pnl(preset)
    res = portfolio_margin(np.array([a, np.multiply(a, lam)]), pnl)
    assert res.im[1] == pytest.approx(lam * res.im[0], rel=1e-9, abs=1e-6)


def test_derive_stable_peg_contingency_raises_im_not_mm():
    # Derive PMRM: IM factor = imFactor + (threshold - USDC) x pegLossFactor below the threshold (PEG_FACTOR 4.0)
    depeg = MarketState(spot={"BTC": 68800.0, "USDC": 0.95}, valuation_time="2024-05-24T13:00Z", flat_vol=0.6)
    pnl = scenario_pnl_matrix([parse_instrument("BTC-PERP")], depeg, derive_like())
    r = portfolio_margin({"BTC-PERP": -1.0}, pnl)
    base = (0.20 + 0.03) * 68800.0
    assert r.im[0] == pytest.approx((1.25 + (0.99 - 0.95) * 4.0) * base)  # pegLossThreshold 0.99 (config-mainnet)
    assert r.mm[0] == pytest.approx(base)
    at_peg = MarketState(spot={"BTC": 68800.0, "USDC": 0.99}, valuation_time="2024-05-24T13:00Z", flat_vol=0.6)
    r2 = portfolio_margin({"BTC-PERP": -1.0}, scenario_pnl_matrix([parse_instrument("BTC-PERP")], at_peg,
                                                                   derive_like()))
    assert r2.im[0] == pytest.approx(1.25 * base)


def test_derive_basis_contingency_worked_example():
    # tests/reference/derive_pmrm_basis.md: v2-core PMRMLib._addBasisContingency with config-mainnet values
    from scipy.stats import norm

    name = "BTC-27SEP24-70000-C"
    spec = parse_instrument(name)
    T = spec.years_to_expiry(BASE.valuation_time)
    F, K, v = 68800.0, 70000.0, 0.6

    def call(f):
        sd = v * math.sqrt(T)
        d1 = math.log(f / K) / sd + 0.5 * sd
        return f * norm.cdf(d1) - K * norm.cdf(d1 - sd)

    # short 1 call: loses when the forward rises; factor 1.0 + 1.2 T
    expected = (call(F * 1.05) - call(F)) * (1.0 + 1.2 * T)
    cfg = derive_like()
    pnl = scenario_pnl_matrix([spec], BASE, cfg)
    res = portfolio_margin({name: -1.0}, pnl, include_contingency=False)
    from margincal.margin.portfolio.engine import basis_losses, portfolio_margin_reference

    B = sparse.csr_matrix(np.array([[-1.0]]))
    assert basis_losses(B, pnl)[0].sum() == pytest.approx(expected, rel=1e-10)
    worst_scenario = float(np.max(pnl.matrix[0]))  # short 1: its loss is the long's P&L
    assert res.scenario_charge[0] == pytest.approx(max(expected, worst_scenario), rel=1e-10)
    ref = portfolio_margin_reference({name: -1.0}, pnl, include_contingency=False)
    assert ref.scenario_charge[0] == pytest.approx(res.scenario_charge[0], rel=1e-12)
    assert ref.driving_label[0] == res.driving_label[0]
    # a calendar (same strike, two expiries) gets one basis term per expiry, not netted across them
    names = ["BTC-28JUN24-70000-C", name]
    pnl2 = scenario_pnl_matrix([parse_instrument(n) for n in names], BASE, cfg)
    book = np.array([[1.0, -1.0]])
    fast = portfolio_margin(book, pnl2, include_contingency=False)
    slow = portfolio_margin_reference(book, pnl2, include_contingency=False)
    assert fast.scenario_charge[0] == pytest.approx(slow.scenario_charge[0], rel=1e-12)
    assert basis_losses(sparse.csr_matrix(book), pnl2).shape == (1, 2)
