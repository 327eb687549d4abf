"""ML variance forecaster: causal features, daily panel construction, smearing, learning a known relation."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from margincal.errors import CalibrationError, ConfigError, DataError
from margincal.vol.ml import MLVarianceForecaster, build_features, daily_panel, next_day_target


def _hourly(n_days: int, seed: int = 0, start: str = "2023-01-01") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = n_days * 24
    vol = np.repeat(np.exp(rng.normal(-5, 0.4, n_days)), 24)
    r = rng.normal(0, 1, n) * vol
    close = 50 * np.exp(np.cumsum(r))
    open_ = np.concatenate([[50.0], close[:-1]])
    high = np.maximum(open_, close) * (1 + 0.3 * vol)
    low = np.minimum(open_, close) * (1 - 0.3 * vol)
    idx = pd.date_range(start, periods=n, freq="h", tz="UTC")
    return pd.DataFrame({"open": open_, "high": high, "low": low, "close": close, "volume": rng.lognormal(2, 0.3, n)},
                        index=idx)


def test_daily_panel_columns_and_by_hand_values():
    h = _hourly(10)
    funding = pd.Series([1e-4, 3e-4, 2e-4, -1e-4], index=pd.DatetimeIndex(
        ["2023-01-02 00:00", "2023-01-02 08:00", "2023-01-02 16:00", "2023-01-03 00:00"], tz="UTC"))
    oi = pd.Series([1.0e9, 1.1e9], index=pd.DatetimeIndex(["2023-01-02", "2023-01-03"], tz="UTC"))
    p = daily_panel(h, open_interest=oi, funding=funding)
    day = pd.Timestamp("2023-01-02", tz="UTC")
    # funding of day 2: mean of the 00:00, 08:00, 16:00 settlements = (1 + 3 + 2)/3 e-4 = 2e-4
    assert p.loc[day, "funding"] == pytest.approx(2e-4)
    assert p.loc[pd.Timestamp("2023-01-03", tz="UTC"), "funding"] == pytest.approx(-1e-4)
    assert p.loc[day, "open_interest"] == 1.0e9
    # RV of day 2 = sum of squared hourly log returns of the bars opening that day
    c = h["close"]
    r = np.log(c).diff()
    assert p.loc[day, "rv"] == pytest.approx(float((r[(r.index >= day) & (r.index < day + pd.Timedelta(days=1))] ** 2).sum()))
    assert p.loc[day, "volume"] == pytest.approx(float(h.loc["2023-01-02", "volume"].sum()))
    assert p.loc[day, "ret"] == pytest.approx(math.log(c.loc["2023-01-02 23:00"] / c.loc["2023-01-01 23:00"]))
    # the first day has 23 returns (no return for the very first bar) and is kept (>= 20)
    assert len(p) == 10


def test_partial_edge_days_are_dropped():
    h = _hourly(6).iloc[5:-7]  # first day starts at 05:00, last day ends at 16:00
    p = daily_panel(h)
    assert p.index[0] == pd.Timestamp("2023-01-02", tz="UTC")
    assert p.index[-1] == pd.Timestamp("2023-01-05", tz="UTC")


def test_features_are_causal():
    h = _hourly(120, seed=1)
    p = daily_panel(h, funding=pd.Series(1e-4, index=pd.date_range("2023-01-01", periods=360, freq="8h", tz="UTC")))
    full = build_features(p)
    for t in (30, 60, 100):
        trunc = build_features(p.iloc[: t + 1])
        pd.testing.assert_frame_equal(full.iloc[: t + 1], trunc, check_exact=True)
    y = next_day_target(p)
    np.testing.assert_array_equal(y.to_numpy()[:-1], p["rv"].to_numpy()[1:])
    assert np.isnan(y.iloc[-1])
    assert {"log_rv_1", "log_rv_5", "log_rv_22", "log_parkinson", "log_garman_klass", "dlog_volume", "funding"} <= set(full.columns)


def test_learns_a_known_log_linear_relation_and_smearing():
    # log RV_{t+1} = -8 + 0.6 (x_t + 8) + eps, eps ~ N(0, 0.3^2): E[RV | x] = exp(mean) * exp(0.3^2 / 2)
    rng = np.random.default_rng(4)
    n = 3000
    x = rng.normal(-8, 0.8, n)
    X = pd.DataFrame({"log_rv_1": x, "noise": rng.normal(size=n)})
    mean = -8 + 0.6 * (x + 8)
    y = np.exp(mean + rng.normal(0, 0.3, n))
    m = MLVarianceForecaster(random_state=0).fit(X.iloc[:2500], y[:2500])
    assert m.smearing_ == pytest.approx(math.exp(0.3**2 / 2), rel=0.03)  # Duan: E[exp(eps)] = exp(sigma^2/2)
    pred = m.predict_variance(X.iloc[2500:])
    truth = np.exp(mean[2500:]) * math.exp(0.045)
    assert np.corrcoef(np.log(pred), np.log(truth))[0, 1] > 0.97
    assert np.mean(pred) == pytest.approx(np.mean(truth), rel=0.05)
    g = MLVarianceForecaster(objective="gamma", random_state=0).fit(X.iloc[:2500], y[:2500])
    pg = g.predict_variance(X.iloc[2500:])
    assert (pg > 0).all() and np.mean(pg) == pytest.approx(np.mean(truth), rel=0.05)
    # horizon: flat term structure from the last feature row
    assert m.forecast_variance(3) == pytest.approx(3 * m.predict_variance(X.iloc[[2499]])[0])


def test_rows_without_target_are_skipped_and_errors():
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=400)})
    y = np.exp(rng.normal(-8, 0.5, 400))
    y[-1] = np.nan
    m = MLVarianceForecaster(max_iter=20).fit(X, y)
    assert m.n_obs_ == 399
    with pytest.raises(DataError, match="aligned"):
        MLVarianceForecaster().fit(X, y[:-5])
    with pytest.raises(DataError, match="positive finite target"):
        MLVarianceForecaster().fit(X.iloc[:100], y[:100])
    with pytest.raises(ConfigError, match="objective"):
        MLVarianceForecaster(objective="mae").fit(X, y)
    with pytest.raises(CalibrationError, match="not fitted"):
        MLVarianceForecaster().predict_variance(X)
    with pytest.raises(DataError, match="columns"):
        m.predict_variance(X.rename(columns={"a": "b"}))
