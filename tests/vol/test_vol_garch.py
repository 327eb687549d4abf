"""GarchVolatility: agreement with arch run directly on 100x returns, unit conversion, parameter recovery."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from arch import arch_model

from margincal.errors import CalibrationError, ConfigError, DataError
from margincal.vol.garch import GarchVolatility
from margincal.vol.horizon import horizon_to_bars


def _simulate_garch_t(n: int, omega: float, alpha: float, beta: float, nu: float, seed: int) -> np.ndarray:
    """Own GARCH(1,1) recursion with standardised Student-t innovations (variance 1), zero mean."""
    rng = np.random.default_rng(seed)
    z = rng.standard_t(nu, size=n + 500) * math.sqrt((nu - 2) / nu)
    s2 = omega / (1 - alpha - beta)
    r = np.empty(n + 500)
    for t in range(n + 500):
        r[t] = math.sqrt(s2) * z[t]
        s2 = omega + alpha * r[t] ** 2 + beta * s2
    return r[500:]


@pytest.fixture(scope="module")
def returns() -> pd.Series:
    # daily-scale log returns (sigma ~ 2.5 %), GARCH(1,1)-t, 1500 days
    r = _simulate_garch_t(1500, omega=1.2e-5, alpha=0.09, beta=0.89, nu=5.0, seed=42)
    return pd.Series(r, index=pd.date_range("2020-01-01", periods=r.size, freq="D", tz="UTC"))


def _arch_on_100x(r: pd.Series, kind: str, dist: str):
    vol = "EGARCH" if kind == "egarch" else "GARCH"
    o = 0 if kind == "garch" else 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return arch_model(100 * r, mean="Constant", vol=vol, p=1, o=o, q=1, dist=dist, rescale=False).fit(disp="off")


@pytest.mark.parametrize("kind,dist", [("garch", "normal"), ("garch", "t"), ("gjr", "t"), ("egarch", "skewt")])
def test_agrees_with_arch_fitted_on_percent_returns(returns, kind, dist):
    ours = GarchVolatility(kind=kind, dist=dist).fit(returns)
    ref = _arch_on_100x(returns, kind, dist)
    # sigma: arch's conditional volatility of 100 r, divided by 100
    np.testing.assert_allclose(ours.sigma_.to_numpy(), ref.conditional_volatility.to_numpy() / 100, rtol=2e-3)
    np.testing.assert_allclose(ours.standardized_residuals_.to_numpy(), ref.std_resid.to_numpy(), rtol=5e-3, atol=5e-3)
    # parameters in ORIGINAL units from arch's percent-scale estimates, converted by hand:
    p = ref.params.copy()
    p["mu"] /= 100
    if kind == "egarch":
        p["omega"] -= (1 - p["beta[1]"]) * math.log(100**2)  # ln s2 shifts by ln(100^2); omega absorbs (1-beta) of it
    else:
        p["omega"] /= 100**2
    for name in p.index:
        assert ours.params_[name] == pytest.approx(p[name], rel=2e-2, abs=2e-3 if name != "omega" else 1e-6), name
    if kind != "egarch":
        fc = ref.forecast(horizon=5, reindex=False).variance.to_numpy()[-1] / 100**2
        assert ours.forecast_variance(5) == pytest.approx(float(fc.sum()), rel=5e-3)
        np.testing.assert_allclose(ours.forecast_variance_path(5), fc, rtol=5e-3)


def _own_filter(kind: str, p: pd.Series, r: np.ndarray, s2_0: float) -> np.ndarray:
    """Conditional variance recursion written from the model equations (original units)."""
    e = r - p.get("mu", 0.0)
    s2 = np.empty(r.size)
    s2[0] = s2_0
    for t in range(1, r.size):
        if kind == "garch":
            s2[t] = p["omega"] + p["alpha[1]"] * e[t - 1] ** 2 + p["beta[1]"] * s2[t - 1]
        elif kind == "gjr":
            s2[t] = p["omega"] + (p["alpha[1]"] + p["gamma[1]"] * (e[t - 1] < 0)) * e[t - 1] ** 2 + p["beta[1]"] * s2[t - 1]
        else:
            z = e[t - 1] / math.sqrt(s2[t - 1])
            s2[t] = math.exp(p["omega"] + p["alpha[1]"] * (abs(z) - math.sqrt(2 / math.pi)) + p["gamma[1]"] * z
                             + p["beta[1]"] * math.log(s2[t - 1]))
    return s2


@pytest.mark.parametrize("kind", ["garch", "gjr", "egarch"])
def test_params_in_original_units_reproduce_sigma(returns, kind):
    # The model equations with params_ (original units) applied to the ORIGINAL returns give sigma_:
    # this checks the rescaling is undone correctly (omega / s^2, or omega - (1-beta) ln s^2 for EGARCH).
    m = GarchVolatility(kind=kind, dist="t").fit(returns)
    assert m.scale_ != 1.0  # arch did rescale these returns
    s2 = _own_filter(kind, m.params_, returns.to_numpy(), float(m.sigma_.iloc[0]) ** 2)
    np.testing.assert_allclose(np.sqrt(s2), m.sigma_.to_numpy(), rtol=1e-8)


def test_parameter_recovery_on_simulated_garch_t():
    # known parameters: omega 1.2e-5, alpha 0.09, beta 0.89, nu 5; 6000 observations
    r = _simulate_garch_t(6000, omega=1.2e-5, alpha=0.09, beta=0.89, nu=5.0, seed=2024)
    m = GarchVolatility(kind="garch", dist="t", mean="zero").fit(r)
    p = m.params_
    assert p["alpha[1]"] == pytest.approx(0.09, abs=0.025)
    assert p["beta[1]"] == pytest.approx(0.89, abs=0.03)
    assert p["alpha[1]"] + p["beta[1]"] == pytest.approx(0.98, abs=0.01)
    assert p["nu"] == pytest.approx(5.0, abs=1.0)
    # omega is the least precise (it trades off against alpha + beta near 1): within 50 %, in original units
    assert p["omega"] == pytest.approx(1.2e-5, rel=0.5)


@pytest.mark.parametrize("kind", ["garch", "gjr", "egarch"])
def test_filter_variance_reproduces_fit_and_extends_causally(returns, kind):
    m = GarchVolatility(kind=kind, dist="t").fit(returns.iloc[:1000])
    fv = m.filter_variance(returns.iloc[:1000])
    np.testing.assert_allclose(fv[:-1], m.sigma_.to_numpy() ** 2, rtol=1e-10)
    assert fv[-1] == pytest.approx(m.forecast_variance(1), rel=1e-10)
    longer = m.filter_variance(returns.iloc[:1200])
    np.testing.assert_allclose(longer[:1001], fv, rtol=1e-12)  # adding later data never changes earlier values


def test_egarch_multi_step_is_reproducible_and_close_to_arch_simulation(returns):
    m = GarchVolatility(kind="egarch", dist="t", n_simulations=4000, seed=7).fit(returns)
    a = m.forecast_variance(10)
    b = GarchVolatility(kind="egarch", dist="t", n_simulations=4000, seed=7).fit(returns).forecast_variance(10)
    assert a == b  # fixed seed: identical
    ref = _arch_on_100x(returns, "egarch", "t")
    fc = ref.forecast(horizon=10, method="simulation", simulations=20000, reindex=False).variance.to_numpy()[-1]
    assert a == pytest.approx(float(fc.sum()) / 100**2, rel=0.05)
    assert m.forecast_variance(1) == pytest.approx(float(m.forecast_variance_path(1)[0]))


def test_horizon_in_bars_of_hourly_model():
    rng = np.random.default_rng(0)
    r = rng.normal(0, 0.004, 3000)  # hourly-scale returns
    m = GarchVolatility(kind="garch", dist="normal").fit(r)
    h = horizon_to_bars(24, 1)
    assert h == 24
    path = m.forecast_variance_path(h)
    assert m.forecast_variance(h) == pytest.approx(path.sum())
    # iid returns: the 24-bar variance is ~ 24 * 0.004^2
    assert m.forecast_variance(h) == pytest.approx(24 * 0.004**2, rel=0.15)


def test_errors():
    with pytest.raises(ConfigError, match="kind"):
        GarchVolatility(kind="figarch").fit(np.ones(200))
    with pytest.raises(DataError, match="at least 100"):
        GarchVolatility().fit(np.random.default_rng(0).normal(size=50))
    bad = np.random.default_rng(0).normal(size=300)
    bad[17] = np.nan
    with pytest.raises(DataError, match=r"returns\[17\]"):
        GarchVolatility().fit(bad)
    with pytest.raises(CalibrationError, match="not fitted"):
        GarchVolatility().forecast_variance(1)
    m = GarchVolatility().fit(np.random.default_rng(1).normal(0, 0.02, 500))
    with pytest.raises(ConfigError, match="whole number"):
        m.forecast_variance(1.5)
