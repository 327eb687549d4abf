"""Horizon scaling exponent measured from bars (vol/horizon.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from margincal.errors import ConfigError, DataError
from margincal.vol.horizon import HorizonScaler, scaling_exponent


def _series(logp: np.ndarray) -> pd.Series:
    idx = pd.date_range("2024-01-01", periods=logp.size, freq="min", tz="UTC")
    return pd.Series(np.exp(logp), index=idx)


def test_random_walk_gives_one_half():
    rng = np.random.default_rng(11)
    s = _series(np.cumsum(rng.normal(0, 1e-3, 200_000)))
    fit = scaling_exponent(s, ["1min", "5min", "15min", "1h", "4h"])
    assert fit.exponent == pytest.approx(0.5, abs=0.03)
    assert all(v == pytest.approx(1.0, abs=0.15) for v in fit.variance_ratio)
    assert fit.n_obs[0] == 199_999


def test_bid_ask_bounce_gives_less_than_one_half():
    # efficient random walk plus i.i.d. noise (bounce): short horizons are inflated -> exponent < 0.5
    rng = np.random.default_rng(12)
    lp = np.cumsum(rng.normal(0, 2e-4, 200_000)) + rng.normal(0, 5e-4, 200_000)
    fit = scaling_exponent(_series(lp), ["1min", "5min", "15min", "1h"])
    assert fit.exponent < 0.4
    assert fit.variance_ratio[-1] < 0.5


def test_gaps_are_not_bridged():
    rng = np.random.default_rng(1)
    s = _series(np.cumsum(rng.normal(0, 1e-3, 5000)))
    s = s.drop(s.index[1000:3000])
    fit = scaling_exponent(s, ["1min", "5min"])
    assert fit.n_obs[0] == 5000 - 2000 - 2  # the first bar and the return across the gap are dropped


def test_scaler_and_wrapper():
    sc = HorizonScaler(exponent=0.4, reference_hours=1.0)
    assert sc.factor(0.25) == pytest.approx(0.25**0.4)
    f = sc.below(lambda h: 0.02 * h**0.5)
    assert f(1.0) == pytest.approx(0.02)
    assert f(4.0) == pytest.approx(0.04)  # at or above the reference: the model itself
    assert f(1 / 60) == pytest.approx(0.02 * (1 / 60) ** 0.4)
    with pytest.raises(ConfigError):
        HorizonScaler(exponent=0.0, reference_hours=1.0)
    with pytest.raises(DataError):
        scaling_exponent(pd.Series([1.0, 2.0]), ["1min", "5min"])
