"""Derive's static MtM discount and oracle-confidence contingency (tests/reference/derive_pmrm_static_discount.md)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from scipy import sparse
from scipy.stats import norm

from margincal.errors import ConfigError
from margincal.margin.portfolio import (
    MarketState,
    RiskMatrixConfig,
    deribit_like,
    derive_like,
    parse_instrument,
    portfolio_margin,
    scenario_pnl_matrix,
)
from margincal.margin.portfolio.engine import portfolio_margin_reference

ASOF = "2024-05-24T13:00Z"
F, VOL = 68800.0, 0.6
MKT = MarketState(spot={"BTC": F, "ETH": 3725.0}, valuation_time=ASOF, flat_vol=VOL)
SEP, JUN = "BTC-27SEP24-70000-C", "BTC-28JUN24-80000-C"

# tests/reference/derive_pmrm_static_discount.md, computed independently with scipy
LONG_CALL_MM = 6843.810194027997
LONG_CALL_BASIS = 2537.5581553946545
LONG_CALL_MTM = 9113.535365658441
D_SEP, D_JUN = 0.9115129671753738, 0.9391954724624164
SPREAD_MM = 6637.320786002523


def _call(f: float, k: float, t: float, v: float) -> float:
    sd = v * math.sqrt(t)
    d1 = math.log(f / k) / sd + 0.5 * sd
    return f * norm.cdf(d1) - k * norm.cdf(d1 - sd)


def test_derive_preset_parameters_and_sources():
    cfg = derive_like()
    assert (cfg.static_discount, cfg.static_rate_mult, cfg.static_rate_add) == (0.95, 1.0, 0.12)
    assert (cfg.confidence_threshold, cfg.confidence_factor) == (0.55, 1.0)
    assert cfg.static_discount_on and not deribit_like().static_discount_on
    assert "not modelled: the static" not in (derive_like.__doc__ or "").lower()
    t = parse_instrument(SEP).years_to_expiry(MKT.valuation_time)
    assert float(cfg.static_discount_factor(t)) == pytest.approx(D_SEP, rel=1e-12)
    # the rate enters floored at 0 (PMRM.sol _initialiseExpiries)
    assert float(cfg.static_discount_factor(t, rate=-0.05)) == pytest.approx(D_SEP, rel=1e-12)
    assert float(cfg.static_discount_factor(t, rate=0.05)) == pytest.approx(0.95 * math.exp(-t * 0.17), rel=1e-12)


def test_long_call_worked_example():
    pnl = scenario_pnl_matrix([parse_instrument(SEP)], MKT, derive_like())
    res = portfolio_margin({SEP: 1.0}, pnl)
    t = parse_instrument(SEP).years_to_expiry(MKT.valuation_time)
    v0 = _call(F, 70000.0, t, VOL)
    assert v0 == pytest.approx(LONG_CALL_MTM, rel=1e-9)
    assert res.scenario_charge[0] == pytest.approx(LONG_CALL_MM, rel=1e-9)
    assert res.contingency[0] == 0.0
    assert res.mm[0] == pytest.approx(LONG_CALL_MM, rel=1e-9)
    assert res.im[0] == pytest.approx(1.25 * LONG_CALL_MM, rel=1e-9)
    assert res.driving_label[0] == "BTC: spot -15%, vol -30%"
    assert res.confidence is None  # no MarketState.confidence: no contingency, no extra column
    assert "confidence_contingency" not in res.to_frame().columns
    # the requirement includes (1 - d) x MtM: the unshocked scenario alone loses that much
    j0 = pnl.labels.index("BTC: spot 0%, vol unch")
    from margincal.margin.portfolio.engine import apply_static_discount

    G = apply_static_discount(sparse.csr_matrix([[1.0]]), np.asarray(pnl.matrix).copy(), pnl)
    assert -G[0, j0] == pytest.approx((1.0 - D_SEP) * v0, rel=1e-9)
    # without the discount the same book needs V0 - min V_s (and the basis contingency is unchanged)
    plain = scenario_pnl_matrix([parse_instrument(SEP)], MKT, dataclasses.replace(derive_like(), static_discount=1.0,
                                                                                 static_rate_add=0.0,
                                                                                 static_rate_mult=0.0))
    assert plain.discount_value is None
    r0 = portfolio_margin({SEP: 1.0}, plain)
    assert r0.scenario_charge[0] == pytest.approx(6623.471863145753, rel=1e-9)
    assert res.scenario_charge[0] > r0.scenario_charge[0] > LONG_CALL_BASIS


def test_short_call_is_not_discounted():
    # a short option's expiry value is negative in every scenario: the discount never applies
    pnl = scenario_pnl_matrix([parse_instrument(SEP)], MKT, derive_like())
    plain = scenario_pnl_matrix([parse_instrument(SEP)], MKT, dataclasses.replace(derive_like(), static_discount=1.0,
                                                                                 static_rate_add=0.0,
                                                                                 static_rate_mult=0.0))
    a = portfolio_margin({SEP: -1.0}, pnl)
    b = portfolio_margin({SEP: -1.0}, plain)
    assert a.im[0] == b.im[0] and a.mm[0] == b.mm[0]


def test_two_expiry_spread_discounts_each_expiry_separately():
    specs = [parse_instrument(n) for n in (SEP, JUN)]
    pnl = scenario_pnl_matrix(specs, MKT, derive_like())
    assert pnl.discount_factor is not None
    assert sorted(pnl.discount_factor.tolist()) == pytest.approx([D_SEP, D_JUN], rel=1e-12)
    book = {SEP: 1.0, JUN: -1.0}
    res = portfolio_margin(book, pnl)
    assert res.scenario_charge[0] == pytest.approx(SPREAD_MM - 1376.0, rel=1e-9)
    assert res.contingency[0] == pytest.approx(0.02 * F, rel=1e-12)  # one naked short per strike
    assert res.mm[0] == pytest.approx(SPREAD_MM, rel=1e-9)
    assert res.im[0] == pytest.approx(1.25 * SPREAD_MM, rel=1e-9)
    assert res.driving_label[0] == "BTC: spot -15%, vol -30%"
    ref = portfolio_margin_reference(book, pnl)
    assert ref.im[0] == pytest.approx(res.im[0], rel=1e-12)
    # discounting the two expiries' net value instead would give a different (smaller) loss
    j = pnl.labels.index("BTC: spot -15%, vol -30%")
    v = pnl.discount_value
    assert v is not None
    i_sep, i_jun = pnl.instruments.index(SEP), pnl.instruments.index(JUN)
    e_sep, e_jun = v[i_sep, j], -v[i_jun, j]
    assert e_sep > 0 > e_jun
    v0 = (v[i_sep, j] - pnl.matrix[i_sep, j]) - (v[i_jun, j] - pnl.matrix[i_jun, j])
    netted = v0 - D_SEP * (e_sep + e_jun)
    assert netted < res.scenario_charge[0]


def test_confidence_contingency_below_threshold():
    names = [SEP, "BTC-PERP"]
    book = {SEP: 1.0, "BTC-PERP": -2.0}
    full = portfolio_margin(book, scenario_pnl_matrix([parse_instrument(n) for n in names], MKT, derive_like()))
    assert full.confidence is None
    low_exp = dataclasses.replace(MKT, confidence={"BTC": 0.9, "BTC-27SEP24": 0.5})
    r = portfolio_margin(book, scenario_pnl_matrix([parse_instrument(n) for n in names], low_exp, derive_like()))
    assert r.confidence is not None
    assert r.confidence[0] == pytest.approx(0.5 * 1.0 * 1.0 * F, rel=1e-12)  # options only: the perp is at 0.9
    assert r.im[0] == pytest.approx(full.im[0] + 34400.0, rel=1e-12)
    assert r.mm[0] == full.mm[0]  # IM only
    assert r.to_frame()["confidence_contingency"].iloc[0] == pytest.approx(34400.0)
    assert r.records()[0]["confidence_contingency"] == pytest.approx(34400.0)
    low_all = dataclasses.replace(MKT, confidence={"BTC": 0.4})
    r2 = portfolio_margin(book, scenario_pnl_matrix([parse_instrument(n) for n in names], low_all, derive_like()))
    assert r2.confidence[0] == pytest.approx(0.6 * 3 * F, rel=1e-12)  # 123,840
    assert r2.mm[0] == full.mm[0]
    # at the threshold: no contingency (strictly below only); without contingencies: none either
    at = dataclasses.replace(MKT, confidence={"BTC": 0.55})
    assert portfolio_margin(book, scenario_pnl_matrix([parse_instrument(n) for n in names], at,
                                                      derive_like())).confidence is None
    no_c = portfolio_margin(book, scenario_pnl_matrix([parse_instrument(n) for n in names], low_all, derive_like()),
                            include_contingency=False)
    assert no_c.confidence is None


def test_confidence_of_expiry_and_validation():
    m = dataclasses.replace(MKT, confidence={"BTC": 0.8, "btc-27sep24": 0.3, "ETH": 0.1})
    assert m.confidence_of(parse_instrument("BTC-PERP")) == 0.8
    assert m.confidence_of(parse_instrument(SEP)) == 0.3
    assert m.confidence_of(parse_instrument("BTC-27SEP24")) == 0.3  # dated future: its expiry's feeds
    assert m.confidence_of(parse_instrument(JUN)) == 0.8
    assert m.confidence_of(parse_instrument("ETH-PERP")) == 0.1
    with pytest.raises(ConfigError, match="in \\[0, 1\\]"):
        dataclasses.replace(MKT, confidence={"BTC": 1.5})
    with pytest.raises(ConfigError, match="perpetual"):
        dataclasses.replace(MKT, confidence={"BTC-PERP": 0.5})
    with pytest.raises(ConfigError, match="static_discount"):
        RiskMatrixConfig(static_discount=0.0)
    with pytest.raises(ConfigError, match="static_discount"):
        RiskMatrixConfig(static_discount=1.2)
    with pytest.raises(ConfigError, match="confidence_threshold"):
        RiskMatrixConfig(confidence_threshold=1.5)
    with pytest.raises(ConfigError, match="static_rate_add"):
        RiskMatrixConfig(static_rate_add=-0.1)


def test_deribit_preset_carries_no_discount_or_confidence(specs, market):
    low = dataclasses.replace(market, confidence={"BTC": 0.1})
    pnl = scenario_pnl_matrix(specs, low, deribit_like())
    assert pnl.discount_value is None and pnl.confidence_charge is None
    res = portfolio_margin(np.ones((1, len(specs))), pnl)
    assert res.confidence is None


@pytest.mark.parametrize("mode", ["segregated", "cross"])
def test_vectorised_equals_reference_with_discount_and_confidence(specs, market, mode):
    cfg = dataclasses.replace(derive_like(), settlement_mode=mode)
    mkt = dataclasses.replace(market, confidence={"BTC": 0.7, "BTC-28JUN24": 0.2, "ETH": 0.5}, rate=0.03)
    pnl = scenario_pnl_matrix(specs, mkt, cfg)
    assert pnl.discount_value is not None and pnl.confidence_charge is not None
    rng = np.random.default_rng(7)
    n = 300
    P = rng.normal(0.0, 3.0, size=(n, len(specs)))
    P[rng.random(P.shape) < 0.6] = 0.0
    P[:20] = np.abs(P[:20])  # long-only books: discounted in every expiry
    P[20] = 0.0  # an empty account
    fast = portfolio_margin(sparse.csr_matrix(P), pnl, block_size=37)
    slow = portfolio_margin_reference(P, pnl)
    np.testing.assert_allclose(fast.im, slow.im, rtol=1e-10, atol=1e-8)
    np.testing.assert_allclose(fast.mm, slow.mm, rtol=1e-10, atol=1e-8)
    np.testing.assert_allclose(fast.confidence, slow.confidence, rtol=1e-12, atol=1e-9)
    np.testing.assert_array_equal(fast.driving_scenario, slow.driving_scenario)
    assert fast.im[20] == 0.0
    # the discount only ever adds margin, and long-only books pay at least (1 - d) x their option value
    plain = scenario_pnl_matrix(specs, mkt, dataclasses.replace(cfg, static_discount=1.0, static_rate_add=0.0,
                                                               static_rate_mult=0.0))
    base = portfolio_margin(sparse.csr_matrix(P), plain)
    assert np.all(fast.scenario_charge >= base.scenario_charge - 1e-9)
    assert np.any(fast.scenario_charge[:20] > base.scenario_charge[:20] + 1.0)
