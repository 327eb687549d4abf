"""Black-76 prices, greeks and implied vol against QuantLib and closed-form identities."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from margincal.errors import DataError
from margincal.pricing import (
    IVStatus,
    black76_greeks,
    black76_price,
    black76_price_reference,
    implied_vol,
)

REF = Path(__file__).resolve().parents[1] / "reference" / "quantlib_black76.py"


def _load_reference():
    spec = importlib.util.spec_from_file_location("quantlib_black76", REF)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def ql_rows():
    # QuantLib is a test dependency (pyproject): a missing reference fails here instead of skipping
    rows = _load_reference().generate()
    return {k: np.array([r[k] for r in rows]) for k in rows[0]}


def test_price_matches_quantlib_blackformula(ql_rows):
    r = ql_rows
    ours = black76_price(r["forward"], r["strike"], r["expiry"], r["vol"], r["is_call"], rate=r["rate"])
    # 1800 points: F in {100, 65000}, K/F 0.5..2, T 1 day..2 years, vol 5%..150%, r in {0, 5%}
    assert ours.shape == (1800,)
    assert np.max(np.abs(ours - r["price"])) <= 1e-10


@pytest.mark.parametrize("greek", ["delta", "gamma", "vega", "theta"])
def test_greeks_match_quantlib_blackcalculator(ql_rows, greek):
    r = ql_rows
    g = black76_greeks(r["forward"], r["strike"], r["expiry"], r["vol"], r["is_call"], rate=r["rate"])
    ours, ref = getattr(g, greek), r[greek]
    assert np.all(np.abs(ours - ref) <= 1e-10 * np.maximum(1.0, np.abs(ref)))


def test_worked_example_by_hand():
    # F=110, K=100, T=1, sigma=0.2, r=-ln(0.95): d1 = (ln 1.1 + 0.02)/0.2 = 0.576551,
    # d2 = 0.376551, N(d1) = 0.717879, N(d2) = 0.646746,
    # call = 0.95 (110 * 0.717879 - 100 * 0.646746) = 13.5774 (QuantLib blackFormula: 13.57741039)
    rate = -math.log(0.95)
    call = black76_price(110.0, 100.0, 1.0, 0.2, "C", rate=rate)
    assert call == pytest.approx(13.5774, abs=5e-5)
    # the closed form written out with scipy's normal cdf
    d1 = (math.log(110.0 / 100.0) + 0.5 * 0.2**2) / 0.2
    expected = 0.95 * (110.0 * stats.norm.cdf(d1) - 100.0 * stats.norm.cdf(d1 - 0.2))
    assert call == pytest.approx(expected, rel=1e-13)
    # put-call parity: C - P = D (F - K) = 0.95 * 10 = 9.5
    put = black76_price(110.0, 100.0, 1.0, 0.2, "P", rate=rate)
    assert call - put == pytest.approx(9.5, abs=1e-12)


def test_broadcasting_matches_scalar_reference():
    F = np.array([[90.0], [100.0], [120.0]])  # (3, 1)
    K = np.array([80.0, 100.0, 110.0, 150.0])  # (4,)
    out = black76_price(F, K, 0.3, 0.7, False, rate=0.03)
    assert out.shape == (3, 4)
    for i in range(3):
        for j in range(4):
            ref = black76_price_reference(F[i, 0], K[j], 0.3, 0.7, False, 0.03)
            assert out[i, j] == pytest.approx(ref, rel=1e-13, abs=1e-13)


def test_zero_expiry_and_zero_vol_give_intrinsic():
    out = black76_price([90.0, 110.0, 110.0], 100.0, [0.0, 0.0, 1.0], [0.5, 0.5, 0.0], True, rate=0.05)
    assert out.tolist() == pytest.approx([0.0, 10.0, 10.0 * math.exp(-0.05)])
    g = black76_greeks(110.0, 100.0, 0.0, 0.5, False)
    assert (g.price, g.delta, g.gamma, g.vega) == (0.0, 0.0, 0.0, 0.0)


def test_invalid_inputs_raise_named_errors():
    with pytest.raises(DataError, match="forward"):
        black76_price([100.0, -1.0], 100.0, 1.0, 0.5)
    with pytest.raises(DataError, match="vol"):
        black76_price(100.0, 100.0, 1.0, np.nan)
    with pytest.raises(DataError, match="option_type"):
        black76_price(100.0, 100.0, 1.0, 0.5, "X")


def test_inverse_option_price_and_delta():
    F, K, T, v = 68800.0, 70000.0, 30 / 365, 0.55
    usd = black76_greeks(F, K, T, v, "C")
    inv = black76_greeks(F, K, T, v, "C", inverse=True)
    coin = usd.price / F
    assert inv.price == pytest.approx(coin, rel=1e-14)
    assert inv.delta == pytest.approx(usd.delta - coin, rel=1e-13)  # Deribit's convention
    # delta_inverse = F * d(coin price)/dF and gamma_inverse = d(delta_inverse)/dF, by central differences
    h = F * 1e-5

    def c(f):
        return float(black76_price(f, K, T, v, "C", inverse=True))

    def d(f):
        return float(black76_greeks(f, K, T, v, "C", inverse=True).delta)

    assert inv.delta == pytest.approx(F * (c(F + h) - c(F - h)) / (2 * h), rel=1e-6)
    assert inv.gamma == pytest.approx((d(F + h) - d(F - h)) / (2 * h), rel=1e-5)
    assert inv.vega == pytest.approx(usd.vega / F, rel=1e-14)
    assert inv.theta == pytest.approx(usd.theta / F, rel=1e-14)


def _well_conditioned(price, vega):
    # input rounding (one ulp of the price) moves the implied vol by eps * price / vega;
    # only where that is <= 1e-10 can a 1e-8 round trip be asked of any solver
    eps = np.finfo(float).eps
    with np.errstate(divide="ignore", invalid="ignore"):
        return (vega > 0) & (eps * np.maximum(price, 1e-300) / vega <= 1e-10)


def test_implied_vol_round_trip_on_grid():
    F = 100.0
    K = F * np.exp(np.linspace(-3.0, 3.0, 61))[None, None, :]
    T = np.array([1 / 365, 7 / 365, 30 / 365, 0.25, 1.0, 3.0])[:, None, None]
    vol = np.array([0.01, 0.05, 0.2, 0.5, 1.0, 2.0, 4.0])[None, :, None]
    for is_call in (True, False):
        g = black76_greeks(F, K, T, vol, is_call, rate=0.02)
        res = implied_vol(g.price, F, K, T, is_call, rate=0.02)
        good = _well_conditioned(g.price, g.vega)
        assert good.sum() > 1000
        assert np.all(res.status[good] == IVStatus.OK)
        err = np.abs(res.vol - np.broadcast_to(vol, res.vol.shape))
        assert np.max(err[good]) <= 1e-8


def _otm_call_by_quadrature(F, K, s):
    """Undiscounted OTM call (K > F) by integrating the payoff against the lognormal density.

    Independent of the closed form: ln(F_T/F) ~ N(-s^2/2, s^2); integrate
    (F e^z - K) phi(z) over z > ln(K/F) with scipy.integrate.quad, written in
    log space so that prices near 1e-200 do not underflow.
    """
    from scipy import integrate

    z0 = math.log(K / F)
    mu = -0.5 * s * s
    # factor out the density at the lower limit so the integrand is O(1)
    log_scale = -0.5 * ((z0 - mu) / s) ** 2 - math.log(s * math.sqrt(2 * math.pi))

    def f(u):
        z = z0 + u
        return (F * math.exp(z) - K) * math.exp(-0.5 * ((z - mu) / s) ** 2 - math.log(s * math.sqrt(2 * math.pi))
                                                 - log_scale)

    val, _ = integrate.quad(f, 0.0, 40.0 * s, epsabs=0.0, epsrel=1e-13, limit=200)
    return val, log_scale


def test_implied_vol_round_trip_deep_otm_wings():
    # prices from 1e-23 down to 1e-243 (K/F up to e^3, total std dev 5%-9.5%), reference by quadrature
    cases = [(100.0, 100.0 * math.exp(x), s) for x, s in [(0.5, 0.05), (1.0, 0.06), (2.0, 0.065), (3.0, 0.09)]]
    for F, K, s in cases:
        val, log_scale = _otm_call_by_quadrature(F, K, s)
        price = val * math.exp(log_scale)
        assert 0 < price < 1e-20
        res = implied_vol(price, F, K, 1.0, "C")
        assert res.status == IVStatus.OK
        assert abs(float(res.vol) - s) <= 1e-8, (F, K, s, price, res.vol)
        # Black-76 symmetry C(F, K, s) = P(K, F, s): the same price as a deep OTM put (strike below forward)
        res_p = implied_vol(price, K, F, 1.0, "P")
        assert abs(float(res_p.vol) - s) <= 1e-8


def test_implied_vol_inverse_round_trip():
    F, K, T = 68800.0, np.array([40000.0, 60000.0, 70000.0, 120000.0]), 45 / 365
    coin = black76_price(F, K, T, 0.62, "P", inverse=True)
    res = implied_vol(coin, F, K, T, "P", inverse=True)
    assert np.max(np.abs(res.vol - 0.62)) <= 1e-10


def test_implied_vol_flags_outside_no_arbitrage_bounds():
    F, K, T = 100.0, 90.0, 0.5
    D = math.exp(-0.05 * T)
    prices = [
        D * 9.0,  # call below its discounted intrinsic value D (F - K) = 10 D
        D * 10.0,  # exactly intrinsic: vol 0
        D * 100.0,  # call at its upper bound D F
        12.0,  # a normal price (time value 12 - 9.75 = 2.25)
        -1.0,  # negative price
    ]
    res = implied_vol(prices, F, K, T, "C", rate=0.05)
    assert res.status.tolist() == [
        IVStatus.BELOW_INTRINSIC, IVStatus.AT_INTRINSIC, IVStatus.ABOVE_MAX, IVStatus.OK, IVStatus.INVALID_INPUT
    ]
    assert np.isnan(res.vol[[0, 2, 4]]).all()
    assert res.vol[1] == 0.0
    assert float(black76_price(F, K, T, res.vol[3], "C", rate=0.05)) == pytest.approx(12.0, abs=1e-12)
    assert res.ok.tolist() == [False, True, False, True, False]
    bad_t = implied_vol(1.0, 100.0, 100.0, 0.0, "C")
    assert bad_t.status == IVStatus.INVALID_INPUT


@settings(max_examples=100, deadline=None)
@given(
    m=st.floats(-2.0, 2.0),
    t=st.floats(1.0 / 365.0, 5.0),
    v=st.floats(0.02, 3.0),
    call=st.booleans(),
)
def test_implied_vol_round_trip_property(m, t, v, call):
    F = 100.0
    K = F * math.exp(m)
    g = black76_greeks(F, K, t, v, call)
    if not _well_conditioned(g.price, g.vega):
        return  # the price carries too few digits of the vol; nothing to test
    res = implied_vol(g.price, F, K, t, call)
    assert res.status == IVStatus.OK
    assert abs(float(res.vol) - v) <= 1e-8


@pytest.fixture(scope="module")
def iv_grid():
    rows = _load_reference().generate_iv_grid()
    return {k: np.array([r[k] for r in rows]) for k in rows[0]}


def _iv_conditioning(r):
    """|d sigma| caused by the rounding of a QuantLib price: eps * (F + K) / vega.

    ``blackFormula`` computes F N(d1) - K N(d2) with a normal cdf accurate in
    absolute terms, so its price carries an absolute error of order eps (F + K);
    deep out of the money that is a large relative error (the tiny-price wings
    are covered against quadrature in test_implied_vol_round_trip_deep_otm_wings).
    """
    eps = np.finfo(float).eps
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(r["vega"] > 0, eps * (r["forward"] + r["strike"]) / r["vega"], np.inf)


def test_implied_vol_matches_quantlib_on_wide_grid(iv_grid):
    # QuantLib prices on log-moneyness -5..5, 1 hour..10 years, vol 1%..500% (tests/reference/quantlib_black76.py)
    r = iv_grid
    res = implied_vol(r["price"], r["forward"], r["strike"], r["expiry"], r["is_call"])
    tv = r["price"] - np.maximum(np.where(r["is_call"], 1.0, -1.0) * (r["forward"] - r["strike"]), 0.0)
    good = (_iv_conditioning(r) <= 1e-12) & (r["price"] > 1e-300) & (tv > 0)
    assert good.sum() > 1000
    assert np.all(res.status[good] == IVStatus.OK)
    # the stated accuracy: |sigma - sigma_true| < 1e-10 wherever the price pins sigma to 1e-12
    assert np.max(np.abs(res.vol[good] - r["vol"][good])) < 1e-10
    # and at most 3 Householder iterations on the whole grid (the claim of the initial guess)
    assert res.iterations <= 3
    # QuantLib's own solver, where it reproduces its input price, agrees with ours to the same accuracy
    ql_ok = good & np.isfinite(r["ql_vol"])
    reprice = black76_price(r["forward"][ql_ok], r["strike"][ql_ok], r["expiry"][ql_ok],
                            r["ql_vol"][ql_ok], r["is_call"][ql_ok])
    converged = np.abs(reprice - r["price"][ql_ok]) <= 1e-12 * r["price"][ql_ok]
    assert converged.sum() > 0.8 * ql_ok.sum()
    assert np.max(np.abs(res.vol[ql_ok][converged] - r["ql_vol"][ql_ok][converged])) < 1e-10


def test_implied_vol_round_trip_price_vol_price_on_wide_grid(iv_grid):
    r = iv_grid
    res = implied_vol(r["price"], r["forward"], r["strike"], r["expiry"], r["is_call"])
    ok = res.status == IVStatus.OK
    assert ok.sum() > 1500  # the rest are at intrinsic in floating point (QuantLib price 0 or = intrinsic)
    back = black76_price(r["forward"][ok], r["strike"][ok], r["expiry"][ok], res.vol[ok], r["is_call"][ok])
    p = r["price"][ok]
    # relative 1e-12 of the price, or the rounding of the two terms F N(d1), K N(d2) that Black-76 subtracts
    # (their cancellation, not the inversion, limits deep out-of-the-money and in-the-money prices; in the
    # tail N(d) = e^{-d^2/2} (...) carries a relative error of order d^2 eps)
    from scipy.special import ndtr

    F, K, sd = r["forward"][ok], r["strike"][ok], res.vol[ok] * np.sqrt(r["expiry"][ok])
    sign = np.where(r["is_call"][ok], 1.0, -1.0)
    d1 = np.log(F / K) / sd + 0.5 * sd
    terms = F * ndtr(sign * d1) + K * ndtr(sign * (d1 - sd))
    tol = np.maximum(1e-12 * p, 4 * np.finfo(float).eps * terms * (1.0 + d1 * d1))
    assert np.all(np.abs(back - p) <= tol)


def test_implied_vol_near_upper_bound_and_zero_time():
    # vol 500% over 4 years: s = 10, the call is worth 1 - 2 N(-5) = 99.99994% of F; the upper branch solves it
    F, K, T = 100.0, 100.0, 4.0
    p = float(black76_price(F, K, T, 5.0, "C"))
    assert F - p < 1e-4
    res = implied_vol(p, F, K, T, "C")
    assert res.status == IVStatus.OK and abs(float(res.vol) - 5.0) < 1e-8
    # at the bound itself: NaN, ABOVE_MAX (documented rule)
    assert implied_vol(F, F, K, T, "C").status == IVStatus.ABOVE_MAX
    # zero time: the price carries no volatility information -> INVALID_INPUT (documented rule)
    assert implied_vol(1.0, F, K, 0.0, "C").status == IVStatus.INVALID_INPUT


def test_implied_vol_fallback_solver_agrees(monkeypatch):
    # elements the Householder iterations leave unsettled go to the bracketed Newton solver; force that path
    import sys

    mod = sys.modules["margincal.pricing.implied_vol"]
    F, T = 100.0, 0.5
    K = F * np.exp(np.linspace(-2.0, 2.0, 21))
    price = black76_price(F, K, T, 0.8, "C")
    monkeypatch.setattr(mod, "_MAX_HOUSEHOLDER", 0)
    res = implied_vol(price, F, K, T, "C")
    assert np.all(res.status == IVStatus.OK)
    assert np.max(np.abs(res.vol - 0.8)) < 1e-10
    assert res.iterations > 0
