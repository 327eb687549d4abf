"""HAR-RV against statsmodels OLS on independently built regressors; iterated forecasts by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from margincal.errors import CalibrationError, ConfigError, DataError
from margincal.vol.har import HARVolatility, har_design


def _rv_series(n: int = 800, seed: int = 5) -> pd.Series:
    """A persistent positive series shaped like daily RV (log-AR(1) plus noise)."""
    rng = np.random.default_rng(seed)
    x = np.empty(n)
    x[0] = np.log(4e-4)
    for t in range(1, n):
        x[t] = -7.8 * 0.05 + 0.95 * x[t - 1] + rng.normal(0, 0.35)
    return pd.Series(np.exp(x), index=pd.date_range("2021-01-01", periods=n, freq="D", tz="UTC"), name="rv")


def test_matches_statsmodels_ols():
    rv = _rv_series()
    # regressors built independently with pandas rolling means
    X = pd.DataFrame({
        "rv_1": rv,
        "rv_5": rv.rolling(5).mean(),
        "rv_22": rv.rolling(22).mean(),
    })
    y = rv.shift(-1)
    data = pd.concat([y.rename("y"), X], axis=1).dropna()
    ref = sm.OLS(data["y"], sm.add_constant(data[["rv_1", "rv_5", "rv_22"]])).fit()
    ours = HARVolatility().fit(rv)
    np.testing.assert_allclose(ours.params_.to_numpy(), ref.params.to_numpy(), rtol=1e-9, atol=1e-15)
    assert ours.r2_ == pytest.approx(ref.rsquared, rel=1e-9)
    assert ours.n_obs_ == int(ref.nobs)
    np.testing.assert_allclose(ours.resid_, ref.resid.to_numpy(), rtol=1e-8, atol=1e-14)


def test_design_matches_pandas_rolling():
    rv = _rv_series(100)
    d = har_design(rv, (1, 5, 22))
    np.testing.assert_allclose(d["rv_5"].to_numpy(), rv.rolling(5).mean().to_numpy(), rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(d["rv_22"].to_numpy(), rv.rolling(22).mean().to_numpy(), rtol=1e-12, equal_nan=True)


def test_iterated_forecast_by_hand():
    rv = _rv_series(300)
    m = HARVolatility().fit(rv)
    b0, bd, bw, bm = m.params_.to_numpy()
    x = rv.to_numpy()
    # step 1: regressors on the last 1, 5, 22 observed days
    f1 = b0 + bd * x[-1] + bw * x[-5:].mean() + bm * x[-22:].mean()
    # step 2: the forecast f1 takes the place of "today"
    h2 = np.append(x, f1)
    f2 = b0 + bd * f1 + bw * h2[-5:].mean() + bm * h2[-22:].mean()
    h3 = np.append(h2, f2)
    f3 = b0 + bd * f2 + bw * h3[-5:].mean() + bm * h3[-22:].mean()
    np.testing.assert_allclose(m.forecast_variance_path(3), [f1, f2, f3], rtol=1e-12)
    assert m.forecast_variance(3) == pytest.approx(f1 + f2 + f3, rel=1e-12)
    assert m.forecast_variance(1) == pytest.approx(f1, rel=1e-12)


def test_one_step_predictions_are_causal_and_match_fitted():
    rv = _rv_series(400)
    m = HARVolatility().fit(rv.iloc[:300])
    p_short = m.predict_one_step(rv.iloc[:300])
    p_long = m.predict_one_step(rv)
    np.testing.assert_allclose(p_long[:300], p_short, rtol=0, atol=0, equal_nan=True)
    # in-sample fitted values are the one-step predictions shifted to the target day
    np.testing.assert_allclose(m.fitted_.to_numpy()[22:300], p_short[21:299], rtol=1e-12)
    assert np.isnan(m.fitted_.to_numpy()[:22]).all()


def test_floor_prevents_negative_forecasts():
    # a series whose OLS extrapolates below zero after a collapse
    rv = _rv_series(300)
    m = HARVolatility().fit(rv)
    p = m.predict_one_step(np.r_[rv.to_numpy(), np.full(30, 1e-9)])
    assert (p[~np.isnan(p)] >= m.floor_).all()


def test_errors():
    with pytest.raises(DataError, match="needs at least"):
        HARVolatility().fit(np.ones(30))
    with pytest.raises(DataError, match=r"rv\[3\]"):
        HARVolatility().fit(np.r_[np.ones(3), -1.0, np.ones(100)])
    with pytest.raises(ConfigError, match="lags"):
        HARVolatility(lags=(5, 1)).fit(np.ones(100))
    with pytest.raises(CalibrationError, match="not fitted"):
        HARVolatility().forecast_variance(1)
